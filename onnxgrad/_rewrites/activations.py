"""Activations the builder has no gradient for, or a wrong one (opset-20 Gelu), as their formulas."""

from __future__ import annotations

import math

import onnx
from onnx import helper

from onnxgrad._graph import GraphWriter, TypeTable
from onnxgrad._rewrites._common import attr, const_like, is_float
from onnxgrad._rewrites._registry import NO_GRADIENT, WRONG_GRADIENT, register


@register("Gelu", why=WRONG_GRADIENT, note="opset 20 with approximate='tanh' gets the erf gradient")
def _gelu(node, w, types) -> bool:
    x = node.input[0]
    half = const_like(w, 0.5, x, types)
    one = const_like(w, 1.0, x, types)
    if attr(node, "approximate", "none") == "tanh":
        cube = w.op("Mul", w.op("Mul", x, w.op("Identity", x)), w.op("Identity", x))
        inner = w.op("Add", x, w.op("Mul", cube, const_like(w, 0.044715, x, types)))
        core = w.op("Tanh", w.op("Mul", inner, const_like(w, math.sqrt(2.0 / math.pi), x, types)))
    else:
        core = w.op("Erf", w.op("Mul", x, const_like(w, 1.0 / math.sqrt(2.0), x, types)))
    w.node("Mul", [w.op("Mul", x, half), w.op("Add", core, one)], node.output)
    return True


def _elu_of(w: GraphWriter, x: str, alpha: float, types: TypeTable) -> str:
    # Elu(x) = Relu(x) + alpha * (exp(-Relu(-x)) - 1)
    negative_part = w.op("Neg", w.op("Relu", w.op("Neg", x)))
    expm1 = w.op("Sub", w.op("Exp", negative_part), const_like(w, 1.0, x, types))
    scaled = w.op("Mul", expm1, const_like(w, alpha, x, types))
    return w.op("Add", w.op("Relu", x), scaled)


def _softplus_of(w: GraphWriter, x: str, types: TypeTable) -> str:
    elem = types.elem(x) or onnx.TensorProto.FLOAT
    return w.softplus(x, helper.tensor_dtype_to_np_dtype(elem))


def _hard_sigmoid_of(w: GraphWriter, x: str, alpha: float, beta: float, types: TypeTable) -> str:
    # HardSigmoid(x) = min(max(alpha * x + beta, 0), 1)
    linear = w.op("Add", w.op("Mul", x, const_like(w, alpha, x, types)), const_like(w, beta, x, types))
    return w.op("Min", w.op("Max", linear, const_like(w, 0.0, x, types)), const_like(w, 1.0, x, types))


@register("Elu", why=NO_GRADIENT)
def _elu(node, w, types) -> bool:
    w.node("Identity", [_elu_of(w, node.input[0], attr(node, "alpha", 1.0), types)], node.output)
    return True


@register("Selu", why=NO_GRADIENT)
def _selu(node, w, types) -> bool:
    # Selu(x) = gamma * Elu(x, alpha)
    x = node.input[0]
    elu = _elu_of(w, x, attr(node, "alpha", 1.67326319217681884765625), types)
    w.node("Mul", [elu, const_like(w, attr(node, "gamma", 1.05070102214813232421875), x, types)], node.output)
    return True


@register("Celu", why=NO_GRADIENT)
def _celu(node, w, types) -> bool:
    # Celu(x) = Relu(x) + alpha * (exp(-Relu(-x) / alpha) - 1)
    x = node.input[0]
    alpha = const_like(w, attr(node, "alpha", 1.0), x, types)
    negative_part = w.op("Div", w.op("Neg", w.op("Relu", w.op("Neg", x))), alpha)
    expm1 = w.op("Sub", w.op("Exp", negative_part), const_like(w, 1.0, x, types))
    w.node("Add", [w.op("Relu", x), w.op("Mul", expm1, alpha)], node.output)
    return True


@register("Softplus", why=NO_GRADIENT)
def _softplus(node, w, types) -> bool:
    w.node("Identity", [_softplus_of(w, node.input[0], types)], node.output)
    return True


@register("Softsign", why=NO_GRADIENT)
def _softsign(node, w, types) -> bool:
    # Softsign(x) = x / (1 + |x|)
    x = node.input[0]
    w.node("Div", [x, w.op("Add", w.op("Abs", x), const_like(w, 1.0, x, types))], node.output)
    return True


@register("Mish", why=NO_GRADIENT)
def _mish(node, w, types) -> bool:
    # Mish(x) = x * tanh(softplus(x))
    x = node.input[0]
    w.node("Mul", [x, w.op("Tanh", _softplus_of(w, x, types))], node.output)
    return True


@register("HardSigmoid", why=NO_GRADIENT)
def _hard_sigmoid(node, w, types) -> bool:
    x = node.input[0]
    out = _hard_sigmoid_of(w, x, attr(node, "alpha", 0.2), attr(node, "beta", 0.5), types)
    w.node("Identity", [out], node.output)
    return True


@register("HardSwish", why=NO_GRADIENT)
def _hard_swish(node, w, types) -> bool:
    # HardSwish(x) = x * HardSigmoid(x, alpha=1/6, beta=0.5)
    x = node.input[0]
    w.node("Mul", [x, _hard_sigmoid_of(w, x, 1.0 / 6.0, 0.5, types)], node.output)
    return True


@register("ThresholdedRelu", why=NO_GRADIENT)
def _thresholded_relu(node, w, types) -> bool:
    # ThresholdedRelu(x) = x where x > alpha, else 0
    x = node.input[0]
    above = w.op("Greater", x, const_like(w, attr(node, "alpha", 1.0), x, types))
    w.node("Where", [above, x, const_like(w, 0.0, x, types)], node.output)
    return True


@register("Shrink", why=NO_GRADIENT)
def _shrink(node, w, types) -> bool:
    # Shrink(x) = x + bias where x < -lambd, x - bias where x > lambd, else 0
    x = node.input[0]
    if not is_float(types, x):
        return False
    lambd, bias = attr(node, "lambd", 0.5), attr(node, "bias", 0.0)
    below = w.op("Less", x, const_like(w, -lambd, x, types))
    above = w.op("Greater", x, const_like(w, lambd, x, types))
    upper = w.op("Where", above, w.op("Sub", x, const_like(w, bias, x, types)), const_like(w, 0.0, x, types))
    w.node("Where", [below, w.op("Add", x, const_like(w, bias, x, types)), upper], node.output)
    return True


@register("PRelu", why=NO_GRADIENT)
def _prelu(node, w, types) -> bool:
    # PRelu(x, slope) = Relu(x) - slope * Relu(-x)
    x, slope = node.input[:2]
    w.node("Sub", [w.op("Relu", x), w.op("Mul", slope, w.op("Relu", w.op("Neg", x)))], node.output)
    return True
