"""Activations: ReluGrad and its kin, Gelu and FastGelu (forward and gradient), the Softmax
gradients, DropoutGrad.

``ReluGrad(dY, T)`` becomes ``dY * Cast(T > 0)``: vectorized on every provider
and faster than ORT's CPU kernel (the README's Speed section). The builder hands
ReluGrad the Relu's input or output; ``T > 0`` is the same mask for both. Where
dY is inf or NaN and ``T <= 0`` the product is NaN where ReluGrad gives 0.
"""

from __future__ import annotations

import math

import onnx

from onnxgrad._graph import attrs as node_attrs
from onnxgrad._lower._lowerer import Lowerer
from onnxgrad._lower._registry import lowers


@lowers("com.microsoft::ReluGrad")
def _relu_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, t = node.input[0], node.input[1]
    positive = lw.w.op("Greater", t, lw.scalar(0.0, t))
    elem = lw.elem(dy) or lw.elem(t)
    mask = lw.w.op("Cast", positive, to=elem) if elem else lw.w.op("CastLike", positive, dy)
    lw.emit("Mul", [dy, mask], node.output[0])


@lowers("com.microsoft::LeakyReluGrad")
def _leaky_relu_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, y = node.input[0], node.input[1]
    alpha = node_attrs(node).get("alpha", 0.01)
    scaled = lw.w.op("Mul", dy, lw.scalar(alpha, dy))
    lw.emit("Where", [lw.w.op("Greater", y, lw.scalar(0.0, y)), dy, scaled], node.output[0])


@lowers("com.microsoft::SigmoidGrad")
def _sigmoid_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, y = node.input[0], node.input[1]
    slope = lw.w.op("Mul", y, lw.w.op("Sub", lw.scalar(1.0, y), y))
    lw.emit("Mul", [dy, slope], node.output[0])


@lowers("com.microsoft::TanhGrad")
def _tanh_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, y = node.input[0], node.input[1]
    lw.emit("Mul", [dy, lw.w.op("Sub", lw.scalar(1.0, y), lw.w.op("Mul", y, y))], node.output[0])


def _gelu_input(lw: Lowerer, node: onnx.NodeProto) -> str:
    x = node.input[1]
    if len(node.input) > 2 and node.input[2]:  # the Bias* variants add a bias first
        x = lw.w.op("Add", x, node.input[2])
    return x


@lowers("com.microsoft::GeluGrad", "com.microsoft::BiasGeluGrad_dX")
def _gelu_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, x = node.input[0], _gelu_input(lw, node)
    cdf = lw.w.op(
        "Mul", lw.scalar(0.5, node.input[1]),
        lw.w.op("Add", lw.scalar(1.0, node.input[1]), lw.w.op("Erf", lw.w.op("Mul", x, lw.scalar(1 / math.sqrt(2), node.input[1])))),
    )
    pdf = lw.w.op(
        "Mul", lw.w.op("Exp", lw.w.op("Mul", lw.w.op("Mul", x, x), lw.scalar(-0.5, node.input[1]))),
        lw.scalar(1 / math.sqrt(2 * math.pi), node.input[1]),
    )
    lw.emit("Mul", [dy, lw.w.op("Add", cdf, lw.w.op("Mul", x, pdf))], node.output[0])


@lowers("com.microsoft::FastGeluGrad", "com.microsoft::BiasFastGeluGrad_dX")
def _fast_gelu_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    # d/dx of 0.5 x (1 + tanh(k (x + c x^3))).
    dy, x = node.input[0], _gelu_input(lw, node)
    k, c = math.sqrt(2 / math.pi), 0.044715
    x2 = lw.w.op("Mul", x, x)
    inner = lw.w.op("Mul", lw.w.op("Mul", x, lw.w.op("Add", lw.scalar(1.0, node.input[1]), lw.w.op("Mul", x2, lw.scalar(c, node.input[1])))),
                    lw.scalar(k, node.input[1]))
    t = lw.w.op("Tanh", inner)
    half = lw.scalar(0.5, node.input[1])
    left = lw.w.op("Mul", half, lw.w.op("Add", lw.scalar(1.0, node.input[1]), t))
    dinner = lw.w.op("Mul", lw.scalar(k, node.input[1]), lw.w.op("Add", lw.scalar(1.0, node.input[1]), lw.w.op("Mul", x2, lw.scalar(3 * c, node.input[1]))))
    right = lw.w.op("Mul", lw.w.op("Mul", lw.w.op("Mul", half, x), lw.w.op("Sub", lw.scalar(1.0, node.input[1]), lw.w.op("Mul", t, t))),
                    dinner)
    lw.emit("Mul", [dy, lw.w.op("Add", left, right)], node.output[0])


