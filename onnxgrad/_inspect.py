"""What ``onnxgrad inspect`` reports about a model: header, interface,
parameters, op histogram, and whether (and where not) it can be differentiated.

The differentiability report is found by trying: onnxgrad builds the gradient
of every output with respect to every input and trainable weight, exactly as
``ForwardValueAndGrad`` would (symbolic sizes set to 1). When
onnxruntime-training has no gradient for an op type, the nodes of that type are
cut out of the graph (their outputs become constants) and the build is tried
again, until it succeeds, so that every blocking op type is found, not only the
first. Which tensors reach the outputs is read off the graph with the same edge
rules the gradient preparation uses.

:func:`inspect_model` returns an :class:`InspectReport` (nothing here formats or
prints). The report's rows and statuses are data in ``_inspect_report`` (re-exported
here); :meth:`InspectReport.to_dict` gives it as JSON, and
``onnxgrad._inspect_text.to_text`` formats it for people.
"""

from __future__ import annotations

import collections
import logging
import os
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from onnxgrad import _engine, _export, _prepare
from onnxgrad._graph import (
    FLOAT_TYPES,
    TensorInfo,
    TypeTable,
    concretize_inputs,
    float_casts,
    infer_types,
    is_default_domain,
)
from onnxgrad._inspect_report import (
    BLOCKED,
    NO,
    NO_PATH,
    NOT_FLOAT,
    NOT_NEEDED,
    OK,
    PARTLY_BLOCKED,
    UNKNOWN,
    YES,
    BlockingNode,
    InspectReport,
    OpRow,
    SourceRow,
    TensorRow,
    WeightRow,
)
from onnxgrad._network import Network, load
from onnxgrad._validate_control import walk_nodes
from onnxgrad.errors import (
    GradientBuildError,
    InputError,
    ModelError,
    OnnxGradError,
    RuntimeFailure,
    UnsupportedGradientError,
)

__all__ = [
    "InspectReport",
    "TensorRow",
    "WeightRow",
    "OpRow",
    "SourceRow",
    "BlockingNode",
    "inspect_model",
    "inspect_isolated",
]

logger = logging.getLogger(__name__)

#: At most this many distinct blocking op types are searched for.
MAX_BLOCKING_TYPES = 32


def _row(info: TensorInfo) -> TensorRow:
    return TensorRow(info.name, None if info.shape is None else list(info.shape), str(info.dtype))


def _weight_row(tensor: onnx.TensorProto, trainable: bool) -> WeightRow:
    elements = int(np.prod(tensor.dims, dtype=np.int64)) if tensor.dims else 1
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
        name, size = str(dtype), elements * dtype.itemsize
    except (KeyError, TypeError):  # strings and exotic types have no fixed size
        name, size = onnx.TensorProto.DataType.Name(tensor.data_type).lower(), 0
    return WeightRow(tensor.name, [int(d) for d in tensor.dims], name, elements, size, trainable)


def _is_float(name: str, types: Mapping[str, tuple]) -> bool:
    elem = types.get(name, (onnx.TensorProto.FLOAT, None))[0]
    return elem in FLOAT_TYPES or elem == 0


def _dependents(graph: onnx.GraphProto, sources: set[str], types: Mapping[str, tuple]) -> set[str]:
    """Tensors that depend on ``sources`` through edges a gradient can flow along."""
    found = set(sources)
    for node in graph.node:  # ONNX graphs are topologically sorted
        stopped = _prepare.stopped_inputs(node)
        if any(n and i not in stopped and n in found and _is_float(n, types) for i, n in enumerate(node.input)):
            found.update(out for out in node.output if out and _is_float(out, types))
    return found


def _concrete_model(network: Network, shapes: Sequence[Sequence[int]]) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.CopyFrom(network.model)
    # The same concrete shapes a gradient call gives the graph, so inspect and grad see the same types.
    concretize_inputs(model.graph, {info.name: shape for info, shape in zip(network.inputs, shapes)})
    return model


def _cut(network: Network, op_types: set[str], types: TypeTable) -> Network:
    """The network with every node of ``op_types`` removed; their outputs become inputs."""
    model = onnx.ModelProto()
    model.CopyFrom(network.model)
    graph = model.graph
    kept, added = [], []
    for node in graph.node:
        if node.op_type not in op_types:
            kept.append(node)
            continue
        for out in node.output:
            if out:
                elem, shape = types.type_of(out)
                added.append(helper.make_tensor_value_info(out, elem or onnx.TensorProto.FLOAT, shape))
    del graph.node[:]
    graph.node.extend(kept)
    graph.input.extend(added)
    return Network(model, network.trainable_params())


