"""Elementwise arithmetic: Scale, DivGrad, the broadcast axes of BroadcastGradientArgs (static or
found at run time), Trilu."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxgrad._graph import attrs as node_attrs
from onnxgrad._lower._lowerer import Lowerer, NotStatic
from onnxgrad._lower._registry import lowers


@lowers("com.microsoft::Scale")
def _scale(lw: Lowerer, node: onnx.NodeProto) -> None:
    x, scale = node.input[0], lw.w.op("CastLike", node.input[1], node.input[0])
    lw.emit("Div" if node_attrs(node).get("scale_down", 0) else "Mul", [x, scale], node.output[0])


@lowers("com.microsoft::DivGrad")
def _div_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, a, b = node.input[:3]
    outputs = list(node.output) + [""] * (2 - len(node.output))
    grads = [lw.w.op("Div", dy, b) if outputs[0] else "",
             lw.w.op("Neg", lw.w.op("Div", lw.w.op("Mul", dy, a), lw.w.op("Mul", b, b))) if outputs[1] else ""]
    try:
        shapes = [lw.shape(a, node), lw.shape(b, node)]
    except NotStatic:  # a data-dependent shape: reduce over axes found at run time
        axes = _broadcast_axes(lw, lw.w.op("Shape", a), lw.w.op("Shape", b))
        for out, grad, axis, like in zip(outputs, grads, axes, (a, b)):
            if out:
                _reduce_to_dynamic(lw, grad, axis, like, out)
        return
    out_shape = tuple(np.broadcast_shapes(*shapes))
    for out, grad, shape in zip(outputs, grads, shapes):
        if out:
            lw.reduce_to(grad, out_shape, shape, out=out)


@lowers("com.microsoft::BroadcastGradientArgs")
def _broadcast_gradient_args(lw: Lowerer, node: onnx.NodeProto) -> None:
    try:
        a = [int(d) for d in lw.static_value(node.input[0], node)]
        b = [int(d) for d in lw.static_value(node.input[1], node)]
    except NotStatic:  # a data-dependent shape (Expand or Reshape to a computed shape): axes at run time
        _broadcast_gradient_args_dynamic(lw, node)
        return
    rank = max(len(a), len(b))
    a_axes, b_axes = [], []
    for k in range(rank):
        da = a[k - rank + len(a)] if k >= rank - len(a) else None
        db = b[k - rank + len(b)] if k >= rank - len(b) else None
        if da is None:
            a_axes.append(k)
        elif db is None:
            b_axes.append(k)
        elif da != db:
            if da == 1:
                a_axes.append(k)
            elif db == 1:
                b_axes.append(k)
            else:
                raise lw.fail(node, f"shapes {a} and {b} do not broadcast")
    for out, axes in zip(node.output, (a_axes, b_axes)):
        if out:
            lw.emit("Identity", [lw.ints(axes)], out)


def _broadcast_axes(lw: Lowerer, a: str, b: str) -> tuple[str, str]:
    """The reduction axes of two broadcast operands from their shape tensors, at run time.

    Both shapes are padded with leading 1s to the common rank; an operand is
    reduced over the axes where it is 1 and the other is not. (Where both are
    1, a ReduceSum over the broadcast gradient would be a no-op.)
    """
    w = lw.w
    length_a, length_b = w.op("Shape", a), w.op("Shape", b)
    rank = w.op("Max", length_a, length_b)
    one = numpy_helper.from_array(np.array([1], np.int64))

    def padded(shape: str, length: str) -> str:
        return w.op("Concat", w.op("ConstantOfShape", w.op("Sub", rank, length), value=one), shape, axis=0)

    is_one_a = w.op("Equal", padded(a, length_a), lw.ints([1]))
    is_one_b = w.op("Equal", padded(b, length_b), lw.ints([1]))

    def axes(mine: str, other: str) -> str:
        return w.op("Reshape", w.op("NonZero", w.op("And", mine, w.op("Not", other))), lw.ints([-1]))

    return axes(is_one_a, is_one_b), axes(is_one_b, is_one_a)


def _broadcast_gradient_args_dynamic(lw: Lowerer, node: onnx.NodeProto) -> None:
    axes = _broadcast_axes(lw, *node.input[:2])
    for out, value in zip(node.output, axes):
        if out:
            lw.emit("Identity", [value], out)


def _reduce_to_dynamic(lw: Lowerer, x: str, axes: str, like: str, out: str) -> None:
    """Sums a broadcast result over run-time ``axes`` back to the shape of tensor ``like``."""
    summed = lw.w.op("ReduceSum", x, axes, keepdims=1, noop_with_empty_axes=1)
    lw.emit("Reshape", [summed, lw.w.op("Shape", like)], out)


@lowers("com.microsoft::Trilu")
def _trilu(lw: Lowerer, node: onnx.NodeProto) -> None:
    lw.emit("Trilu", list(node.input), node.output[0], upper=node_attrs(node).get("upper", 1))
