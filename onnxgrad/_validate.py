"""Checks a model for what crashes, hangs or exhausts ONNX, onnxruntime or the gradient builder.

``onnx.checker`` accepts models that take the process down later: a string graph output
segfaults ONNX Runtime's first call, a model-local function that calls itself segfaults shape
inference (and the version converter), a Loop whose inputs do not match its body aborts the
gradient builder, a Loop with a constant trip count of 2**40 grows memory until the process is
killed, and an initializer whose data does not fill its declared shape fails deep in numpy.
:func:`validate` looks for each of these in pure Python, before any native code sees the
model, and refuses with a :class:`ModelError` that names the tensor or node and the fix.

This module checks the model's structure: its interface, declared shapes, tensors, functions
and the inputs and attributes of each node. The control-flow checks (Loop, Scan, If, walking
their subgraphs) and the run-time trip-count guard live in ``_validate_control``; the names
listed here from it are re-exported, so callers keep importing them from ``_validate``.
"""

from __future__ import annotations

import os
import re

import numpy as np
import onnx
from onnx import helper

from onnxgrad._graph import is_default_domain
from onnxgrad._validate_control import (
    MAX_TRIP_COUNT,
    TRIP_GUARD_PREFIX,
    all_graphs,
    check_if,
    check_loop,
    check_scan,
    constant_array,
    guard_trip_counts,
    subgraphs,
    trip_count_failure,
    walk_nodes,
)
from onnxgrad.errors import ModelError

__all__ = [
    "MAX_TRIP_COUNT", "MAX_ELEMENTS", "TRIP_GUARD_PREFIX", "validate", "check_external_data", "all_graphs",
    "walk_nodes", "guard_trip_counts", "trip_count_failure",
]

#: The largest element count of a declared dimension or tensor accepted (int32 indexing
#: limits of several ONNX Runtime kernels, and far beyond any host's memory in float32 ×8).
MAX_ELEMENTS = 1 << 31

# Graph inputs and outputs cross into numpy: these element types have no numpy dtype or
# no ONNX Runtime kernels to differentiate.
_BOUNDARY_TYPES = frozenset(
    {
        onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
        onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64,
        onnx.TensorProto.BOOL,
    }
)  # fmt: skip


