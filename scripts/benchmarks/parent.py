"""The parent process: one worker per system, cross-checked first, then timed in interleaved rounds."""

from __future__ import annotations

import json
import os
import pathlib
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from scripts.benchmarks.common import GEMM_SIZE, REFERENCE, Settings, compare, log
from scripts.benchmarks.report import derive

#: The repository root, which worker processes need on their path to import this package.
ROOT = pathlib.Path(__file__).resolve().parents[2]


# Rerun a batch (Settings.busy_retries) when other processes used more than this share of the CPUs during it.
BUSY_RETRY = 0.2


class WorkerError(RuntimeError):
    """A worker died, failed, or did not answer in time."""


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs so far, from /proc/stat (None where unavailable)."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def _process_ticks(pid: int) -> int | None:
    """User + system clock ticks of a process (all its threads) so far."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])


class Worker:
    """A worker process (see :func:`worker_main`), suspended whenever it is not being asked something.

    Suspending (SIGSTOP) keeps idle workers off the CPUs: MindSpore PyNative keeps
    a core busy after each call, and thread pools spin for a while after work.
    """

    def __init__(self, system: str, settings: Settings, tmp: pathlib.Path) -> None:
        self.system, self.settings, self.tmp = system, settings, tmp
        self.stderr_path = tmp / f"{system}.log"
        env = dict(os.environ)
        threads = str(settings.threads)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, GLOG_v=env.get("GLOG_v", "3"))
        # A cold gradient-graph build: each worker gets its own, empty onnxgrad disk cache.
        env["ONNXGRAD_CACHE_DIR"] = str(tmp / f"cache-{system}")
        # The worker runs in the temporary folder (below), so it finds this package through its path.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        python = settings.plain_python if system == "onnxgrad_plain" and settings.plain_python else sys.executable
        command = [
            python, "-m", "scripts.benchmarks", "--worker", system, "--threads", threads,
            "--caller-threads", str(settings.caller_threads),
            "--results", str(tmp),
        ]
        self._stderr = open(self.stderr_path, "wb")
        # In the temporary folder: MindSpore writes its graph dumps (rank_0/...) to the working directory.
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env, text=True,
            bufsize=1, cwd=tmp,
        )
        self.timers: dict[str, list[str]] = {}  # per model
        self.stopped = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def results_path(self, model: str) -> pathlib.Path:
        return self.tmp / f"{self.system}-{model}.npz"

    def read(self, timeout: float) -> dict[str, Any]:
        """The worker's next message; WorkerError when it dies, is silent, or reports an error."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise WorkerError(f"no answer within {timeout:.0f} s")
        line = self.process.stdout.readline()
        if not line:
            raise WorkerError(f"exited (code {self.process.poll()}): {self.stderr_tail()}")
        message = json.loads(line)
        if "error" in message:
            raise WorkerError(message["error"])
        return message

    def ask(self, command: str, timeout: float | None = None) -> dict[str, Any]:
        """Resumes the worker, sends ``command``, waits for the answer, suspends it again.

        The answer gets ``others_cpu``: the share of the machine's CPU time that
        other processes used meanwhile (None where /proc is unavailable).
        """
        if not self.alive:
            raise WorkerError(f"exited earlier (code {self.process.poll()})")
        self.resume()
        before = _machine_ticks(), _process_ticks(self.process.pid)
        try:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
            answer = self.read(timeout or self.settings.setup_timeout)
        finally:
            after = _machine_ticks(), _process_ticks(self.process.pid)
            self.suspend()
        answer["others_cpu"] = None
        if None not in (*before, *after) and after[0][1] > before[0][1]:
            others = (after[0][0] - before[0][0]) - (after[1] - before[1])
            answer["others_cpu"] = max(0.0, others / (after[0][1] - before[0][1]))
        return answer

    def suspend(self) -> None:
        if hasattr(signal, "SIGSTOP") and self.alive:
            os.kill(self.process.pid, signal.SIGSTOP)
            self.stopped = True

    def resume(self) -> None:
        if self.stopped and self.alive:
            os.kill(self.process.pid, signal.SIGCONT)
        self.stopped = False

    def close(self) -> None:
        self.resume()
        if self.alive:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._stderr.close()

    def stderr_tail(self, lines: int = 3) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


