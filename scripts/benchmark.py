"""Benchmark forward+gradient calls: onnxgrad against raw ONNX Runtime, PyTorch and MindSpore.

For each model of ``bench_models`` (tiny = the seed example, an MLP, LeNet-5, a
transformer encoder block) it times one call that returns the loss and the
gradients of the first input and of every weight:

- ``onnxgrad``: ``ForwardValueAndGrad(WithLossCell(net, loss), ..., get_all=True,
  get_by_list=True)``, numpy in and out, called from one thread (the fast path);
  ``onnxgrad_threads``: the same object called from ``--caller-threads`` threads
  at once (default 4), each thread's results first checked equal to the serial
  call's; its time is the batch's wall time over all threads' calls;
- ``onnxgrad_plain``: the same call in another environment (``--plain-python``,
  e.g. Python 3.12 with the newest plain ``onnxruntime``): the standard-op
  graph on a runtime without training kernels, built by the builder
  subprocess (``onnxgrad builder install``); skipped where that Python's
  onnxruntime is the training build;
- ``ort``: raw ``InferenceSession.run`` on the same forward+backward graph
  (``onnxgrad._engine.gradient_model``), every input and weight fed by name;
  ``ort_iobinding``: the same session through an IOBinding bound once;
  ``ort_forward``: an inference session on the forward graph alone (for the
  forward+backward / forward ratio); ``gemm``: a 1024^3 MatMul, ORT's own GEMM
  throughput;
- ``torch``: PyTorch eager, ``torch.autograd.grad`` (tensors in and out);
- ``ms_pynative`` / ``ms_graph``: MindSpore's ``nn.ForwardValueAndGrad`` in
  PyNative and graph mode (MindSpore tensors in, ``asnumpy()`` of the last
  call's results ends each timed batch, which also waits for queued work).

Every system runs in its own worker process (``--worker SYSTEM``, a line
protocol on stdin/stdout): MindSpore sets ``OMP_NUM_THREADS=1`` for its
process and PyNative keeps a core busy after each call, so workers that are
not being timed are suspended (SIGSTOP) where the OS allows it. Before timing,
the loss and every gradient of each system is compared with raw ORT's
(rtol 1e-3, atol 1e-4); a mismatch is printed and marks the row. Then the
systems are interleaved: in each round every timer runs one batch of calls
sized to about ``--batch-seconds``; the table shows the median ms per call
and the interquartile range over the rounds. Warm-up calls are never timed.
The share of CPU time other processes used during each batch is measured
(/proc); a disturbed batch is rerun (full runs), and a busy machine is flagged
under the tables.

Threads: ORT ``intra_op_num_threads`` (raw sessions), ``torch.set_num_threads``,
MindSpore ``threads_num`` and ``OMP_NUM_THREADS`` all get ``--threads``
(default 2). onnxgrad's sessions take ORT's default, one thread per physical
core (the benchmark passes no session_config); the JSON records both.

Usage::

    python scripts/benchmark.py                      # all models and systems, markdown to stdout
    python scripts/benchmark.py --quick              # under a minute on 2 cores
    python scripts/benchmark.py --models tiny,mlp --systems onnxgrad,ort,torch --json out.json
    python scripts/benchmark.py --check-only         # cross-check only, exit 1 on a mismatch
    python scripts/benchmark.py --systems onnxgrad,onnxgrad_plain,torch --plain-python .venv312/bin/python

Diagnostics go to stderr, the tables to stdout; the exit status is 1 when a
cross-check fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import pathlib
import platform
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_models  # noqa: E402

# ----------------------------------------------------------------------------------------------------------------
# What runs where

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

# The targets, checked in the summary.
TARGET_RATIO_ORT = 1.05
TARGET_TINY_OVERHEAD_US = 15.0
TARGET_GEMM_FRACTION = 0.75
TARGET_FWD_RATIO_LENET = 4.0

# Rerun a batch (Settings.busy_retries) when other processes used more than this share of the CPUs
# during it; warn when they used more than BUSY_WARNING in the median batch.
BUSY_RETRY = 0.2
BUSY_WARNING = 0.05


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


# ----------------------------------------------------------------------------------------------------------------
# Worker side: build a system's model, report its results, time batches on request


@dataclasses.dataclass
class Runner:
    """A system, loaded (imports done, model built) but not yet called.

    Attributes:
        prime: makes the first call (building whatever that builds: a gradient
            graph, a compiled graph, sessions), fills ``timers`` if needed, and
            returns ``{"loss" | "x" | weight name: array}`` for the cross-check.
        timers: ``{timer name: one call}``.
        batches: ``{timer name: run this many calls}`` for timers that spread a
            batch over threads (their ``timers`` entry is one call, for warm-up).
        info: anything else worth recording (build breakdown, thread settings).
        finish: called on the last result of a timed batch (waits for asynchronous work).
    """

    prime: Callable[[], dict[str, np.ndarray]]
    timers: dict[str, Callable[[], Any]] = dataclasses.field(default_factory=dict)
    batches: dict[str, Callable[[int], Any]] = dataclasses.field(default_factory=dict)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    finish: Callable[[Any], None] = lambda result: None


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _onnx_cell(case: bench_models.ModelCase):
    import onnxgrad

    net = onnxgrad.load(case.backbone)
    return onnxgrad.nn.WithLossCell(net, bench_models.onnx_loss(case))


def _threaded_batch(call: Callable[[], Any], threads: int) -> Callable[[int], Any]:
    """Runs ``calls`` calls of ``call`` spread over ``threads`` threads at once; returns each thread's last result."""
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="caller")

    def work(n: int) -> Any:
        result = None
        for _ in range(n):
            result = call()
        return result

    def batch(calls: int) -> list[Any]:
        shares = [calls // threads + (k < calls % threads) for k in range(threads)]
        return list(pool.map(work, [n for n in shares if n]))

    return batch


def _same_results(a: Any, b: Any) -> bool:
    """Whether two nested result structures hold equal arrays."""
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(_same_results, a, b))
    return np.array_equal(np.asarray(a), np.asarray(b))


