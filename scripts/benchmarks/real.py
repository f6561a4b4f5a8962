"""Real architectures (``--real``): in one process, onnxgrad's module and file routes against PyTorch eager."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import tempfile
import time
import warnings
from typing import Any

import numpy as np

from scripts.benchmarks import models
from scripts.benchmarks.common import Settings, error_text, log, parse_names, timed
from scripts.benchmarks.report import fmt, machine

#: The module route's time within this fraction of the file route's (issue 14's target).
TARGET_MODULE_VS_FILE = 0.05

#: Gradient cross-check of the real architectures against autograd (float32; deep graphs sum in other orders).
REAL_TOLERANCE = dict(rtol=2e-3, atol=2e-4)
#: Session config of both onnxgrad routes: ORT's threads must not spin while PyTorch runs in the same process.
REAL_SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}
REAL_TIMERS = ("torch", "module", "file")


class _HandExportRenamed(Exception):
    """The hand export gave some parameter's initializer another name."""


class _HandExportDiffers(Exception):
    """The hand-exported file computes another loss than the module (an exporter's conversion, not onnxgrad)."""


def _real_check(name: str, loss: Any, grads: dict[str, Any], reference: tuple[Any, dict[str, Any]]) -> list[str]:
    """Mismatches of one route's loss and every parameter gradient against autograd's."""
    problems = []
    for key, got, want in [("loss", loss, reference[0]), *((f"grad[{k}]", grads.get(k), v)
                                                           for k, v in reference[1].items())]:
        if got is None:
            problems.append(f"{name} {key}: missing")
            continue
        got, want = np.asarray(got, np.float32).reshape(np.shape(want)), np.asarray(want, np.float32)
        if not np.allclose(got, want, **REAL_TOLERANCE):
            problems.append(f"{name} {key}: max abs err {float(np.max(np.abs(got - want))):.3g}")
    return problems