def _type_name(elem_type: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"element type {elem_type}"


def validate(model: onnx.ModelProto) -> None:
    """Refuses a model that would crash, hang or exhaust memory further on.

    Args:
        model: the model, already read (not modified).

    Raises:
        ModelError: naming the tensor, node or function at fault and how to fix it.
    """
    _check_functions(model)
    graph = model.graph
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for value in values:
            _check_boundary(kind, value)
    for value in [*graph.input, *graph.output, *graph.value_info]:
        _check_declared_shape(value)
    _check_graph(graph, constants={}, opsets=model.opset_import)
    for function in model.functions:
        _check_nodes(function.node, f"function {function.domain}.{function.name}", constants={})


def _check_boundary(kind: str, value: onnx.ValueInfoProto) -> None:
    which = value.type.WhichOneof("value")
    if which != "tensor_type":
        what = {"sequence_type": "sequence", "optional_type": "optional", "map_type": "map",
                "sparse_tensor_type": "sparse tensor"}.get(which, "value of no type")
        raise ModelError(
            f"Graph {kind} {value.name!r} is a {what}, not a tensor: onnxgrad passes numeric "
            f"tensors in and out. Make the {kind} a tensor (e.g. ConcatFromSequence a sequence, "
            "OptionalGetElement an optional) or remove it."
        )
    elem_type = value.type.tensor_type.elem_type
    if elem_type not in _BOUNDARY_TYPES:
        raise ModelError(
            f"Graph {kind} {value.name!r} has type {_type_name(elem_type)}: onnxgrad passes float, int and bool "
            f"tensors in and out. Cast the {kind} to a numeric type inside the model, or remove it."
        )


def _check_declared_shape(value: onnx.ValueInfoProto) -> None:
    if value.type.WhichOneof("value") != "tensor_type" or not value.type.tensor_type.HasField("shape"):
        return
    dims = [d.dim_value for d in value.type.tensor_type.shape.dim if d.HasField("dim_value")]
    _check_size(dims, f"tensor {value.name!r} is declared with shape {dims}")


def _check_size(dims, what: str) -> None:
    if any(d < 0 for d in dims):
        raise ModelError(f"{what}, with a negative size: fix the declaration (sizes are >= 0).")
    count = 1
    for d in dims:
        count *= d
    if any(d > MAX_ELEMENTS for d in dims) or count > MAX_ELEMENTS:
        raise ModelError(
            f"{what}: {count} elements is more than onnxgrad accepts ({MAX_ELEMENTS}). "
            "Fix the declared shape (a symbolic dimension for a size that varies)."
        )


def _check_tensor(tensor: onnx.TensorProto, where: str) -> None:
    """The tensor's data fills its declared shape (numpy and ORT fail obscurely otherwise)."""
    what = f"{where} {tensor.name!r}" if tensor.name else where
    _check_size(list(tensor.dims), f"{what} has shape {list(tensor.dims)}")
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return
    count = int(np.prod(tensor.dims, dtype=np.int64))
    if tensor.data_type == onnx.TensorProto.STRING:
        have = len(tensor.string_data)
    else:
        typed = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data")
        raw = tensor.HasField("raw_data") or not any(len(getattr(tensor, field)) for field in typed)
        try:
            if raw:
                itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
            else:
                field = helper.tensor_dtype_to_field(tensor.data_type)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(
                f"{what} has data type {tensor.data_type}, which ONNX does not define: "
                "re-export the model with a standard element type."
            ) from err
        if raw and tensor.data_type in (onnx.TensorProto.UINT4, onnx.TensorProto.INT4):
            return  # two values per byte
        if raw:
            have, count = len(tensor.raw_data), count * itemsize
        else:
            have = len(getattr(tensor, field))
            if tensor.data_type in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128):
                count *= 2
    if have != count:
        raise ModelError(
            f"{what} declares shape {list(tensor.dims)} ({count} {'bytes' if tensor.HasField('raw_data') else 'values'})"
            f" but holds {have}: the file is damaged or was written wrongly. Re-export the model."
        )


def _check_functions(model: onnx.ModelProto) -> None:
    """Model-local functions must not call themselves, directly or through others."""
    functions = {(f.domain, f.name): f for f in model.functions}
    calls = {key: {(n.domain, n.op_type) for n in walk_nodes(f.node)} & functions.keys() for key, f in functions.items()}
    state: dict[tuple[str, str], int] = {}  # 1: on the path, 2: done

    def visit(key: tuple[str, str], path: list[tuple[str, str]]) -> None:
        state[key] = 1
        for callee in sorted(calls[key]):
            if state.get(callee) == 1:
                cycle = " -> ".join(f"{d}.{n}" for d, n in [*path[path.index(callee):], callee])
                raise ModelError(
                    f"Model-local function {callee[0]}.{callee[1]} calls itself ({cycle}): ONNX functions cannot "
                    "recurse, and shape inference crashes on them. Rewrite the recursion as a Loop."
                )
            if state.get(callee) is None:
                visit(callee, [*path, callee])
        state[key] = 2

    for key in sorted(functions):
        if key not in state:
            visit(key, [key])


def _check_graph(graph: onnx.GraphProto, constants: dict[str, onnx.TensorProto], opsets=()) -> None:
    constants = dict(constants)
    for init in graph.initializer:
        _check_tensor(init, "initializer")
        constants[init.name] = init
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in [*graph.input, *graph.value_info, *graph.output]
        if v.type.WhichOneof("value") == "tensor_type" and v.type.tensor_type.HasField("shape")
    }
    ranks.update({init.name: len(init.dims) for init in graph.initializer})
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in [*graph.input, *graph.value_info, *graph.output]
        if v.type.WhichOneof("value") == "tensor_type" and v.type.tensor_type.elem_type
    }
    types.update({init.name: init.data_type for init in graph.initializer})
    opset = next((o.version for o in opsets if is_default_domain(o.domain)), None)
    for node in graph.node:
        if opset is not None and is_default_domain(node.domain):
            _check_input_types(node, opset, types)
    _check_nodes(graph.node, f"graph {graph.name!r}", constants, ranks, opsets)