def setup_onnxgrad(
    case: bench_models.ModelCase, threads: int, timer: str = "onnxgrad", caller_threads: int = CALLER_THREADS
) -> Runner:
    """onnxgrad's ForwardValueAndGrad, numpy in and out; the first call builds the gradient graph.

    The default system also times the same object called from ``caller_threads`` threads at once.
    """
    import onnxruntime

    import onnxgrad

    cell = _onnx_cell(case)
    params = onnxgrad.ParameterTuple(cell.trainable_params())
    fvg = onnxgrad.ForwardValueAndGrad(cell, params, get_all=True, get_by_list=True)
    x, label = case.x, case.label

    def call():
        return fvg(x, label)

    runner = Runner(prime=lambda: {}, timers={timer: call})
    if timer == "onnxgrad" and caller_threads > 1:
        runner.timers["onnxgrad_threads"] = call
        runner.batches["onnxgrad_threads"] = _threaded_batch(call, caller_threads)

    def prime():
        first = call()
        if runner.batches:  # numerics before timing: every thread's result equals the serial call's
            wrong = [r for r in runner.batches["onnxgrad_threads"](4 * caller_threads) if not _same_results(r, first)]
            if wrong:
                raise RuntimeError(f"{len(wrong)} of {caller_threads} threads got results unlike the serial call's")
        loss, ((dx, _), weight_grads) = first
        return {"loss": loss, "x": dx, **{p.name: g for p, g in zip(params, weight_grads)}}

    runner.prime = prime
    # onnxgrad's sessions take ORT's default intra-op threads: the benchmark passes no session_config.
    runner.info = {"intra_op_num_threads": "ORT default", "caller_threads": caller_threads,
                   "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}
    return runner


def setup_ort(case: bench_models.ModelCase, threads: int) -> Runner:
    """Raw ORT on onnxgrad's forward+backward graph, plus IOBinding and forward-only sessions."""
    import onnxruntime as ort

    from onnxgrad import _engine, _gradient

    args = [case.x, case.label]
    cell = _onnx_cell(case).variant([a.dtype for a in args])
    params = cell.trainable_params()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    runner = Runner(prime=lambda: {}, info={"intra_op_num_threads": threads})

    def prime():
        # The spec ForwardValueAndGrad(get_all=True, get_by_list=True) compiles: every input, every weight.
        spec = _engine.make_spec(inputs=tuple(range(len(cell.inputs))), weights=tuple(p.name for p in params))
        built, build_s = _timed(lambda: _engine.gradient_model(cell, spec, [a.shape for a in args]))
        session, session_s = _timed(
            lambda: ort.InferenceSession(built.model.SerializeToString(), options, providers=providers)
        )
        given = {info.name: a for info, a in zip(cell.inputs, args)}
        given.update({p.name: p.value for p in params})
        feeds = {i.name: given[i.name] for i in session.get_inputs()}
        outputs = list(built.outputs)

        def run():
            return session.run(outputs, feeds)

        values, first_run_s = _timed(run)

        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        for name in outputs:
            binding.bind_output(name, "cpu")

        def run_iobinding():
            session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()

        forward = ort.InferenceSession(cell.model.SerializeToString(), options, providers=providers)
        forward_feeds = {i.name: given[i.name] for i in forward.get_inputs()}
        forward_outputs = [o.name for o in cell.outputs]

        def run_forward():
            return forward.run(forward_outputs, forward_feeds)

        runner.timers.update(ort=run, ort_iobinding=run_iobinding, ort_forward=run_forward)
        runner.info.update(
            gradient_graph_build_s=build_s, session_create_s=session_s, first_run_s=first_run_s,
            gradient_graph_nodes=len(built.model.graph.node),
        )
        by_name = dict(zip(outputs, values))
        results = {"loss": by_name[outputs[0]], "x": by_name[_gradient.grad_name(cell.inputs[0].name)]}
        results.update({p.name: by_name[_gradient.grad_name(p.name)] for p in params})
        return results

    runner.prime = prime
    return runner


def setup_gemm(threads: int) -> Runner:
    """A GEMM_SIZE^3 float32 MatMul session: ORT's own GEMM throughput."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = GEMM_SIZE
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", bench_models.OPSET)], ir_version=bench_models.IR_VERSION
    )
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal((n, n), dtype=np.float32) for name in ("a", "b")}

    def run():
        return session.run(["c"], feeds)

    def prime():
        run()
        return {}

    return Runner(prime, {"gemm": run}, {"flops": 2 * n**3})


def setup_torch(case: bench_models.ModelCase, threads: int) -> Runner:
    """PyTorch eager: forward, loss, torch.autograd.grad on the input and every weight."""
    import torch

    module, loss_fn, params = bench_models.torch_model(case)
    x = torch.from_numpy(case.x.copy()).requires_grad_(True)
    label = torch.from_numpy(case.label.astype(np.int64) if case.sparse else case.label.copy())
    leaves = [x, *params]

    def step():
        loss = loss_fn(module(x), label)
        return loss, torch.autograd.grad(loss, leaves, grad_outputs=torch.ones_like(loss))

    def prime():
        loss, grads = step()
        names = ["x", *case.weights]
        return {"loss": loss.detach().numpy(), **{name: g.numpy() for name, g in zip(names, grads)}}

    info = {"torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    return Runner(prime, {"torch": step}, info)


def setup_mindspore(case: bench_models.ModelCase, threads: int, graph_mode: bool) -> Runner:
    """MindSpore's nn.ForwardValueAndGrad in the process's mode (graph mode compiles at the first call)."""
    import mindspore as ms
    from mindspore import nn

    cell, params = bench_models.mindspore_model(case)
    fvg = nn.ForwardValueAndGrad(cell, weights=ms.ParameterTuple(params), get_all=True, get_by_list=True)
    x, label = ms.Tensor(case.x.copy()), ms.Tensor(case.label.copy())

    def step():
        return fvg(x, label)

    def finish(result):
        loss, ((dx, _), weight_grads) = result
        for tensor in (loss, dx, *weight_grads):
            tensor.asnumpy()

    def prime():
        loss, ((dx, _), weight_grads) = step()
        results = {"loss": loss.asnumpy(), "x": dx.asnumpy()}
        results.update({name: g.asnumpy() for name, g in zip(case.weights, weight_grads)})
        return results

    name = "ms_graph" if graph_mode else "ms_pynative"
    info = {"mindspore": ms.__version__, "threads_num": threads, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    return Runner(prime, {name: step}, info, finish)


def setup(system: str, model: str, threads: int, caller_threads: int = CALLER_THREADS) -> Runner:
    """Loads ``system`` with ``model`` in this process (no call yet)."""
    if model == "gemm":
        if system != "ort":
            raise ValueError("the gemm pseudo-model runs in the ort worker only")
        return setup_gemm(threads)
    case = bench_models.build(model)
    if system in ("onnxgrad", "onnxgrad_plain"):
        return setup_onnxgrad(case, threads, system, caller_threads)
    if system == "ort":
        return setup_ort(case, threads)
    if system == "torch":
        return setup_torch(case, threads)
    if system in ("ms_pynative", "ms_graph"):
        return setup_mindspore(case, threads, graph_mode=system == "ms_graph")
    raise ValueError(f"unknown system {system!r}; known: {sorted(WORKERS)}")


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


def _error_text(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:300]}" if lines else type(err).__name__


def load(system: str, threads: int) -> None:
    """Imports a worker's framework and sets its process-wide options (once per process)."""
    if system in ("onnxgrad", "ort"):
        import onnxruntime  # noqa: F401

        import onnxgrad  # noqa: F401
    elif system == "onnxgrad_plain":
        from onnxgrad import _builder_env

        if _builder_env.in_process():
            raise _Skip("this Python's onnxruntime is the training build: pass --plain-python, a Python "
                        "with plain onnxruntime and onnxgrad installed")
    elif system == "torch":
        import torch

        torch.set_num_threads(threads)
    elif system in ("ms_pynative", "ms_graph"):
        import mindspore as ms

        ms.set_context(mode=ms.GRAPH_MODE if system == "ms_graph" else ms.PYNATIVE_MODE)
        ms.set_device("CPU")
        ms.device_context.cpu.op_tuning.threads_num(threads)
    else:
        raise ValueError(f"unknown system {system!r}; known: {sorted(WORKERS)}")


class _Skip(Exception):
    """The system cannot run in this worker's environment."""


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
    except _Skip as skip:
        reply(skip=str(skip))
        return 0
    except Exception as err:
        traceback.print_exc()
        reply(error=_error_text(err))
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
                runner, setup_s = _timed(lambda: setup(system, model, threads, caller_threads))  # noqa: B023 (called at once)
                results, first = _timed(runner.prime)
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
            reply(error=_error_text(err))
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Parent side: workers, cross-check, interleaved rounds


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
        python = settings.plain_python if system == "onnxgrad_plain" and settings.plain_python else sys.executable
        command = [
            python, os.path.abspath(__file__), "--worker", system, "--threads", threads,
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


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _failed(worker: Worker, entry: dict[str, Any], err: WorkerError, what: str) -> None:
    entry["error"] = str(err)
    _log(f"  {worker.system} {what}: {err}")
    tail = worker.stderr_tail()
    if tail and tail not in str(err):
        _log(f"    stderr: {tail}")


def await_loaded(workers: dict[str, Worker], settings: Settings, records: dict[str, dict]) -> dict[str, Worker]:
    """Waits until each worker has loaded its framework, then suspends it; skips and errors go to every model."""
    loaded = {}
    deadline = time.monotonic() + settings.setup_timeout
    for system, worker in workers.items():
        try:
            hello = worker.read(max(1.0, deadline - time.monotonic()))
        except WorkerError as err:
            hello = {"error": str(err)}
            _log(f"  {system}: {err} {worker.stderr_tail()}")
        if "skip" in hello or "error" in hello:
            for record in records.values():
                record[system] = {k: hello[k] for k in ("skip", "error") if k in hello}
            if "skip" in hello:
                _log(f"  {system}: skipped, {hello['skip']}")
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
            _log(f"  MISMATCH {model}: {system} vs {reference}: " + "; ".join(problems[:6]))
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
        _log(f"loading {len(systems)} workers ...")
        workers = {system: Worker(system, settings, tmp) for system in systems}
        try:
            loaded = await_loaded(workers, settings, records)
            if gemm and "ort" in loaded:
                _log(f"timing ORT's GEMM {GEMM_SIZE}^3 ...")
                record: dict[str, Any] = {}
                ready = prime({"ort": loaded["ort"]}, "gemm", settings, record)
                time_rounds(ready, "gemm", settings, record)
                report["gemm"] = _gemm_figures(record)
            for model in models:
                _log(f"{model}: build, first calls, cross-check ...")
                ready = prime(loaded, model, settings, records[model])
                all_ok &= cross_check(ready, model, records[model])
                if not check_only:
                    _log(f"{model}: timing ...")
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


# ----------------------------------------------------------------------------------------------------------------
# Derived figures and the tables


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
    flops = bench_models.build(name).train_flops if name in bench_models.MODELS else 0
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


def _fmt(value: float | None, digits: int = 3) -> str:
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
    text = f"{_fmt(entry['median_ms'])} [{_fmt(entry['q25_ms'])}–{_fmt(entry['q75_ms'])}]"
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
        title = bench_models.build(name).title
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
            gflops = f"{_fmt(d.get('onnxgrad_gflops'))} ({_fmt(d.get('ort_gflops'))})"
        ratio = "–"
        if "fwdbwd_over_fwd" in d or "ort_fwdbwd_over_fwd" in d:
            ratio = f"{_fmt(d.get('fwdbwd_over_fwd'))} ({_fmt(d.get('ort_fwdbwd_over_fwd'))})"
        cells = [
            _fmt(d.get("onnxgrad_over_ort")), _fmt(d.get("onnxgrad_minus_ort_us")), _fmt(d.get("onnxgrad_over_torch")),
            _fmt(d.get("ort_over_torch")), _fmt(d.get("ms_pynative_over_ort")), _fmt(d.get("ms_graph_over_ort")),
            _fmt(d.get("onnxgrad_build_s")), ratio, gflops, _fmt(d.get("plain_over_onnxgrad")),
            _fmt(d.get("threads_over_single")),
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
        cells = [_fmt(first_call_s(model["systems"].get(w, {}))) for w in workers]
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
                 f"{name}: onnxgrad / raw ORT = {_fmt(ratio)} (<= {TARGET_RATIO_ORT})")
    if "tiny" in models:
        over = models["tiny"]["derived"].get("onnxgrad_minus_ort_us")
        line(None if over is None else over <= TARGET_TINY_OVERHEAD_US,
             f"tiny: onnxgrad − raw ORT = {_fmt(over)} µs (<= {TARGET_TINY_OVERHEAD_US:g})")
    for name, model in models.items():
        ratio = model["derived"].get("onnxgrad_over_torch")
        line(None if ratio is None else ratio < 1, f"{name}: onnxgrad / PyTorch eager = {_fmt(ratio)} (< 1)")
    if "mlp" in models:
        fraction = models["mlp"]["derived"].get("onnxgrad_gemm_fraction")
        line(None if fraction is None else fraction >= TARGET_GEMM_FRACTION,
             f"mlp: fwd+bwd at {_fmt(None if fraction is None else 100 * fraction)}% of ORT's GEMM GFLOP/s "
             f"(>= {100 * TARGET_GEMM_FRACTION:.0f}%)")
    if "lenet" in models:
        ratio = models["lenet"]["derived"].get("fwdbwd_over_fwd")
        line(None if ratio is None else ratio < TARGET_FWD_RATIO_LENET,
             f"lenet: fwd+bwd / fwd = {_fmt(ratio)} (< {TARGET_FWD_RATIO_LENET:g})")
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


# ----------------------------------------------------------------------------------------------------------------
# Real architectures (--real): one process, the module route and the file route against PyTorch eager

#: Gradient cross-check of the real architectures against autograd (float32; deep graphs sum in other orders).
REAL_TOLERANCE = dict(rtol=2e-3, atol=2e-4)
#: Session config of both onnxgrad routes: ORT's threads must not spin while PyTorch runs in the same process.
REAL_SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}
REAL_TIMERS = ("torch", "module", "file")


class _HandExportRenamed(Exception):
    """The hand export gave some parameter's initializer another name."""


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
    case = bench_models.real_model(name)
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
            (loss_m, grads_m), first_module = _timed(lambda: module_fn(*inputs))

            os.environ["ONNXGRAD_CACHE_DIR"] = os.path.join(tmp, "file_cache")
            path = os.path.join(tmp, f"{name}.onnx")

            def file_first_call(by_hand: bool):
                if by_hand:
                    torch.onnx.export(module, inputs, path, dynamo=False, opset_version=bench_models.OPSET,
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
                return fn, [w.name for w in weights], fn(*arrays)

            try:
                (file_fn, file_names, (loss_f, grads_f)), first_file = _timed(lambda: file_first_call(True))
            except (OnnxGradError, _HandExportRenamed) as err:
                # Recorded, and the file route measured on the converter's export written to a file instead.
                record["file_note"] = f"hand export refused ({_error_text(err)})"
                _log(f"{name}: {record['file_note']}")
                os.environ["ONNXGRAD_CACHE_DIR"] = os.path.join(tmp, "file_cache_2")
                (file_fn, file_names, (loss_f, grads_f)), first_file = _timed(lambda: file_first_call(False))
        finally:
            if previous_cache is None:
                os.environ.pop("ONNXGRAD_CACHE_DIR", None)
            else:
                os.environ["ONNXGRAD_CACHE_DIR"] = previous_cache
        (loss_t, grads_t), first_torch = _timed(torch_step)
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
                _, seconds = _timed(fn)
            per_call[timer] = seconds
        samples: dict[str, list[float]] = {t: [] for t in REAL_TIMERS}
        for round_ in range(settings.rounds):
            order = REAL_TIMERS[round_ % 3:] + REAL_TIMERS[: round_ % 3]  # nobody always runs first
            for timer in order:
                n = max(1, round(settings.batch_seconds / per_call[timer]))
                _, seconds = _timed(lambda: [calls[timer]() for _ in range(n)])  # noqa: B023 (called at once)
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
        ms = [_fmt(r["systems"][t]["median_ms"]) if t in r["systems"] else "–" for t in REAL_TIMERS]
        ratios = [_fmt(r.get(k)) for k in ("module_over_torch", "file_over_torch", "module_over_file")]
        lines.append(f"| {name}: {r['title']} | {r['parameters'] / 1e6:.1f} | " + " | ".join(ms) + " | "
                     + " | ".join(ratios) + f" | {first['module']:.1f} | {first['file']:.1f} | {first['torch']:.2f} |")
    notes = [f"- {name}: {r['file_note']}; its file route runs the converter's export, saved to a file"
             for name, r in records.items() if r.get("file_note")]
    return "\n".join(lines + ([""] + notes if notes else []))


def real_main(args: argparse.Namespace, settings: Settings) -> int:
    """``--real``: the real architectures, in this process."""
    known = list(bench_models.REAL_MODELS)
    models = known if args.models is None else _names(args.models, known, "real models")
    records, ok = {}, True
    started = time.perf_counter()
    for name in models:
        _log(f"{name}: building, exporting, first calls")
        try:
            records[name] = real_architecture(name, settings, args.check_only)
        except Exception as err:  # one model's failure is a row of the table, not the end of the run
            records[name] = {"title": bench_models.REAL_MODELS[name][0], "check": [f"failed: {_error_text(err)}"]}
        ok = ok and records[name]["check"] == "ok"
        _log(f"{name}: {records[name]['check']}")
    print(real_tables(records))
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"\n({machine().get('cpu')}, {os.cpu_count()} CPUs, {settings.threads} threads; "
          f"run took {time.perf_counter() - started:.0f} s; load average at the end {_fmt(load and load[0])})")
    if args.json:
        report = {"machine": machine(), "settings": dataclasses.asdict(settings), "real": records}
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if ok else 1


# ----------------------------------------------------------------------------------------------------------------
# Command line


def _names(text: str, known, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; known: {', '.join(known)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute on 2 cores)")
    parser.add_argument("--models", help="comma-separated: tiny,mlp,lenet,block (default all); with --real: "
                        f"{','.join(bench_models.REAL_MODELS)}")
    parser.add_argument("--real", action="store_true",
                        help="the real architectures (transformers, random weights; needs the 'bench' extra): "
                        "the module route and the ONNX file route against PyTorch eager")
    parser.add_argument("--systems", default=",".join(WORKERS), help=f"comma-separated: {','.join(WORKERS)}")
    parser.add_argument("--json", metavar="PATH", help="write the full report (all samples) as JSON")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 15, --quick 3)")
    parser.add_argument("--batch-seconds", type=float, help="target seconds per timed batch (default 0.2)")
    parser.add_argument("--threads", type=int, help="threads per system (default 2)")
    parser.add_argument("--caller-threads", type=int,
                        help=f"threads sharing one ForwardValueAndGrad in the onnxgrad_threads column "
                        f"(default {CALLER_THREADS}; 1 drops the column)")
    parser.add_argument("--check-only", action="store_true", help="cross-check the systems, time nothing")
    parser.add_argument("--no-gemm", action="store_true", help="skip ORT's GEMM measurement")
    parser.add_argument(
        "--plain-python", metavar="PYTHON", default=os.environ.get("ONNXGRAD_BENCH_PLAIN_PYTHON"),
        help="the Python of the onnxgrad_plain worker: plain onnxruntime and onnxgrad installed "
        "(default: $ONNXGRAD_BENCH_PLAIN_PYTHON)",
    )
    # Worker mode (internal).
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.threads or 2, args.results or tempfile.gettempdir(),
                           args.caller_threads or CALLER_THREADS)

    models = [] if args.real else _names(args.models or ",".join(bench_models.MODELS), list(bench_models.MODELS),
                                         "models")
    systems = _names(args.systems, list(WORKERS), "systems")
    settings = QUICK if args.quick else FULL
    overrides = {k: v for k, v in {"rounds": args.rounds, "batch_seconds": args.batch_seconds,
                                   "threads": args.threads, "plain_python": args.plain_python,
                                   "caller_threads": args.caller_threads}.items()
                 if v is not None}
    if args.check_only:  # first calls only
        overrides.update(warmup_seconds=0.0, warmup_calls=0)
    settings = dataclasses.replace(settings, **overrides)
    if args.real:
        return real_main(args, settings)
    started = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    gemm = "ort" in systems and not args.check_only and not args.no_gemm
    report, all_ok = run_all(models, systems, settings, args.check_only, gemm)
    report = {"machine": machine(), "settings": dataclasses.asdict(settings), **report}
    report["loadavg"] = {"before": load_before, "after": os.getloadavg() if load_before else None}
    report["elapsed_s"] = time.perf_counter() - started
    if args.check_only:
        for model, entry in report["models"].items():
            for system, sys_record in entry["systems"].items():
                status = sys_record.get("check") or sys_record.get("skip") or sys_record.get("error")
                if isinstance(status, list):
                    status = "MISMATCH: " + "; ".join(status)
                print(f"{model:6s} {system:12s} {status}")
    else:
        print(tables(report, systems))
        print(f"\n({report['machine'].get('cpu')}, {os.cpu_count()} CPUs, {settings.threads} threads per system; "
              f"run took {report['elapsed_s']:.0f} s)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))
        _log(f"wrote {args.json}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
