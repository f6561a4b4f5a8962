"""Activations the builder has no gradient for, or a wrong one (opset-20 Gelu), as their formulas."""

from __future__ import annotations

import math

import onnx
from onnx import helper

from onnxgrad._graph import GraphWriter, TypeTable
from onnxgrad._rewrites._common import attr, const_like, is_float
from onnxgrad._rewrites._registry import NO_GRADIENT, WRONG_GRADIENT, register


@register("Gelu", why=WRONG_GRADIENT, note="opset 20 with approximate='tanh' gets the erf gradient")
def _gelu(node, gw, types) -> bool:
    x = node.input[0]
    half = const_like(gw, 0.5, x, types)
    one = const_like(gw, 1.0, x, types)
    if attr(node, "approximate", "none") == "tanh":
        cube = gw.op("Mul", gw.op("Mul", x, gw.op("Identity", x)), gw.op("Identity", x))
        inner = gw.op("Add", x, gw.op("Mul", cube, const_like(gw, 0.044715, x, types)))
        core = gw.op("Tanh", gw.op("Mul", inner, const_like(gw, math.sqrt(2.0 / math.pi), x, types)))
    else:
        core = gw.op("Erf", gw.op("Mul", x, const_like(gw, 1.0 / math.sqrt(2.0), x, types)))
    gw.node("Mul", [gw.op("Mul", x, half), gw.op("Add", core, one)], node.output)
    return True


def _elu_of(gw: GraphWriter, x: str, alpha: float, types: TypeTable) -> str:
    # Elu(x) = Relu(x) + alpha * (exp(-Relu(-x)) - 1)
    negative_part = gw.op("Neg", gw.op("Relu", gw.op("Neg", x)))
    expm1 = gw.op("Sub", gw.op("Exp", negative_part), const_like(gw, 1.0, x, types))
    scaled = gw.op("Mul", expm1, const_like(gw, alpha, x, types))
    return gw.op("Add", gw.op("Relu", x), scaled)


def _softplus_of(gw: GraphWriter, x: str, types: TypeTable) -> str:
    elem = types.elem(x) or onnx.TensorProto.FLOAT
    return gw.softplus(x, helper.tensor_dtype_to_np_dtype(elem))


def _hard_sigmoid_of(gw: GraphWriter, x: str, alpha: float, beta: float, types: TypeTable) -> str:
    # HardSigmoid(x) = min(max(alpha * x + beta, 0), 1)
    linear = gw.op("Add", gw.op("Mul", x, const_like(gw, alpha, x, types)), const_like(gw, beta, x, types))
    return gw.op("Min", gw.op("Max", linear, const_like(gw, 0.0, x, types)), const_like(gw, 1.0, x, types))


@register("Elu", why=NO_GRADIENT)
def _elu(node, gw, types) -> bool:
    gw.node("Identity", [_elu_of(gw, node.input[0], attr(node, "alpha", 1.0), types)], node.output)
    return True


@register("Selu", why=NO_GRADIENT)
def _selu(node, gw, types) -> bool:
    # Selu(x) = gamma * Elu(x, alpha)
    x = node.input[0]
    elu = _elu_of(gw, x, attr(node, "alpha", 1.67326319217681884765625), types)
    gw.node("Mul", [elu, const_like(gw, attr(node, "gamma", 1.05070102214813232421875), x, types)], node.output)
    return True


@register("Celu", why=NO_GRADIENT)
def _celu(node, gw, types) -> bool:
    # Celu(x) = Relu(x) + alpha * (exp(-Relu(-x) / alpha) - 1)
    x = node.input[0]
    alpha = const_like(gw, attr(node, "alpha", 1.0), x, types)
    negative_part = gw.op("Div", gw.op("Neg", gw.op("Relu", gw.op("Neg", x))), alpha)
    expm1 = gw.op("Sub", gw.op("Exp", negative_part), const_like(gw, 1.0, x, types))
    gw.node("Add", [gw.op("Relu", x), gw.op("Mul", expm1, alpha)], node.output)
    return True


@register("Softplus", why=NO_GRADIENT)
def _softplus(node, gw, types) -> bool:
    gw.node("Identity", [_softplus_of(gw, node.input[0], types)], node.output)
    return True


@register("Softsign", why=NO_GRADIENT)
def _softsign(node, gw, types) -> bool:
    # Softsign(x) = x / (1 + |x|)
    x = node.input[0]
    gw.node("Div", [x, gw.op("Add", gw.op("Abs", x), const_like(gw, 1.0, x, types))], node.output)
    return True


@register("Mish", why=NO_GRADIENT)
def _mish(node, gw, types) -> bool:
    # Mish(x) = x * tanh(softplus(x))
    x = node.input[0]
    gw.node("Mul", [x, gw.op("Tanh", _softplus_of(gw, x, types))], node.output)
    return True


@register("HardSigmoid", why=NO_GRADIENT)
def _hard_sigmoid(node, gw, types) -> bool:
    x = node.input[0]
    out = _hard_sigmoid_of(gw, x, attr(node, "alpha", 0.2), attr(node, "beta", 0.5), types)
    gw.node("Identity", [out], node.output)
    return True


@register("HardSwish", why=NO_GRADIENT)
def _hard_swish(node, gw, types) -> bool:
    # HardSwish(x) = x * HardSigmoid(x, alpha=1/6, beta=0.5)
    x = node.input[0]
    gw.node("Mul", [x, _hard_sigmoid_of(gw, x, 1.0 / 6.0, 0.5, types)], node.output)
    return True


@register("ThresholdedRelu", why=NO_GRADIENT)
def _thresholded_relu(node, gw, types) -> bool:
    # ThresholdedRelu(x) = x where x > alpha, else 0
    x = node.input[0]
    above = gw.op("Greater", x, const_like(gw, attr(node, "alpha", 1.0), x, types))
    gw.node("Where", [above, x, const_like(gw, 0.0, x, types)], node.output)
    return True


@register("Shrink", why=NO_GRADIENT)
def _shrink(node, gw, types) -> bool:
    # Shrink(x) = x + bias where x < -lambd, x - bias where x > lambd, else 0
    x = node.input[0]
    if not is_float(types, x):
        return False
    lambd, bias = attr(node, "lambd", 0.5), attr(node, "bias", 0.0)
    below = gw.op("Less", x, const_like(gw, -lambd, x, types))
    above = gw.op("Greater", x, const_like(gw, lambd, x, types))
    upper = gw.op("Where", above, gw.op("Sub", x, const_like(gw, bias, x, types)), const_like(gw, 0.0, x, types))
    gw.node("Where", [below, gw.op("Add", x, const_like(gw, bias, x, types)), upper], node.output)
    return True


@register("PRelu", why=NO_GRADIENT)
def _prelu(node, gw, types) -> bool:
    # PRelu(x, slope) = Relu(x) - slope * Relu(-x)
    x, slope = node.input[:2]
    gw.node("Sub", [gw.op("Relu", x), gw.op("Mul", slope, gw.op("Relu", gw.op("Neg", x)))], node.output)
    return True