def real_architecture(name: str, settings: Settings, check_only: bool = False) -> dict[str, Any]:
    """One real architecture: first calls, gradient cross-check, then interleaved timing of the three routes.

    ``torch``: eager forward + ``loss.backward()``. ``module``: ``ForwardValueAndGrad(module, parameters,
    get_by_list=True)`` on torch tensors. ``file``: the same module exported once by hand with
    ``torch.onnx.export`` (TorchScript, opset 17, no constant folding), ``onnxgrad.load``-ed with the module's
    parameters as the trainable weights, called on numpy arrays. Each onnxgrad route builds its gradient graph
    with an empty cache, so its first call includes export, build and session creation.
    """
    # Both sides idle without spinning (ORT: REAL_SESSION_CONFIG): on a shared machine a spinning
    # OpenMP barrier waits for a preempted thread. Read when PyTorch first starts its OpenMP pool.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import onnx

    import torch

    import onnxgrad
    from onnxgrad.converters.torch import to_onnx
    from onnxgrad.errors import OnnxGradError

    torch.set_num_threads(settings.threads)
    case = models.real_model(name)
    module, inputs = case.module, case.inputs
    names = [n for n, _ in module.named_parameters()]
    params = list(module.parameters())
    arrays = [t.numpy() for t in inputs]

    def torch_step():
        for p in params:
            p.grad = None
        loss = module(*inputs)
        loss.backward()
        return loss, [p.grad for p in params]

    record: dict[str, Any] = {"title": case.title, "parameters": sum(p.numel() for p in params), "systems": {}}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and tracer notices: noise in a benchmark
        previous_cache = os.environ.get("ONNXGRAD_CACHE_DIR")
        try:
            os.environ["ONNXGRAD_CACHE_DIR"] = os.path.join(tmp, "module_cache")
            module_fn = onnxgrad.ForwardValueAndGrad(module, params, get_by_list=True,
                                                     session_config=REAL_SESSION_CONFIG)
            (loss_m, grads_m), first_module = timed(lambda: module_fn(*inputs))

            os.environ["ONNXGRAD_CACHE_DIR"] = os.path.join(tmp, "file_cache")
            path = os.path.join(tmp, f"{name}.onnx")

            def file_first_call(by_hand: bool):
                if by_hand:
                    torch.onnx.export(module, inputs, path, dynamo=False, opset_version=models.OPSET,
                                      do_constant_folding=False, input_names=["x", "labels"], output_names=["loss"])
                else:
                    onnx.save(to_onnx(module, *inputs), path)
                initializers = {i.name for i in onnx.load(path).graph.initializer}
                renamed = [n for n in names if n not in initializers]
                if renamed:  # no name to match its gradient with autograd's
                    raise _HandExportRenamed(f"{len(renamed)} parameters have no initializer of their name, "
                                             f"e.g. {renamed[0]}")
                network = onnxgrad.load(path, parameters=names)
                weights = onnxgrad.ParameterTuple(network.trainable_params())
                fn = onnxgrad.ForwardValueAndGrad(network, weights, get_by_list=True,
                                                  session_config=REAL_SESSION_CONFIG)
                result = fn(*arrays)
                if by_hand and not np.allclose(result[0], loss_m.numpy(), **REAL_TOLERANCE):
                    # onnxruntime runs the file as written; the file's forward is not the module's.
                    raise _HandExportDiffers(f"the file's loss is {float(result[0]):.6g}, the module's "
                                             f"{float(loss_m):.6g}: torch.onnx.export wrote another function")
                return fn, [w.name for w in weights], result

            try:
                (file_fn, file_names, (loss_f, grads_f)), first_file = timed(lambda: file_first_call(True))
            except (OnnxGradError, _HandExportRenamed, _HandExportDiffers) as err:
                # Recorded, and the file route measured on the converter's export written to a file instead.
                refused = "hand export unusable" if isinstance(err, _HandExportDiffers) else "hand export refused"
                record["file_note"] = f"{refused} ({error_text(err)})"
                log(f"{name}: {record['file_note']}")
                os.environ["ONNXGRAD_CACHE_DIR"] = os.path.join(tmp, "file_cache_2")
                (file_fn, file_names, (loss_f, grads_f)), first_file = timed(lambda: file_first_call(False))
        finally:
            if previous_cache is None:
                os.environ.pop("ONNXGRAD_CACHE_DIR", None)
            else:
                os.environ["ONNXGRAD_CACHE_DIR"] = previous_cache
        (loss_t, grads_t), first_torch = timed(torch_step)
        reference = (loss_t.detach().numpy(), {n: g.numpy() for n, g in zip(names, grads_t) if g is not None})
        problems = _real_check("module", loss_m.numpy(), {n: g.numpy() for n, g in zip(names, grads_m)}, reference)
        problems += _real_check("file", loss_f, dict(zip(file_names, grads_f)), reference)
        record["check"] = problems or "ok"
        record["first_call_s"] = {"torch": first_torch, "module": first_module, "file": first_file}
        if problems or check_only:
            return record

        calls = {"torch": torch_step, "module": lambda: module_fn(*inputs), "file": lambda: file_fn(*arrays)}
        per_call = {}
        for timer, fn in calls.items():  # warm-up, and a batch size of about settings.batch_seconds
            for _ in range(max(1, settings.warmup_calls)):
                _, seconds = timed(fn)
            per_call[timer] = seconds
        samples: dict[str, list[float]] = {t: [] for t in REAL_TIMERS}
        for round_ in range(settings.rounds):
            order = REAL_TIMERS[round_ % 3:] + REAL_TIMERS[: round_ % 3]  # nobody always runs first
            for timer in order:
                n = max(1, round(settings.batch_seconds / per_call[timer]))
                _, seconds = timed(lambda: [calls[timer]() for _ in range(n)])  # noqa: B023 (called at once)
                samples[timer].append(1e3 * seconds / n)
    for timer in REAL_TIMERS:
        record["systems"][timer] = {"samples_ms": samples[timer], "median_ms": float(np.median(samples[timer]))}
    # Ratios per round (the rounds interleave the routes), then their median.
    for a, b in (("module", "torch"), ("file", "torch"), ("module", "file")):
        record[f"{a}_over_{b}"] = float(np.median(np.array(samples[a]) / np.array(samples[b])))
    return record