def _find_blocking_types(
    network: Network, shapes: list[tuple[int, ...]], types: TypeTable
) -> tuple[set[str], str | None]:
    """Op types without a gradient on some path, and another build error if one stops the search."""
    spec = _engine.GradSpec(inputs=tuple(range(len(network.inputs))), weights=tuple(network.parameters_dict()))
    present = {node.op_type for node in network.model.graph.node}
    blocked: set[str] = set()
    candidate = network
    for _ in range(MAX_BLOCKING_TYPES):
        try:
            _engine.gradient_model(candidate, spec, shapes)
            return blocked, None
        except UnsupportedGradientError as err:
            op_type = err.op_type.rsplit("::", 1)[-1]
            if not op_type or op_type in blocked or op_type not in present:
                return blocked, str(err)
            logger.info("no gradient for %s; cutting its nodes and trying again", op_type)
            blocked.add(op_type)
            candidate = _cut(network, blocked, types)
        except GradientBuildError as err:
            return blocked, str(err)
    return blocked, f"more than {MAX_BLOCKING_TYPES} op types block the gradient; stopped searching"


#: Seconds the isolated analysis of :func:`inspect_isolated` may take.
ISOLATED_TIMEOUT_S = 300.0


def inspect_isolated(
    path: str | os.PathLike, shapes: Mapping[str, Sequence[int]] | None = None, timeout: float = ISOLATED_TIMEOUT_S
) -> InspectReport:
    """:func:`inspect_model` in a child process, for files that may not be trustworthy.

    ONNX shape inference and the gradient builder are native code: a model onnxgrad's checks
    miss could still crash or hang them. Here that ends the child, not the caller.

    Args:
        path: the ``.onnx`` file.
        shapes: as for :func:`inspect_model`.
        timeout: seconds before the analysis counts as hung.

    Returns:
        The report, as :func:`inspect_model` returns it.

    Raises:
        OnnxGradError: the subclass :func:`inspect_model` raised, with its message.
        RuntimeFailure: the analysis crashed or did not finish in ``timeout`` seconds.
    """
    import json
    import subprocess
    import sys

    from onnxgrad import errors

    request = json.dumps({"path": os.fspath(path), "shapes": {k: list(v) for k, v in (shapes or {}).items()}})
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "from onnxgrad._inspect import _isolated_child; _isolated_child()"],
            input=request, capture_output=True, text=True, timeout=timeout, env=env,
        )
    except subprocess.TimeoutExpired as err:
        raise RuntimeFailure(
            f"Inspecting {os.fspath(path)!r} did not finish in {timeout:g} s: the model makes ONNX or ONNX Runtime "
            "hang. Check the model's Loop/Scan trip counts and sizes."
        ) from err
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        native = (proc.stderr.strip().splitlines() or [""])[-1][:300]
        raise RuntimeFailure(
            f"Inspecting {os.fspath(path)!r} crashed the analysis process (exit status {proc.returncode}"
            f"{': ' + native if native else ''}): the model makes ONNX or ONNX Runtime crash. Check it with "
            "onnx.checker.check_model(full_check=True) and report it to onnxgrad if it is valid."
        )
    result = json.loads(lines[-1])
    if "error" in result:
        raise getattr(errors, result["error"], errors.OnnxGradError)(result["message"])
    return InspectReport.from_dict(result["report"])


def _isolated_child() -> None:
    """The child of :func:`inspect_isolated`: a JSON request on stdin, one JSON line on stdout."""
    import json
    import sys

    from onnxgrad.errors import OnnxGradError

    request = json.loads(sys.stdin.read())
    try:
        report = inspect_model(request["path"], request["shapes"] or None)
        result: dict[str, Any] = {"report": report.to_dict()}
    except OnnxGradError as err:
        result = {"error": type(err).__name__, "message": str(err)}
    print(json.dumps(result))


def inspect_model(
    path: str | os.PathLike, shapes: Mapping[str, Sequence[int]] | None = None
) -> InspectReport:
    """Reads a model file and reports on it, including whether it can be differentiated.

    Args:
        path: the ``.onnx`` file (external data next to it is read).
        shapes: concrete shapes for inputs with symbolic sizes, used by the
            trial gradient build (others are set to 1; see
            :func:`onnxgrad._export.concrete_shapes`).

    Returns:
        The report.

    Raises:
        ModelError: the file is missing, unreadable or not valid ONNX.
        InputError: ``shapes`` names an unknown input or does not fit it.

    Example:
        >>> report = inspect_model("models/digits_mlp.onnx")
        >>> report.differentiable, [w.name for w in report.trainable]
        (True, ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'])
    """
    network = load(path)
    try:
        return _inspect_network(network, path, shapes)
    except OnnxGradError:
        raise
    except Exception as err:  # what load's checks let through: still a typed error, never a traceback
        raise ModelError(
            f"Inspecting {os.fspath(path)!r} failed ({type(err).__name__}: {err}). Check the model with "
            "onnx.checker.check_model(full_check=True); if it passes, please report this with the model."
        ) from err


