"""A worker process: one system, its models built and timed on the parent's request (a line protocol)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time

import numpy as np

from scripts.benchmarks.common import CALLER_THREADS, NEEDS, error_text, timed
from scripts.benchmarks.systems import Runner, Skip, load, setup


def _run_batch(runner: Runner, timer: str, calls: int) -> float:
    start = time.perf_counter()
    if timer in runner.batches:
        runner.batches[timer](calls)
        return time.perf_counter() - start
    fn = runner.timers[timer]
    result = None
    for _ in range(calls):
        result = fn()
    runner.finish(result)
    return time.perf_counter() - start


def _run_for(runner: Runner, timer: str, seconds: float, min_calls: int = 1) -> tuple[int, float]:
    if timer in runner.batches:  # whole threaded batches, a few calls per thread each
        batch, calls, start = runner.batches[timer], 0, time.perf_counter()
        while calls < min_calls or time.perf_counter() - start < seconds:
            n = 4 * (runner.info.get("caller_threads") or 1)
            batch(n)
            calls += n
        return calls, time.perf_counter() - start
    fn = runner.timers[timer]
    calls = 0
    start = time.perf_counter()
    elapsed = 0.0
    result = None
    while calls < min_calls or elapsed < seconds:
        result = fn()
        calls += 1
        elapsed = time.perf_counter() - start
    if calls:
        runner.finish(result)
    return calls, time.perf_counter() - start


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when the parent dies (it may be suspended then)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_main(system: str, threads: int, results_dir: str, caller_threads: int = CALLER_THREADS) -> int:
    """A worker process: one system, any number of models.

    Loads the system (:func:`load`) and answers ``{"loaded": true}``, then serves
    one command per line, each answered with one JSON line:

    - ``prime MODEL SECONDS CALLS``: builds the model, makes the first call
      (timed alone), saves its results to ``results_dir/SYSTEM-MODEL.npz`` for
      the cross-check, warms every timer up; answers ``timers``, ``first_call_s``, ``info``;
    - ``calib MODEL TIMER SECONDS``: untimed calls for about SECONDS;
    - ``time MODEL TIMER CALLS``: one timed batch; answers ``calls`` and ``seconds``;
    - ``drop MODEL``: forgets the model; ``quit``.

    A failure answers ``{"error": ...}`` (the traceback goes to stderr); a
    missing framework ``{"skip": ...}``.
    """
    _die_with_parent()
    # Keep the protocol on the real stdout; whatever libraries print goes to stderr.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(**message):
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    module = NEEDS.get(system)
    if module and importlib.util.find_spec(module) is None:
        reply(skip=f"{module} is not installed")
        return 0
    import traceback

    try:
        load(system, threads)
    except Skip as skip:
        reply(skip=str(skip))
        return 0
    except Exception as err:
        traceback.print_exc()
        reply(error=error_text(err))
        return 0
    reply(loaded=True)
    runners: dict[str, Runner] = {}
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command, args = words[0], words[1:]
        try:
            if command == "quit":
                break
            if command == "prime":
                model, seconds, min_calls = args[0], float(args[1]), int(args[2])
                runner, setup_s = timed(lambda: setup(system, model, threads, caller_threads))  # noqa: B023 (called at once)
                results, first = timed(runner.prime)
                runners[model] = runner
                for timer in runner.timers:
                    _run_for(runner, timer, seconds, min_calls)
                if results:
                    np.savez(os.path.join(results_dir, f"{system}-{model}.npz"), **results)
                reply(timers=list(runner.timers), first_call_s=first, info={"setup_s": setup_s, **runner.info})
            elif command == "calib":
                calls, seconds = _run_for(runners[args[0]], args[1], float(args[2]))
                reply(calls=calls, seconds=seconds)
            elif command == "time":
                calls = int(args[2])
                reply(calls=calls, seconds=_run_batch(runners[args[0]], args[1], calls))
            elif command == "drop":
                runners.pop(args[0], None)
                reply(dropped=args[0])
            else:
                reply(error=f"unknown command {command!r}")
        except Exception as err:
            traceback.print_exc()
            reply(error=error_text(err))
    return 0