def _check_nodes(
    nodes, where: str, constants: dict[str, onnx.TensorProto], ranks: dict[str, int] | None = None, opsets=()
) -> None:
    ranks = ranks or {}
    for node in nodes:
        label = f"{node.op_type} node {node.name!r}" if node.name else f"{node.op_type} node (output {list(node.output)})"
        for attr in node.attribute:
            if attr.HasField("t"):
                _check_tensor(attr.t, f"{label}'s attribute {attr.name}")
            for tensor in attr.tensors:
                _check_tensor(tensor, f"{label}'s attribute {attr.name}")
            if attr.HasField("sparse_tensor"):
                raise ModelError(f"{label} has a sparse tensor attribute: onnxgrad reads dense tensors only. "
                                 "Make it dense (a Constant with 'value').")
            if any(not _is_text(b) for b in [attr.s, *attr.strings]):
                raise ModelError(
                    f"{label}'s attribute {attr.name} is not UTF-8 text: the file is damaged. Re-export the model."
                )
        if is_default_domain(node.domain):
            if node.op_type in _LOSSES:
                _check_loss(node, label, ranks)
            elif node.op_type == "Einsum":
                _check_einsum(node, label, ranks)
            if node.op_type == "Constant" and len(node.output) == 1:
                for attr in node.attribute:
                    if attr.name == "value" and attr.HasField("t"):
                        constants[node.output[0]] = attr.t
            elif node.op_type == "Loop":
                check_loop(node, label, constants)
            elif node.op_type == "Scan":
                check_scan(node, label)
            elif node.op_type == "If":
                check_if(node, label)
            elif node.op_type in ("ConstantOfShape", "Expand", "Range"):
                _check_created_size(node, label, constants)
        for graph in subgraphs(node):
            _check_graph(graph, constants, opsets)


