"""Helpers the rewrite families share: attributes, constants, static types and shapes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnxgrad._custom_gradients import DOMAIN
from onnxgrad._graph import GraphWriter, TypeTable, constant_value
from onnxgrad._graph import attr as attr  # the families read attributes through _common


def constant(gw: GraphWriter | onnx.GraphProto, name: str) -> np.ndarray | None:
    """The value of ``name`` if a (non-trainable) initializer or a Constant node of the writer's
    graph (or of the graph ``gw``) holds it."""
    return constant_value(gw if isinstance(gw, onnx.GraphProto) else gw.graph, name)


def read_names(gw: GraphWriter) -> set[str]:
    """Every tensor some node or the graph's outputs read."""
    return {name for n in gw.graph.node for name in n.input} | {o.name for o in gw.graph.output}


def moments(gw: GraphWriter, x: str, axes: list[int]) -> tuple[str, str, str]:
    """``(mean, x - mean, mean of its square)`` over ``axes``, kept as size-1 axes."""
    mean = gw.reduce("ReduceMean", x, axes, True)
    centered = gw.op("Sub", x, mean)
    # Identity: the builder refuses a tensor feeding one node twice.
    variance = gw.reduce("ReduceMean", gw.op("Mul", centered, gw.op("Identity", centered)), axes, True)
    return mean, centered, variance


def call_function(gw: GraphWriter, name: str, op: str, inputs: list[str], outputs, **attrs) -> None:
    """Emits a call of the onnxgrad function ``name`` whose body is one ``op`` node (added once)."""
    args = [f"x{k}" for k in range(len(inputs))]
    body = [helper.make_node(op, args, ["y"], **attrs)]
    gw.add_function(helper.make_function(DOMAIN, name, args, ["y"], body, [helper.make_opsetid("", gw.opset)]))
    gw.node(name, inputs, outputs, domain=DOMAIN)


def broadcast_operands(gw: GraphWriter, types: TypeTable, a: str, b: str) -> tuple[str, str] | None:
    """Both operands expanded to their broadcast (static) shape, so that a function's gradients
    need no reduction; None when a shape is unknown."""
    shape_a, shape_b = static_shape(types, a), static_shape(types, b)
    if shape_a is None or shape_b is None:
        return None
    if shape_a == shape_b:
        return a, b
    out = gw.constant(np.array(np.broadcast_shapes(shape_a, shape_b), np.int64))
    return gw.op("Expand", a, out), gw.op("Expand", b, out)


def is_float(types: TypeTable, name: str) -> bool:
    return types.is_float(name)


def rank_of(types: TypeTable, name: str) -> int | None:
    return types.rank(name)


def static_shape(types: TypeTable, name: str) -> tuple[int, ...] | None:
    """The static shape of ``name``, or None when any size is unknown."""
    return types.static_shape(name)


def reduction_axes(node: onnx.NodeProto, gw: GraphWriter) -> tuple[list[int] | None, bool] | None:
    """``(axes, keepdims)`` of a Reduce* node (axes None: all); None if the axes are not constant."""
    if len(node.input) > 1 and node.input[1]:  # opset 18 (ReduceSum: 13): axes as an input
        value = constant(gw, node.input[1])
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


def const_like(gw: GraphWriter, value: float, ref: str, types: TypeTable) -> str:
    # A scalar constant in the dtype of tensor `ref` (float32 when unknown).
    elem = types.elem(ref) or onnx.TensorProto.FLOAT
    return gw.constant(value, helper.tensor_dtype_to_np_dtype(elem))