def real_tables(records: dict[str, dict[str, Any]]) -> str:
    """The real architectures' table: per-call medians, ratios and first calls."""
    lines = [
        "Real architectures (transformers, random weights, batch 2): ms per call (loss and every parameter "
        "gradient), median over interleaved rounds; ratios are medians of per-round ratios",
        "",
        "| model | params (M) | PyTorch eager | onnxgrad module | onnxgrad file | module / PyTorch | file / PyTorch "
        "| module / file | first call s: module | file (export by hand) | PyTorch |",
        "|---|" + "---:|" * 10,
    ]
    for name, r in records.items():
        if r["check"] != "ok":
            more = f"; ({len(r['check']) - 3} more)" if len(r["check"]) > 3 else ""
            lines.append(f"| {name} | MISMATCH: {'; '.join(r['check'][:3])}{more} |")
            continue
        first = r["first_call_s"]
        ms = [fmt(r["systems"][t]["median_ms"]) if t in r["systems"] else "–" for t in REAL_TIMERS]
        ratios = [fmt(r.get(k)) for k in ("module_over_torch", "file_over_torch", "module_over_file")]
        lines.append(f"| {name}: {r['title']} | {r['parameters'] / 1e6:.1f} | " + " | ".join(ms) + " | "
                     + " | ".join(ratios) + f" | {first['module']:.1f} | {first['file']:.1f} | {first['torch']:.2f} |")
    notes = [f"- {name}: {r['file_note']}; its file route runs the converter's export, saved to a file"
             for name, r in records.items() if r.get("file_note")]
    return "\n".join(lines + ([""] + notes if notes else []))


def real_targets(records: dict[str, dict[str, Any]]) -> list[str]:
    """The targets per real architecture: the file route faster than PyTorch eager, the module route
    within TARGET_MODULE_VS_FILE of the file route. A model that failed its check has no figures (n/a)."""
    out = ["Targets:"]
    for name, r in records.items():
        checked = r.get("check") == "ok" and "file_over_torch" in r
        file_ratio, module_ratio = r.get("file_over_torch"), r.get("module_over_file")
        marks = ["n/a " if not checked else ("pass" if ok else "FAIL") for ok in (
            checked and file_ratio < 1, checked and abs(module_ratio - 1) <= TARGET_MODULE_VS_FILE)]
        out.append(f"- [{marks[0]}] {name}: file / PyTorch eager = {fmt(file_ratio)} (< 1)")
        out.append(f"- [{marks[1]}] {name}: module / file = {fmt(module_ratio)} "
                   f"(within {100 * TARGET_MODULE_VS_FILE:g}%)")
    return out


def real_main(args: argparse.Namespace, settings: Settings) -> int:
    """``--real``: the real architectures, in this process."""
    known = list(models.REAL_MODELS)
    names = known if args.models is None else parse_names(args.models, known, "real models")
    records, ok = {}, True
    started = time.perf_counter()
    for name in names:
        log(f"{name}: building, exporting, first calls")
        try:
            records[name] = real_architecture(name, settings, args.check_only)
        except Exception as err:  # one model's failure is a row of the table, not the end of the run
            records[name] = {"title": models.REAL_MODELS[name][0], "check": [f"failed: {error_text(err)}"]}
        ok = ok and records[name]["check"] == "ok"
        log(f"{name}: {records[name]['check']}")
    print(real_tables(records))
    print("\n" + "\n".join(real_targets(records)))
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"\n({machine().get('cpu')}, {os.cpu_count()} CPUs, {settings.threads} threads; "
          f"run took {time.perf_counter() - started:.0f} s; load average at the end {fmt(load and load[0])})")
    if args.json:
        report = {"machine": machine(), "settings": dataclasses.asdict(settings), "real": records}
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if ok else 1