def _check_input_types(node: onnx.NodeProto, opset: int, types: dict[str, int]) -> None:
    """Declared input types must be ones the op's schema allows, the same for inputs sharing a
    type variable: ONNX's shape inference segfaults on some mismatches (ConvInteger on floats)."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return  # the checker reports unknown ops
    formals = list(schema.inputs)
    if not formals:
        return
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    bound: dict[str, tuple[str, str]] = {}
    for k, name in enumerate(node.input):
        formal = formals[min(k, len(formals) - 1)]
        if not name or name not in types or formal.type_str not in allowed:
            continue
        actual = f"tensor({_type_name(types[name])})"
        label = f"{node.op_type} node {node.name or list(node.output)!r}"
        if actual not in allowed[formal.type_str]:
            raise ModelError(
                f"{label} input {name!r} is a {actual}; {node.op_type}-{schema.since_version} takes "
                f"{sorted(allowed[formal.type_str])} there. Cast the input (or fix its declared type)."
            )
        first = bound.setdefault(formal.type_str, (name, actual))
        heterogeneous = formal.option == onnx.defs.OpSchema.FormalParameterOption.Variadic and not formal.is_homogeneous
        if first[1] != actual and not heterogeneous:
            raise ModelError(
                f"{label} inputs {first[0]!r} ({first[1]}) and {name!r} ({actual}) must have the same type: "
                "Cast one of them."
            )


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# Losses whose gradients onnxgrad writes from the declared reduction and the scores' class axis.
_LOSSES = ("SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss")


def _check_loss(node: onnx.NodeProto, label: str, ranks: dict[str, int]) -> None:
    reduction = next((a.s.decode() for a in node.attribute if a.name == "reduction"), "mean")
    if reduction not in ("none", "sum", "mean"):
        raise ModelError(f"{label} has reduction={reduction!r}: use 'none', 'sum' or 'mean'.")
    if node.input and ranks.get(node.input[0], 2) < 2:
        raise ModelError(
            f"{label}'s scores {node.input[0]!r} have rank {ranks[node.input[0]]}; the loss takes [N, C, ...] "
            "scores: add the batch axis (Unsqueeze) before the loss."
        )


_EINSUM_TERM = re.compile(r"[a-zA-Z]*(\.\.\.)?[a-zA-Z]*")


def _check_einsum(node: onnx.NodeProto, label: str, ranks: dict[str, int]) -> None:
    """The equation has one term per input, of letters (and one optional ellipsis) matching each
    declared rank: ONNX's shape inference segfaults on an equation that does not fit its inputs."""
    equation = next((a.s.decode() for a in node.attribute if a.name == "equation"), "").replace(" ", "")
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    problem = ""
    if len(terms) != len(node.input):
        problem = f"{len(terms)} input terms for {len(node.input)} inputs"
    elif not all(_EINSUM_TERM.fullmatch(t) for t in [*terms, rhs]):
        problem = "terms must be letters with at most one '...'"
    elif set(rhs.replace("...", "")) - set(lhs.replace("...", "")) or len(set(rhs)) < len(rhs.replace("...", ".")):
        problem = "the output term repeats a letter or uses one no input has"
    else:
        for term, name in zip(terms, node.input):
            letters = len(term.replace("...", ""))
            rank = ranks.get(name)
            if rank is not None and (letters > rank if "..." in term else letters != rank):
                problem = f"term {term!r} does not fit input {name!r} of rank {rank}"
                break
    if problem:
        raise ModelError(f"{label} has equation {equation!r}: {problem}. Fix the equation (e.g. 'ij,jk->ik').")


def _check_created_size(node: onnx.NodeProto, label: str, constants: dict[str, onnx.TensorProto]) -> None:
    """Tensors made from a constant shape or range must fit: ONNX Runtime would try to allocate them."""
    values = [constant_array(constants.get(name)) if name else None for name in node.input]
    if node.op_type == "Range":
        if len(values) < 3 or any(v is None or v.size != 1 for v in values):
            return
        start, limit, delta = (float(v.reshape(())) for v in values if v is not None)
        count = 0.0 if delta == 0 else max((limit - start) / delta, 0.0)
        if count > MAX_ELEMENTS:
            raise ModelError(
                f"{label} makes {count:.0f} values from constant start {start:g}, limit {limit:g} and delta "
                f"{delta:g}; onnxgrad accepts at most {MAX_ELEMENTS}. Fix the constants."
            )
        return
    shape = values[0] if node.op_type == "ConstantOfShape" else values[1] if len(values) > 1 else None
    if shape is not None and np.issubdtype(shape.dtype, np.integer):
        _check_size([int(d) for d in shape.ravel()], f"{label} makes a tensor of constant shape {shape.tolist()}")


def check_external_data(model: onnx.ModelProto, folder: str) -> None:
    """Every external-data location must be a regular file inside ``folder`` after resolving symlinks.

    Raises:
        ModelError: naming the tensor and the location.
    """
    root = os.path.realpath(folder)
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        real = os.path.realpath(os.path.join(root, location))
        if not location or os.path.isabs(location) or os.path.commonpath([root, real]) != root:
            raise ModelError(
                f"Tensor {tensor.name!r} reads external data from {location!r}, which resolves to {real!r}, outside "
                f"the model's folder {root!r}: keep external data files (not symlinks to elsewhere) beside the model."
            )
        if not os.path.isfile(real):
            raise ModelError(
                f"Tensor {tensor.name!r} reads external data from {location!r}, which is not a file in {root!r}: "
                "copy the data file beside the model (onnx.save(..., save_as_external_data=True) writes it)."
            )
