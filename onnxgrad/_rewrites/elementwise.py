"""Elementwise and selection ops: n-ary sums, casts, onnxgrad functions (fmod Mod, Pow, CumSum),
and the builder gradients of Where, Clip, OneHot and inference Dropout that are wrong."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxgrad._rewrites._common import (
    attr,
    broadcast_operands,
    call_function,
    const_like,
    constant,
    is_float,
    static_shape,
)
from onnxgrad._rewrites._registry import NO_GRADIENT, WRONG_GRADIENT, register


@register("Sum", why=NO_GRADIENT)
def _sum(node, gw, types) -> bool:
    inputs = list(node.input)
    acc = inputs[0]
    for other in inputs[1:-1]:
        acc = gw.op("Add", acc, other)
    if len(inputs) == 1:
        gw.node("Identity", [acc], node.output)
    else:
        gw.node("Add", [acc, inputs[-1]], node.output)
    return True


@register("Mean", why=NO_GRADIENT)
def _mean(node, gw, types) -> bool:
    inputs = list(node.input)
    total = inputs[0]
    for other in inputs[1:]:
        total = gw.op("Add", total, other)
    gw.node("Div", [total, const_like(gw, float(len(inputs)), inputs[0], types)], node.output)
    return True


@register("CastLike", why=NO_GRADIENT)
def _cast_like(node, gw, types) -> bool:
    # No gradient in the builder; Cast to the (static) type of the second input has one.
    elem = types.elem(node.input[1])
    if not elem:
        return False
    saturate = {"saturate": attr(node, "saturate")} if attr(node, "saturate") is not None else {}
    gw.node("Cast", [node.input[0]], node.output, to=elem, **saturate)
    return True


@register("Mod", why=NO_GRADIENT, note="fmod, an onnxgrad function")
def _mod(node, gw, types) -> bool:
    """Float Mod (fmod) as an onnxgrad function: d/da = 1, d/db = -trunc(a / b). Operands are
    expanded to the output's shape first, so the function's gradients need no reduction."""
    if not attr(node, "fmod", 0) or not all(is_float(types, name) for name in node.input[:2]):
        return False
    operands = broadcast_operands(gw, types, *node.input[:2])
    if operands is None:
        return False
    call_function(gw, "FMod", "Mod", list(operands), node.output, fmod=1)
    return True


@register("Pow", why=WRONG_GRADIENT, note="a tensor or int exponent, an onnxgrad function")
def _pow(node, gw, types) -> bool:
    """Pow with a tensor or an int exponent as an onnxgrad function: the builder differentiates
    neither the exponent nor a base under an int exponent. Operands are expanded to the output's
    shape first, so the function's gradients need no reduction."""
    base, exponent = node.input[:2]
    if not is_float(types, base) or constant(gw, exponent) is not None:
        return False
    operands = broadcast_operands(gw, types, base, exponent)
    if operands is None:
        return False
    call_function(gw, "PowerT" if is_float(types, exponent) else "PowerI", "Pow", list(operands), node.output)
    return True


@register("CumSum", why=NO_GRADIENT, note="an onnxgrad function")
def _cum_sum(node, gw, types) -> bool:
    """CumSum as an onnxgrad function whose gradient is the opposite-direction CumSum."""
    exclusive, reverse = int(attr(node, "exclusive", 0)), int(attr(node, "reverse", 0))
    call_function(gw, f"CumSum_e{exclusive}_r{reverse}", "CumSum", list(node.input[:2]), node.output,
                   exclusive=exclusive, reverse=reverse)
    return True


@register("Where", why=WRONG_GRADIENT, note="a broadcast operand's gradient is not reduced")
def _where(node, gw, types) -> bool:
    # The builder's Where gradient keeps the output's shape: expand broadcast operands first.
    cond, a, b = node.input
    out_shape = static_shape(types, node.output[0])
    if out_shape is None or not is_float(types, node.output[0]):
        return False
    operands = []
    for operand in (a, b):
        if static_shape(types, operand) != out_shape:
            operand = gw.op("Expand", operand, gw.constant(list(out_shape), np.int64))
        operands.append(operand)
    if operands == [a, b]:
        return False
    gw.node("Where", [cond, *operands], node.output)
    return True


@register("Clip", why=WRONG_GRADIENT, note="non-constant bounds get zeros")
def _clip(node, gw, types) -> bool:
    # The builder gives non-constant bounds (trainable ones) no gradient: Max and Min do.
    inputs = list(node.input) + ["", ""]
    x, low, high = inputs[:3]
    bounds = [b for b in (low, high) if b]
    if all(constant(gw, b) is not None for b in bounds):
        return False
    out = x
    if low:
        out = gw.op("Max", out, low)
    if high:
        out = gw.op("Min", out, high)
    gw.node("Identity", [out], node.output)
    return True


@register("OneHot", why=WRONG_GRADIENT, note="non-constant values get zeros")
def _one_hot(node, gw, types) -> bool:
    # The builder gives non-constant off/on values no gradient: select them with Where.
    indices, depth, values = node.input
    out_shape = static_shape(types, node.output[0])
    if constant(gw, values) is not None or out_shape is None or not is_float(types, values):
        return False
    hot = gw.op("OneHot", gw.cast(indices, np.int64), gw.cast(depth, np.int64), gw.constant([0, 1], np.int64),
               axis=attr(node, "axis", -1))
    full = gw.constant(list(out_shape), np.int64)
    off = gw.op("Expand", gw.op("Gather", values, gw.constant(0, np.int64)), full)
    on = gw.op("Expand", gw.op("Gather", values, gw.constant(1, np.int64)), full)
    gw.node("Where", [gw.cast(hot, np.bool_), on, off], node.output)
    return True


@register("Dropout", why=WRONG_GRADIENT, note="inference mode back-propagates twice the gradient")
def _dropout(node, gw, types) -> bool:
    training = node.input[2] if len(node.input) > 2 else ""
    if training:
        value = constant(gw, training)
        if value is None or bool(value):
            return False
    x = node.input[0]
    gw.node("Identity", [x], node.output[:1])
    if len(node.output) > 1 and node.output[1]:  # the mask: all kept
        elem = types.elem(node.output[1]) or onnx.TensorProto.BOOL
        one = numpy_helper.from_array(np.ones([1], helper.tensor_dtype_to_np_dtype(elem)))
        gw.node("ConstantOfShape", [gw.op("Shape", x)], node.output[1:2], value=one)
    return True