def _load_results(path: pathlib.Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _stats(samples_ms: list[float]) -> dict[str, Any]:
    values = np.asarray(samples_ms)
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    return {
        "median_ms": float(median), "q25_ms": float(q25), "q75_ms": float(q75),
        "min_ms": float(values.min()), "max_ms": float(values.max()), "samples_ms": [float(v) for v in values],
    }


def _failed(worker: Worker, entry: dict[str, Any], err: WorkerError, what: str) -> None:
    entry["error"] = str(err)
    log(f"  {worker.system} {what}: {err}")
    tail = worker.stderr_tail()
    if tail and tail not in str(err):
        log(f"    stderr: {tail}")


def await_loaded(workers: dict[str, Worker], settings: Settings, records: dict[str, dict]) -> dict[str, Worker]:
    """Waits until each worker has loaded its framework, then suspends it; skips and errors go to every model."""
    loaded = {}
    deadline = time.monotonic() + settings.setup_timeout
    for system, worker in workers.items():
        try:
            hello = worker.read(max(1.0, deadline - time.monotonic()))
        except WorkerError as err:
            hello = {"error": str(err)}
            log(f"  {system}: {err} {worker.stderr_tail()}")
        if "skip" in hello or "error" in hello:
            for record in records.values():
                record[system] = {k: hello[k] for k in ("skip", "error") if k in hello}
            if "skip" in hello:
                log(f"  {system}: skipped, {hello['skip']}")
            worker.close()
            continue
        worker.suspend()
        loaded[system] = worker
    return loaded


def prime(workers: dict[str, Worker], model: str, settings: Settings, record: dict[str, Any]) -> dict[str, Worker]:
    """One worker at a time: build, first call (timed alone), cross-check results, warm-up."""
    ready = {}
    for system, worker in workers.items():
        entry = record.setdefault(system, {})
        try:
            answer = worker.ask(f"prime {model} {settings.warmup_seconds} {settings.warmup_calls}")
        except WorkerError as err:
            _failed(worker, entry, err, f"{model}")
            continue
        worker.timers[model] = answer["timers"]
        entry.update(first_call_s=answer["first_call_s"], info=answer["info"])
        ready[system] = worker
    return ready


def cross_check(workers: dict[str, Worker], model: str, record: dict[str, Any]) -> bool:
    """Compares every system with the reference (raw ORT, else the first system); True when all agree."""
    results = {s: _load_results(w.results_path(model)) for s, w in workers.items() if w.results_path(model).exists()}
    if not results:
        return True
    reference = REFERENCE if REFERENCE in results else next(iter(results))
    ok = True
    for system, values in results.items():
        if system == reference:
            record[system]["check"] = "reference"
            continue
        problems = compare(results[reference], values)
        record[system]["check"] = "ok" if not problems else problems
        if problems:
            ok = False
            log(f"  MISMATCH {model}: {system} vs {reference}: " + "; ".join(problems[:6]))
    return ok


def time_rounds(workers: dict[str, Worker], model: str, settings: Settings, record: dict[str, Any]) -> None:
    """Sizes each timer's batch, then runs ``settings.rounds`` interleaved rounds of one batch per timer."""
    timers = []
    calls, samples, others, retries = {}, {}, {}, {}
    for system, worker in workers.items():
        for timer in worker.timers.get(model, []):
            try:
                answer = worker.ask(f"calib {model} {timer} {settings.calib_seconds}")
            except WorkerError as err:
                _failed(worker, record.setdefault(timer, {}), err, f"{model}/{timer}")
                continue
            per_call = answer["seconds"] / answer["calls"]
            calls[timer] = max(1, min(1_000_000, round(settings.batch_seconds / per_call)))
            samples[timer], others[timer], retries[timer] = [], [], 0
            timers.append((system, timer))
    for r in range(settings.rounds):
        shift = r % max(1, len(timers))
        for system, timer in timers[shift:] + timers[:shift]:
            entry = record.setdefault(timer, {})
            if "error" in entry:
                continue
            try:
                answer = _least_disturbed(workers[system], f"time {model} {timer} {calls[timer]}", settings)
            except WorkerError as err:
                _failed(workers[system], entry, err, f"{model}/{timer}")
                continue
            samples[timer].append(1e3 * answer["seconds"] / answer["calls"])
            if answer["others_cpu"] is not None:
                others[timer].append(answer["others_cpu"])
            retries[timer] += answer["retries"]
    for system, timer in timers:
        entry = record.setdefault(timer, {})
        if samples[timer]:
            entry.update(_stats(samples[timer]), calls_per_batch=calls[timer])
            entry["others_cpu"] = float(np.median(others[timer])) if others[timer] else None
            entry["busy_retries"] = retries[timer]
        if timer != system:
            entry.setdefault("check", record[system].get("check"))


def _least_disturbed(worker: Worker, command: str, settings: Settings) -> dict[str, Any]:
    """Runs a timed batch, again (up to ``busy_retries`` times) while other processes disturbed it."""
    best = None
    for attempt in range(settings.busy_retries + 1):  # noqa: B007 (read after the loop)
        answer = worker.ask(command)
        if best is None or (answer["others_cpu"] or 0.0) < (best["others_cpu"] or 0.0):
            best = answer
        if answer["others_cpu"] is None or answer["others_cpu"] <= BUSY_RETRY:
            break
    best["retries"] = attempt
    return best


def run_all(
    models: list[str], systems: list[str], settings: Settings, check_only: bool, gemm: bool
) -> tuple[dict[str, Any], bool]:
    """The whole benchmark: ``({"gemm": ..., "models": {model: {"systems", "derived"}}}, all checks passed)``.

    One worker per system loads at once (imports are most of the start-up);
    builds, first calls, warm-ups and timed batches then run one worker at a
    time, the others suspended.
    """
    report: dict[str, Any] = {"models": {}}
    records: dict[str, dict[str, Any]] = {model: {} for model in models}
    all_ok = True
    with tempfile.TemporaryDirectory(prefix="onnxgrad-bench-") as folder:
        tmp = pathlib.Path(folder)
        log(f"loading {len(systems)} workers ...")
        workers = {system: Worker(system, settings, tmp) for system in systems}
        try:
            loaded = await_loaded(workers, settings, records)
            if gemm and "ort" in loaded:
                log(f"timing ORT's GEMM {GEMM_SIZE}^3 ...")
                record: dict[str, Any] = {}
                ready = prime({"ort": loaded["ort"]}, "gemm", settings, record)
                time_rounds(ready, "gemm", settings, record)
                report["gemm"] = _gemm_figures(record)
            for model in models:
                log(f"{model}: build, first calls, cross-check ...")
                ready = prime(loaded, model, settings, records[model])
                all_ok &= cross_check(ready, model, records[model])
                if not check_only:
                    log(f"{model}: timing ...")
                    time_rounds(ready, model, settings, records[model])
                for worker in ready.values():
                    try:
                        worker.ask(f"drop {model}")
                    except WorkerError:
                        pass
                report["models"][model] = {
                    "systems": records[model], "derived": derive(model, records[model], report.get("gemm")),
                }
        finally:
            for worker in workers.values():
                worker.close()
    return report, all_ok


def _gemm_figures(record: dict[str, Any]) -> dict[str, Any]:
    gemm = record.get("gemm")
    if not gemm or "median_ms" not in gemm:
        return {"error": (gemm or record.get("ort", {})).get("error", "not run")}
    flops = record["ort"]["info"]["flops"]
    return {"size": GEMM_SIZE, "gflops": flops / (gemm["median_ms"] * 1e-3) / 1e9, **gemm}
