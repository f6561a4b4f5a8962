"""Derived figures (ratios, throughput, the issue's targets) and the markdown tables of a report."""

from __future__ import annotations

import os
import pathlib
import platform
from typing import Any

import numpy as np

from scripts.benchmarks import models
from scripts.benchmarks.common import FIRST_CALL_TITLES, TITLES, WORKERS

# The targets, checked in the summary.
TARGET_RATIO_ORT = 1.05
TARGET_TINY_OVERHEAD_US = 15.0
TARGET_GEMM_FRACTION = 0.75
TARGET_FWD_RATIO_LENET = 4.0
#: Warn when other processes used more than this share of the CPUs in the median timed batch.
BUSY_WARNING = 0.05


def derive(name: str, record: dict[str, Any], gemm: dict[str, Any] | None) -> dict[str, Any]:
    """Ratios, build time, forward ratio and throughput of one model."""

    def median(timer):
        entry = record.get(timer, {})
        return entry.get("median_ms")

    og, ort_ms, torch_ms, forward = median("onnxgrad"), median("ort"), median("torch"), median("ort_forward")
    out: dict[str, Any] = {}
    if og and ort_ms:
        out["onnxgrad_over_ort"] = og / ort_ms
        out["onnxgrad_minus_ort_us"] = (og - ort_ms) * 1e3
    if og and torch_ms:
        out["onnxgrad_over_torch"] = og / torch_ms
    if og and median("onnxgrad_threads"):
        # Per-call time (batch wall time over all threads' calls), threads against the single-threaded fast path.
        out["threads_over_single"] = median("onnxgrad_threads") / og
    if og and median("onnxgrad_plain"):
        out["plain_over_onnxgrad"] = median("onnxgrad_plain") / og
    if ort_ms and torch_ms:
        out["ort_over_torch"] = ort_ms / torch_ms
    for timer in ("ms_pynative", "ms_graph"):
        if median(timer) and ort_ms:
            out[f"{timer}_over_ort"] = median(timer) / ort_ms
    if og and "first_call_s" in record.get("onnxgrad", {}):
        # The first call less a steady one; noise can make it negative on a busy machine.
        out["onnxgrad_build_s"] = max(0.0, record["onnxgrad"]["first_call_s"] - og * 1e-3)
    if forward:
        out["forward_ms"] = forward
        if og:
            out["fwdbwd_over_fwd"] = og / forward  # onnxgrad's forward+backward over ORT's forward alone
        if ort_ms:
            out["ort_fwdbwd_over_fwd"] = ort_ms / forward
    flops = models.build(name).train_flops if name in models.MODELS else 0
    if flops:
        out["train_gflop"] = flops / 1e9
        for timer, key in (("ort", "ort_gflops"), ("onnxgrad", "onnxgrad_gflops"), ("torch", "torch_gflops")):
            if median(timer):
                out[key] = flops / (median(timer) * 1e-3) / 1e9
        if gemm and "gflops" in gemm:
            for key in ("ort_gflops", "onnxgrad_gflops"):
                if key in out:
                    out[key.replace("gflops", "gemm_fraction")] = out[key] / gemm["gflops"]
    return out


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "–"
    if "skip" in entry:
        return "skipped"
    if "error" in entry and "median_ms" not in entry:
        return "error: " + entry["error"].replace("|", "/")[:80]
    text = f"{fmt(entry['median_ms'])} [{fmt(entry['q25_ms'])}–{fmt(entry['q75_ms'])}]"
    check = entry.get("check")
    if isinstance(check, list):
        text += " ✗ mismatch"
    return text