def _inspect_network(
    network: Network, path: str | os.PathLike, shapes: Mapping[str, Sequence[int]] | None
) -> InspectReport:
    header = onnx.load(os.fspath(path), load_external_data=False)
    graph = network.model.graph
    params = network.parameters_dict()

    notes: list[str] = []
    converted = (network.model.ir_version, _default_opset(network.model))
    if converted != (header.ir_version, _default_opset(header)):
        notes.append(f"converted to IR {converted[0]}, opset {converted[1]} for onnxruntime-training")
    shape_error = None
    try:
        input_shapes, shape_notes = _export.concrete_shapes(network, shapes)
    except InputError as err:
        if shapes:
            raise  # the caller's own shapes are wrong
        input_shapes, shape_notes, shape_error = None, [], str(err)
    notes += [f"gradient check: {n}" for n in shape_notes]

    trainable_rows = []
    original = {init.name: init for init in header.graph.initializer}
    for name, param in params.items():
        # Sizes from the header proto (dims and type), values are not needed.
        trainable_rows.append(_weight_row(original[name], True) if name in original else _param_row(param))
    constant_rows = [_weight_row(init, False) for init in graph.initializer]

    counts = collections.Counter((node.domain or "", node.op_type) for node in walk_nodes(graph.node))

    types = infer_types(network.model if input_shapes is None else _concrete_model(network, input_shapes))
    float_outputs = {o.name for o in network.outputs if o.is_float}
    reach = _prepare.gradient_sources(graph, float_outputs, types) if float_outputs else set()

    # Each source: the tensors a gradient for it comes through (an int input: its float Casts).
    source_tensors: dict[str, set[str]] = {}
    source_rows: list[tuple[str, str, str]] = []
    for info in network.inputs:
        if info.is_float:
            source_tensors[info.name] = {info.name}
        else:  # where the gradient call's int semantics enter float math too (_int_math)
            source_tensors[info.name] = float_casts(graph, info.name, types)
        source_rows.append((info.name, "input", str(info.dtype)))
    for name, param in params.items():
        source_tensors[name] = {name}
        source_rows.append((name, "weight", str(param.dtype)))
    all_sources = set().union(*source_tensors.values()) if source_tensors else set()

    error = None
    blocked_types: set[str] = set()
    if not float_outputs:
        error = "the model has no floating-point output, so there is nothing to differentiate"
    elif not (all_sources & reach):
        error = "no output depends on a float input or trainable weight, so there is nothing to differentiate"
    elif input_shapes is None:  # they could not be made concrete
        error = f"the gradient build was not tried: {shape_error}"
    else:
        blocked_types, error = _find_blocking_types(network, input_shapes, types)

    depends = _dependents(graph, all_sources, types)
    on_path = []
    for index, node in enumerate(graph.node):
        stopped = _prepare.stopped_inputs(node)
        feeds = any(n and i not in stopped and n in depends for i, n in enumerate(node.input))
        if feeds and any(out in reach for out in node.output):
            on_path.append((index, node))

    blocking: list[BlockingNode] = []
    behind_blockers: set[str] = set()
    for index, node in on_path:
        if node.op_type in blocked_types:
            upstream = _prepare.gradient_sources(graph, {o for o in node.output if o}, types)
            blocks = [name for name, tensors in source_tensors.items() if tensors & upstream]
            behind_blockers.update(blocks)
            blocking.append(BlockingNode(index, node.name, node.op_type, node.domain or "", blocks))

    clean_reach = reach
    if blocking:
        cut_graph = _cut(network, blocked_types, types).model.graph
        clean_reach = _prepare.gradient_sources(cut_graph, float_outputs, types)
    sources = []
    for name, kind, dtype in source_rows:
        tensors = source_tensors[name]
        if not tensors:
            status = NOT_FLOAT
        elif not tensors & reach:
            status = NO_PATH
        elif name not in behind_blockers:
            status = OK
        elif tensors & clean_reach:
            status = PARTLY_BLOCKED
        else:
            status = BLOCKED
        sources.append(SourceRow(name, kind, dtype, status))

    path_types = {node.op_type for _, node in on_path}
    ops = []
    for (domain, op_type), count in counts.most_common():
        if op_type in blocked_types:
            gradient = NO
        elif op_type not in path_types:
            gradient = NOT_NEEDED
        else:
            gradient = UNKNOWN if error else YES
        ops.append(OpRow(op_type, domain, count, gradient))

    producer = " ".join(p for p in (header.producer_name, header.producer_version) if p)
    return InspectReport(
        path=os.fspath(path),
        ir_version=header.ir_version,
        opsets={(o.domain or "ai.onnx"): o.version for o in header.opset_import},
        producer=producer,
        graph_name=header.graph.name,
        inputs=[_row(i) for i in network.inputs],
        outputs=[_row(o) for o in network.outputs],
        weights=trainable_rows + constant_rows,
        ops=ops,
        differentiable=not blocking and error is None,
        sources=sources,
        blocking=blocking,
        error=error,
        notes=notes,
    )


def _param_row(param) -> WeightRow:
    return WeightRow(
        param.name, list(param.shape), str(param.dtype), int(param.value.size), int(param.value.nbytes), True
    )


def _default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if is_default_domain(o.domain):
            return o.version
    return 0
