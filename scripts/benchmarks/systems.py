"""The systems a worker process times: each builds its model and returns a :class:`Runner`."""

from __future__ import annotations

import dataclasses
import os
import platform
from typing import Any, Callable

import numpy as np

from scripts.benchmarks import models
from scripts.benchmarks.common import CALLER_THREADS, GEMM_SIZE, WORKERS, timed


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


def _onnx_cell(case: models.ModelCase):
    import onnxgrad

    net = onnxgrad.load(case.backbone)
    return onnxgrad.nn.WithLossCell(net, models.onnx_loss(case), case.label.dtype)


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
    case: models.ModelCase, threads: int, timer: str = "onnxgrad", caller_threads: int = CALLER_THREADS
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


def setup_ort(case: models.ModelCase, threads: int) -> Runner:
    """Raw ORT on onnxgrad's forward+backward graph, plus IOBinding and forward-only sessions."""
    import onnxruntime as ort

    from onnxgrad import _engine, _gradient

    args = [case.x, case.label]
    cell = _onnx_cell(case)
    params = cell.trainable_params()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    runner = Runner(prime=lambda: {}, info={"intra_op_num_threads": threads})

    def prime():
        # The spec ForwardValueAndGrad(get_all=True, get_by_list=True) compiles: every input, every weight.
        spec = _engine.GradSpec(inputs=tuple(range(len(cell.inputs))), weights=tuple(p.name for p in params))
        built, build_s = timed(lambda: _engine.gradient_model(cell, spec, [a.shape for a in args]))
        session, session_s = timed(
            lambda: ort.InferenceSession(built.model.SerializeToString(), options, providers=providers)
        )
        given = {info.name: a for info, a in zip(cell.inputs, args)}
        given.update({p.name: p.value for p in params})
        feeds = {i.name: given[i.name] for i in session.get_inputs()}
        outputs = list(built.outputs)

        def run():
            return session.run(outputs, feeds)

        values, first_run_s = timed(run)

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
        graph, opset_imports=[helper.make_opsetid("", models.OPSET)], ir_version=models.IR_VERSION
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

    return Runner(prime, {"gemm": run}, info={"flops": 2 * n**3})


def setup_torch(case: models.ModelCase, threads: int) -> Runner:
    """PyTorch eager: forward, loss, torch.autograd.grad on the input and every weight."""
    import torch

    module, loss_fn, params = models.torch_model(case)
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
    return Runner(prime, {"torch": step}, info=info)


def setup_mindspore(case: models.ModelCase, threads: int, graph_mode: bool) -> Runner:
    """MindSpore's nn.ForwardValueAndGrad in the process's mode (graph mode compiles at the first call)."""
    import mindspore as ms
    from mindspore import nn

    cell, params = models.mindspore_model(case)
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
    return Runner(prime, {name: step}, info=info, finish=finish)


def setup(system: str, model: str, threads: int, caller_threads: int = CALLER_THREADS) -> Runner:
    """Loads ``system`` with ``model`` in this process (no call yet)."""
    if model == "gemm":
        if system != "ort":
            raise ValueError("the gemm pseudo-model runs in the ort worker only")
        return setup_gemm(threads)
    case = models.build(model)
    if system in ("onnxgrad", "onnxgrad_plain"):
        return setup_onnxgrad(case, threads, system, caller_threads)
    if system == "ort":
        return setup_ort(case, threads)
    if system == "torch":
        return setup_torch(case, threads)
    if system in ("ms_pynative", "ms_graph"):
        return setup_mindspore(case, threads, graph_mode=system == "ms_graph")
    raise ValueError(f"unknown system {system!r}; known: {sorted(WORKERS)}")


def load(system: str, threads: int) -> None:
    """Imports a worker's framework and sets its process-wide options (once per process)."""
    if system in ("onnxgrad", "ort"):
        import onnxruntime  # noqa: F401

        import onnxgrad  # noqa: F401
    elif system == "onnxgrad_plain":
        from onnxgrad import _builder_env

        if _builder_env.in_process():
            raise Skip("this Python's onnxruntime is the training build: pass --plain-python, a Python "
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


class Skip(Exception):
    """The system cannot run in this worker's environment."""