def tables(report: dict[str, Any], systems: list[str]) -> str:
    """The markdown tables of a report."""
    timers = [t for s in WORKERS if s in systems for t in WORKERS[s]]
    lines = [
        "ms per forward+gradient call (loss, gradient of the input and of every weight): "
        "median [interquartile range] over interleaved rounds",
        "",
        "| model | " + " | ".join(TITLES[t] for t in timers) + " |",
        "|---|" + "---:|" * len(timers),
    ]
    for name, model in report["models"].items():
        title = models.build(name).title
        lines.append(f"| {name}: {title} | " + " | ".join(_cell(model["systems"].get(t)) for t in timers) + " |")
    lines += [
        "",
        "| model | onnxgrad / ORT | onnxgrad − ORT (µs) | onnxgrad / PyTorch | ORT / PyTorch | MS PyNative / ORT "
        "| MS graph / ORT | onnxgrad build (s) | fwd+bwd / fwd onnxgrad (ORT) | GFLOP/s onnxgrad (ORT) "
        "| plain ORT / default | onnxgrad threads / 1 thread |",
        "|---|" + "---:|" * 11,
    ]
    for name, model in report["models"].items():
        d = model["derived"]
        gflops = "–"
        if "onnxgrad_gflops" in d or "ort_gflops" in d:
            gflops = f"{fmt(d.get('onnxgrad_gflops'))} ({fmt(d.get('ort_gflops'))})"
        ratio = "–"
        if "fwdbwd_over_fwd" in d or "ort_fwdbwd_over_fwd" in d:
            ratio = f"{fmt(d.get('fwdbwd_over_fwd'))} ({fmt(d.get('ort_fwdbwd_over_fwd'))})"
        cells = [
            fmt(d.get("onnxgrad_over_ort")), fmt(d.get("onnxgrad_minus_ort_us")), fmt(d.get("onnxgrad_over_torch")),
            fmt(d.get("ort_over_torch")), fmt(d.get("ms_pynative_over_ort")), fmt(d.get("ms_graph_over_ort")),
            fmt(d.get("onnxgrad_build_s")), ratio, gflops, fmt(d.get("plain_over_onnxgrad")),
            fmt(d.get("threads_over_single")),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    workers = [w for w in WORKERS if w in systems]
    lines += [
        "",
        "Seconds of the first call, each system alone (gradient graph build or compile, session creation, first run):",
        "",
        "| model | " + " | ".join(FIRST_CALL_TITLES[w] for w in workers) + " |",
        "|---|" + "---:|" * len(workers),
    ]
    for name, model in report["models"].items():
        cells = [fmt(first_call_s(model["systems"].get(w, {}))) for w in workers]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "onnxgrad_threads" in timers:
        lines += ["", f"onnxgrad FVG, threads: {report['settings']['caller_threads']} threads call one "
                  "ForwardValueAndGrad at once; ms per call is the batch's wall time over all their calls "
                  "(threads / 1 thread < 1: more calls per second than one thread)."]
    gemm = report.get("gemm")
    if gemm and "gflops" in gemm:
        lines += ["", f"ORT float32 GEMM {gemm['size']}³: {gemm['gflops']:.0f} GFLOP/s "
                  f"({gemm['median_ms']:.2f} ms per MatMul)."]
    lines += ["", *targets(report)]
    busy = contention(report)
    if busy is not None:
        lines += ["", f"Other processes used a median {100 * busy[0]:.0f}% (max {100 * busy[1]:.0f}%) of the "
                  "machine's CPU time during the timed batches."]
        if busy[0] > BUSY_WARNING:
            lines.append("WARNING: the machine was busy; these figures are unreliable. Rerun on an idle machine.")
    return "\n".join(lines)


def first_call_s(entry: dict[str, Any]) -> float | None:
    """A worker's first call; for raw ORT its gradient graph build, session creation and first run."""
    info = entry.get("info", {})
    parts = ("gradient_graph_build_s", "session_create_s", "first_run_s")
    if all(part in info for part in parts):
        return sum(info[part] for part in parts)
    return entry.get("first_call_s")


def contention(report: dict[str, Any]) -> tuple[float, float] | None:
    """(median, max) over timers of the CPU share other processes used during the timed batches."""
    shares = [
        entry["others_cpu"]
        for model in report["models"].values()
        for entry in model["systems"].values()
        if entry.get("others_cpu") is not None
    ]
    return (float(np.median(shares)), float(np.max(shares))) if shares else None


def targets(report: dict[str, Any]) -> list[str]:
    """The issue's targets, each with its measured figure."""
    models = report["models"]
    busy = contention(report)
    caveat = " (unreliable: the machine was busy)" if busy is not None and busy[0] > BUSY_WARNING else ""
    out = [f"Targets{caveat}:"]

    def line(ok: bool | None, text: str) -> None:
        mark = "n/a " if ok is None else ("pass" if ok else "FAIL")
        out.append(f"- [{mark}] {text}")

    for name in ("mlp", "lenet", "block"):
        if name in models:
            ratio = models[name]["derived"].get("onnxgrad_over_ort")
            line(None if ratio is None else ratio <= TARGET_RATIO_ORT,
                 f"{name}: onnxgrad / raw ORT = {fmt(ratio)} (<= {TARGET_RATIO_ORT})")
    if "tiny" in models:
        over = models["tiny"]["derived"].get("onnxgrad_minus_ort_us")
        line(None if over is None else over <= TARGET_TINY_OVERHEAD_US,
             f"tiny: onnxgrad − raw ORT = {fmt(over)} µs (<= {TARGET_TINY_OVERHEAD_US:g})")
    for name, model in models.items():
        ratio = model["derived"].get("onnxgrad_over_torch")
        line(None if ratio is None else ratio < 1, f"{name}: onnxgrad / PyTorch eager = {fmt(ratio)} (< 1)")
    if "mlp" in models:
        fraction = models["mlp"]["derived"].get("onnxgrad_gemm_fraction")
        line(None if fraction is None else fraction >= TARGET_GEMM_FRACTION,
             f"mlp: fwd+bwd at {fmt(None if fraction is None else 100 * fraction)}% of ORT's GEMM GFLOP/s "
             f"(>= {100 * TARGET_GEMM_FRACTION:.0f}%)")
    if "lenet" in models:
        ratio = models["lenet"]["derived"].get("fwdbwd_over_fwd")
        line(None if ratio is None else ratio < TARGET_FWD_RATIO_LENET,
             f"lenet: fwd+bwd / fwd = {fmt(ratio)} (< {TARGET_FWD_RATIO_LENET:g})")
    return out


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpu_count": os.cpu_count()}
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for module in ("numpy", "onnx", "onnxruntime", "torch", "mindspore"):
        try:
            from importlib.metadata import version

            dist = {"onnxruntime": "onnxruntime-training-cpu"}.get(module, module)
            info[module] = version(dist)
        except Exception:
            info[module] = None
    return info
