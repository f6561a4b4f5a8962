"""Helpers the rewrite families share: attributes, constants, static types and shapes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnxgrad._custom_gradients import DOMAIN
from onnxgrad._graph import GraphWriter, TypeTable, constant_value
from onnxgrad._graph import attr as attr  # the families read attributes through _common


def constant(w: GraphWriter | onnx.GraphProto, name: str) -> np.ndarray | None:
    """The value of ``name`` if a (non-trainable) initializer or a Constant node of the writer's
    graph (or of the graph ``w``) holds it."""
    return constant_value(w if isinstance(w, onnx.GraphProto) else w.graph, name)


def read_names(w: GraphWriter) -> set[str]:
    """Every tensor some node or the graph's outputs read."""
    return {name for n in w.graph.node for name in n.input} | {o.name for o in w.graph.output}


def moments(w: GraphWriter, x: str, axes: list[int]) -> tuple[str, str, str]:
    """``(mean, x - mean, mean of its square)`` over ``axes``, kept as size-1 axes."""
    mean = w.reduce("ReduceMean", x, axes, True)
    centered = w.op("Sub", x, mean)
    # Identity: the builder refuses a tensor feeding one node twice.
    variance = w.reduce("ReduceMean", w.op("Mul", centered, w.op("Identity", centered)), axes, True)
    return mean, centered, variance


def call_function(w: GraphWriter, name: str, op: str, inputs: list[str], outputs, **attrs) -> None:
    """Emits a call of the onnxgrad function ``name`` whose body is one ``op`` node (added once)."""
    args = [f"x{k}" for k in range(len(inputs))]
    body = [helper.make_node(op, args, ["y"], **attrs)]
    w.add_function(helper.make_function(DOMAIN, name, args, ["y"], body, [helper.make_opsetid("", w.opset)]))
    w.node(name, inputs, outputs, domain=DOMAIN)


def broadcast_operands(w: GraphWriter, types: TypeTable, a: str, b: str) -> tuple[str, str] | None:
    """Both operands expanded to their broadcast (static) shape, so that a function's gradients
    need no reduction; None when a shape is unknown."""
    shape_a, shape_b = static_shape(types, a), static_shape(types, b)
    if shape_a is None or shape_b is None:
        return None
    if shape_a == shape_b:
        return a, b
    out = w.constant(np.array(np.broadcast_shapes(shape_a, shape_b), np.int64))
    return w.op("Expand", a, out), w.op("Expand", b, out)


def is_float(types: TypeTable, name: str) -> bool:
    return types.is_float(name)


def rank_of(types: TypeTable, name: str) -> int | None:
    return types.rank(name)


def static_shape(types: TypeTable, name: str) -> tuple[int, ...] | None:
    """The static shape of ``name``, or None when any size is unknown."""
    return types.static_shape(name)


def reduction_axes(node: onnx.NodeProto, w: GraphWriter) -> tuple[list[int] | None, bool] | None:
    """``(axes, keepdims)`` of a Reduce* node (axes None: all); None if the axes are not constant."""
    if len(node.input) > 1 and node.input[1]:  # opset 18 (ReduceSum: 13): axes as an input
        value = constant(w, node.input[1])
        if value is None:
            return None
        axes: list[int] | None = [int(a) for a in value.reshape(-1)]
    else:
        axes = attr(node, "axes")
    if not axes:
        if attr(node, "noop_with_empty_axes", 0):
            return None  # an identity: rare, keep the node
        axes = None
    return axes, bool(attr(node, "keepdims", 1))


def const_like(w: GraphWriter, value: float, ref: str, types: TypeTable) -> str:
    # A scalar constant in the dtype of tensor `ref` (float32 when unknown).
    elem = types.elem(ref) or onnx.TensorProto.FLOAT
    return w.constant(value, helper.tensor_dtype_to_np_dtype(elem))
