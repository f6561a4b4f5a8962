"""What every part of the benchmark shares: the systems and their timers, the settings, the cross-check."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable

import numpy as np

#: Worker processes and the timers each one offers, in table order.
WORKERS: dict[str, tuple[str, ...]] = {
    "onnxgrad": ("onnxgrad", "onnxgrad_threads"),
    "onnxgrad_plain": ("onnxgrad_plain",),
    "ort": ("ort", "ort_iobinding", "ort_forward"),
    "torch": ("torch",),
    "ms_pynative": ("ms_pynative",),
    "ms_graph": ("ms_graph",),
}
#: Column titles of the timers.
TITLES = {
    "onnxgrad": "onnxgrad FVG",
    "onnxgrad_threads": "onnxgrad FVG, threads",
    "onnxgrad_plain": "onnxgrad FVG, plain ORT",
    "ort": "raw ORT run",
    "ort_iobinding": "ORT IOBinding",
    "ort_forward": "ORT forward only",
    "torch": "PyTorch eager",
    "ms_pynative": "MS PyNative",
    "ms_graph": "MS graph",
}
#: Column titles of the first-call table, by worker.
FIRST_CALL_TITLES = {
    "onnxgrad": "onnxgrad (build + session + run)",
    "onnxgrad_plain": "onnxgrad, plain ORT (builder subprocess + session + run)",
    "ort": "raw ORT (graph build + session + run)",
    "torch": "PyTorch",
    "ms_pynative": "MS PyNative",
    "ms_graph": "MS graph (compile + run)",
}
#: The framework each worker needs, for a clean skip when it is missing.
NEEDS = {"onnxgrad": "onnxruntime", "onnxgrad_plain": "onnxruntime", "ort": "onnxruntime", "torch": "torch",
         "ms_pynative": "mindspore", "ms_graph": "mindspore"}
REFERENCE = "ort"  # every system is cross-checked against raw ORT's results
RTOL, ATOL = 1e-3, 1e-4
GEMM_SIZE = 1024
#: Threads that share one ForwardValueAndGrad in the ``onnxgrad_threads`` timer (``--caller-threads``).
CALLER_THREADS = 4


@dataclasses.dataclass(frozen=True)
class Settings:
    """How long to measure.

    Attributes:
        rounds: interleaved rounds; each timer runs one batch per round.
        batch_seconds: target length of one timed batch.
        warmup_seconds: untimed calls after the first, per timer (at least ``warmup_calls``).
        warmup_calls: the fewest warm-up calls per timer.
        calib_seconds: untimed calls that size the batches.
        busy_retries: times a batch is rerun while other processes used more than
            ``BUSY_RETRY`` of the CPUs during it (the least disturbed attempt counts).
        threads: threads per system.
        caller_threads: Python threads sharing one ``ForwardValueAndGrad`` (``onnxgrad_threads``).
        setup_timeout: seconds a worker may take to load, or to answer one command.
    """

    rounds: int
    batch_seconds: float
    warmup_seconds: float
    warmup_calls: int
    calib_seconds: float
    busy_retries: int
    threads: int = 2
    caller_threads: int = CALLER_THREADS
    setup_timeout: float = 900.0
    plain_python: str | None = None


QUICK = Settings(rounds=3, batch_seconds=0.02, warmup_seconds=0.02, warmup_calls=1, calib_seconds=0.01,
                 busy_retries=0, setup_timeout=120.0)
FULL = Settings(rounds=15, batch_seconds=0.2, warmup_seconds=0.5, warmup_calls=3, calib_seconds=0.1, busy_retries=3)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def error_text(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:300]}" if lines else type(err).__name__


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def compare(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> list[str]:
    """Mismatches of ``other`` against ``reference``: shape, dtype, then values (RTOL, ATOL)."""
    problems = []
    for name, want in reference.items():
        label = "loss" if name == "loss" else f"grad[{name}]"
        if name not in other:
            problems.append(f"{label}: missing")
            continue
        got = np.asarray(other[name])
        if got.shape != want.shape:
            problems.append(f"{label}: shape {list(got.shape)}, expected {list(want.shape)}")
        elif got.dtype != want.dtype:
            problems.append(f"{label}: dtype {got.dtype}, expected {want.dtype}")
        elif not np.allclose(got, want, rtol=RTOL, atol=ATOL):
            err = np.abs(got.astype(np.float64) - want)
            worst = np.unravel_index(np.argmax(err - RTOL * np.abs(want)), err.shape)
            problems.append(
                f"{label}: max abs err {err.max():.3g} (at {list(worst)}: {got[worst]:.6g} vs {want[worst]:.6g})"
            )
    return problems


def parse_names(text: str, known, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; known: {', '.join(known)}")
    return names