@lowers("com.microsoft::Gelu", "com.microsoft::BiasGelu")
def _gelu(lw: Lowerer, node: onnx.NodeProto) -> None:
    # Contrib forward ops a model may hold (BiasGelu adds its bias first).
    x = node.input[0] if len(node.input) < 2 else lw.w.op("Add", node.input[0], node.input[1])
    erf = lw.w.op("Erf", lw.w.op("Mul", x, lw.scalar(1 / math.sqrt(2), node.input[0])))
    half_x = lw.w.op("Mul", x, lw.scalar(0.5, node.input[0]))
    lw.emit("Mul", [half_x, lw.w.op("Add", lw.scalar(1.0, node.input[0]), erf)], node.output[0])


@lowers("com.microsoft::FastGelu")
def _fast_gelu(lw: Lowerer, node: onnx.NodeProto) -> None:
    x = node.input[0]
    if len(node.input) > 1 and node.input[1]:
        x = lw.w.op("Add", x, node.input[1])
    k, c = math.sqrt(2 / math.pi), 0.044715
    cubic = lw.w.op("Add", x, lw.w.op("Mul", lw.w.op("Mul", lw.w.op("Mul", x, x), x), lw.scalar(c, node.input[0])))
    t = lw.w.op("Tanh", lw.w.op("Mul", cubic, lw.scalar(k, node.input[0])))
    half_x = lw.w.op("Mul", x, lw.scalar(0.5, node.input[0]))
    lw.emit("Mul", [half_x, lw.w.op("Add", lw.scalar(1.0, node.input[0]), t)], node.output[0])


def _softmax_axes(lw: Lowerer, node: onnx.NodeProto, opset13: bool) -> list[int]:
    y = node.input[1]
    rank = lw.rank(y, node)
    axis = node_attrs(node).get("axis", -1 if opset13 else 1)
    axis = axis + rank if axis < 0 else axis
    # Before opset 13 Softmax flattened the input at axis: it normalised over all trailing axes.
    return [axis] if opset13 else list(range(axis, rank))


@lowers("com.microsoft::SoftmaxGrad_13", "com.microsoft::SoftmaxGrad")
def _softmax_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, y = node.input[0], node.input[1]
    axes = _softmax_axes(lw, node, node.op_type.endswith("_13"))
    dot = lw.w.reduce("ReduceSum", lw.w.op("Mul", dy, y), axes, keepdims=True)
    lw.emit("Mul", [y, lw.w.op("Sub", dy, dot)], node.output[0])


@lowers("com.microsoft::LogSoftmaxGrad_13", "com.microsoft::LogSoftmaxGrad")
def _log_softmax_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, y = node.input[0], node.input[1]
    axes = _softmax_axes(lw, node, node.op_type.endswith("_13"))
    total = lw.w.reduce("ReduceSum", dy, axes, keepdims=True)
    lw.emit("Sub", [dy, lw.w.op("Mul", lw.w.op("Exp", y), total)], node.output[0])


@lowers("com.microsoft::DropoutGrad")
def _dropout_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, mask = node.input[0], node.input[1]
    ratio = node.input[2] if len(node.input) > 2 and node.input[2] else lw.scalar(0.5, dy)
    ratio = lw.w.op("CastLike", ratio, dy)
    scale = lw.w.op("Div", lw.scalar(1.0, dy), lw.w.op("Sub", lw.scalar(1.0, dy), ratio))
    kept = lw.w.op("Mul", dy, lw.w.op("CastLike", mask, dy))
    lw.emit("Mul", [kept, scale], node.output[0])
