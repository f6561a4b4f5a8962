"""Lowering: the builder's gradient graph rewritten into standard ONNX ops.

ORT's gradient builder emits training kernels (``com.microsoft`` ReluGrad,
ConvGrad, GatherGrad, ...) and ORT-only default-domain ops (MaxPoolGrad,
AveragePoolGrad) that only onnxruntime-training implements. :func:`lower`
replaces each with standard ops that compute the same thing from the node's
inputs and attributes (and, where the gradient node lacks them, the forward
node's), so a gradient graph runs on any ONNX Runtime build or provider and on
``onnx.reference.ReferenceEvaluator``. A node with no lowering is refused with
an error naming it; nothing non-standard is passed through.

Preparation makes every input shape concrete, so lowerings read static shapes
of forward tensors where the math needs them (pool windows, broadcast axes);
a shape that is still unknown is an error, never a guess.

``ReluGrad(dY, T)`` becomes ``dY * Cast(T > 0)``: vectorized on every provider
and faster than ORT's CPU kernel (the README's Speed section). The builder hands
ReluGrad the Relu's input or output; ``T > 0`` is the same mask for both. Where
dY is inf or NaN and ``T <= 0`` the product is NaN where ReluGrad gives 0.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Collection, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxgrad._graph import GraphWriter, default_opset, infer_types, is_default_domain
from onnxgrad._graph import attrs as node_attrs
from onnxgrad.errors import GradientBuildError, UnsupportedGradientError

__all__ = ["lower", "nonstandard_nodes", "is_standard", "declare_output_shapes", "for_provider"]

_Lowering = Callable[["_Lowerer", onnx.NodeProto], None]
_LOWERINGS: dict[tuple[str, str], _Lowering] = {}
_MS = "com.microsoft"
_STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
# The builder names the gradient of tensor t "t_grad", with a counter when t has several consumers.
_GRAD_NAME = re.compile(r"^(.+?)_grad(?:_\d+)*$")


def _lowers(*keys: str) -> Callable[[_Lowering], _Lowering]:
    def register(fn: _Lowering) -> _Lowering:
        for key in keys:
            domain, _, op_type = key.rpartition("::")
            _LOWERINGS[(domain, op_type)] = fn
        return fn

    return register


def is_standard(node: onnx.NodeProto, functions: Collection[tuple[str, str]] = frozenset()) -> bool:
    """Whether ``node`` is a standard ONNX op or a call of one of ``functions`` (domain, name)."""
    if (node.domain, node.op_type) in functions:
        return True
    return node.domain in _STANDARD_DOMAINS and onnx.defs.has(node.op_type, node.domain)


def nonstandard_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Every node of ``model`` (graph, subgraphs and function bodies) that is not standard ONNX."""
    functions = {(f.domain, f.name) for f in model.functions}
    found = []

    def walk(nodes):
        for node in nodes:
            if not is_standard(node, functions):
                found.append(node)
            for attr in node.attribute:
                for graph in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    walk(graph.node)

    walk(model.graph.node)
    for function in model.functions:
        walk(function.node)
    return found


class _NotStatic(GradientBuildError):
    """A lowering needs a static shape or value that is not known (yet)."""


class _Lowerer:
    """Shared state of one lowering: the writer, static types and producers."""

    def __init__(self, model: onnx.ModelProto, types: dict) -> None:
        self.model = model
        self.graph = model.graph
        self.w = GraphWriter(self.graph, default_opset(model), prefix="onnxgrad/lower")
        self.types = types
        self.producer = {out: node for node in self.graph.node for out in node.output if out}
        self.initializers = {init.name: init for init in self.graph.initializer}

    # --- reading the graph -------------------------------------------------
    def fail(
        self, node: onnx.NodeProto, why: str, error: type[GradientBuildError] = GradientBuildError
    ) -> GradientBuildError:
        message = (
            f"Cannot express {node.domain + '::' if node.domain else ''}{node.op_type} (node {node.name!r}) in "
            f"standard ONNX ops: {why}. Please report this with the model."
        )
        if issubclass(error, UnsupportedGradientError):
            return error(message, op_type=node.op_type, node=node.name)
        return error(message)

    def type_of(self, name: str) -> tuple[int, tuple | None]:
        found = self.types.get(name)
        if found is None:
            match = _GRAD_NAME.match(name)  # a gradient is typed like its tensor
            if match:
                found = self.types.get(match.group(1))
        return found if found is not None else (0, None)

    def elem(self, name: str) -> int:
        return self.type_of(name)[0]

    def shape(self, name: str, node: onnx.NodeProto) -> tuple[int, ...]:
        shape = self.type_of(name)[1]
        if shape is None or any(d is None for d in shape):
            raise self.fail(node, f"the shape of {name!r} is not known statically", _NotStatic)
        return tuple(int(d) for d in shape)

    def rank(self, name: str, node: onnx.NodeProto) -> int:
        shape = self.type_of(name)[1]
        if shape is None:
            raise self.fail(node, f"the rank of {name!r} is not known statically", _NotStatic)
        return len(shape)

    def static_value(self, name: str, node: onnx.NodeProto) -> np.ndarray:
        """The value of an int tensor known before running: an initializer, a Constant or Shape(static)."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        source = self.producer.get(name)
        if source is not None and source.op_type == "Constant" and source.domain in _STANDARD_DOMAINS:
            return numpy_helper.to_array(helper.get_attribute_value(source.attribute[0]))
        if source is not None and source.op_type == "Shape":
            shape = self.shape(source.input[0], node)
            attrs = node_attrs(source)
            return np.array(shape[attrs.get("start", 0) : attrs.get("end", len(shape))], np.int64)
        raise self.fail(node, f"the value of {name!r} is not known statically", _NotStatic)

    def forward_producer(self, grad: str, op_types: Sequence[str], node: onnx.NodeProto) -> onnx.NodeProto:
        """The forward node whose output's gradient is ``grad``."""
        match = _GRAD_NAME.match(grad)
        source = self.producer.get(match.group(1)) if match else None
        if source is None or source.op_type not in op_types:
            raise self.fail(node, f"its forward {'/'.join(op_types)} node (from {grad!r}) was not found")
        return source

    # --- writing ------------------------------------------------------------
    def scalar(self, value: float, like: str) -> str:
        """A 0-d constant of ``like``'s dtype."""
        elem = self.elem(like)
        if elem:
            return self.w.constant(np.array(value, helper.tensor_dtype_to_np_dtype(elem)))
        return self.w.op("CastLike", self.w.constant(np.array(value, np.float32)), like)

    def ints(self, values: Sequence[int]) -> str:
        return self.w.constant(np.array(list(values), np.int64))

    def zeros(self, shape: str, like: str) -> str:
        """Zeros of shape tensor ``shape`` and ``like``'s dtype."""
        elem = self.elem(like)
        if elem:
            value = numpy_helper.from_array(np.zeros(1, helper.tensor_dtype_to_np_dtype(elem)))
            return self.w.op("ConstantOfShape", shape, value=value)
        return self.w.op("Expand", self.scalar(0.0, like), shape)

    def reduce_to(self, x: str, from_shape: Sequence[int], to_shape: Sequence[int], out: str | None = None) -> str:
        """Sums a broadcast result back to an operand's shape."""
        lead = len(from_shape) - len(to_shape)
        axes = list(range(lead)) + [
            lead + i for i, d in enumerate(to_shape) if d == 1 and from_shape[lead + i] != 1
        ]
        if axes:
            x = self.w.reduce("ReduceSum", x, axes, keepdims=True)
        if tuple(from_shape) != tuple(to_shape) or out is not None:
            if out is None:
                return self.w.op("Reshape", x, self.ints(to_shape))
            self.w.node("Reshape", [x, self.ints(to_shape)], [out])
            return out
        return x

    def emit(self, op_type: str, inputs: Sequence[str], out: str, **attrs) -> None:
        """A node writing the lowered node's output ``out``."""
        self.w.node(op_type, inputs, [out], **attrs)


# --- activations ---------------------------------------------------------------------------


@_lowers("com.microsoft::ReluGrad")
def _relu_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, t = node.input[0], node.input[1]
    positive = lw.w.op("Greater", t, lw.scalar(0.0, t))
    elem = lw.elem(dy) or lw.elem(t)
    mask = lw.w.op("Cast", positive, to=elem) if elem else lw.w.op("CastLike", positive, dy)
    lw.emit("Mul", [dy, mask], node.output[0])


@_lowers("com.microsoft::LeakyReluGrad")
def _leaky_relu_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, y = node.input[0], node.input[1]
    alpha = node_attrs(node).get("alpha", 0.01)
    scaled = lw.w.op("Mul", dy, lw.scalar(alpha, dy))
    lw.emit("Where", [lw.w.op("Greater", y, lw.scalar(0.0, y)), dy, scaled], node.output[0])


@_lowers("com.microsoft::SigmoidGrad")
def _sigmoid_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, y = node.input[0], node.input[1]
    slope = lw.w.op("Mul", y, lw.w.op("Sub", lw.scalar(1.0, y), y))
    lw.emit("Mul", [dy, slope], node.output[0])


@_lowers("com.microsoft::TanhGrad")
def _tanh_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, y = node.input[0], node.input[1]
    lw.emit("Mul", [dy, lw.w.op("Sub", lw.scalar(1.0, y), lw.w.op("Mul", y, y))], node.output[0])


def _gelu_input(lw: _Lowerer, node: onnx.NodeProto) -> str:
    x = node.input[1]
    if len(node.input) > 2 and node.input[2]:  # the Bias* variants add a bias first
        x = lw.w.op("Add", x, node.input[2])
    return x


@_lowers("com.microsoft::GeluGrad", "com.microsoft::BiasGeluGrad_dX")
def _gelu_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
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


@_lowers("com.microsoft::FastGeluGrad", "com.microsoft::BiasFastGeluGrad_dX")
def _fast_gelu_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
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


@_lowers("com.microsoft::Gelu", "com.microsoft::BiasGelu")
def _gelu(lw: _Lowerer, node: onnx.NodeProto) -> None:
    # Contrib forward ops a model may hold (BiasGelu adds its bias first).
    x = node.input[0] if len(node.input) < 2 else lw.w.op("Add", node.input[0], node.input[1])
    erf = lw.w.op("Erf", lw.w.op("Mul", x, lw.scalar(1 / math.sqrt(2), node.input[0])))
    half_x = lw.w.op("Mul", x, lw.scalar(0.5, node.input[0]))
    lw.emit("Mul", [half_x, lw.w.op("Add", lw.scalar(1.0, node.input[0]), erf)], node.output[0])


@_lowers("com.microsoft::FastGelu")
def _fast_gelu(lw: _Lowerer, node: onnx.NodeProto) -> None:
    x = node.input[0]
    if len(node.input) > 1 and node.input[1]:
        x = lw.w.op("Add", x, node.input[1])
    k, c = math.sqrt(2 / math.pi), 0.044715
    cubic = lw.w.op("Add", x, lw.w.op("Mul", lw.w.op("Mul", lw.w.op("Mul", x, x), x), lw.scalar(c, node.input[0])))
    t = lw.w.op("Tanh", lw.w.op("Mul", cubic, lw.scalar(k, node.input[0])))
    half_x = lw.w.op("Mul", x, lw.scalar(0.5, node.input[0]))
    lw.emit("Mul", [half_x, lw.w.op("Add", lw.scalar(1.0, node.input[0]), t)], node.output[0])


def _softmax_axes(lw: _Lowerer, node: onnx.NodeProto, opset13: bool) -> list[int]:
    y = node.input[1]
    rank = lw.rank(y, node)
    axis = node_attrs(node).get("axis", -1 if opset13 else 1)
    axis = axis + rank if axis < 0 else axis
    # Before opset 13 Softmax flattened the input at axis: it normalised over all trailing axes.
    return [axis] if opset13 else list(range(axis, rank))


@_lowers("com.microsoft::SoftmaxGrad_13", "com.microsoft::SoftmaxGrad")
def _softmax_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, y = node.input[0], node.input[1]
    axes = _softmax_axes(lw, node, node.op_type.endswith("_13"))
    dot = lw.w.reduce("ReduceSum", lw.w.op("Mul", dy, y), axes, keepdims=True)
    lw.emit("Mul", [y, lw.w.op("Sub", dy, dot)], node.output[0])


@_lowers("com.microsoft::LogSoftmaxGrad_13", "com.microsoft::LogSoftmaxGrad")
def _log_softmax_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, y = node.input[0], node.input[1]
    axes = _softmax_axes(lw, node, node.op_type.endswith("_13"))
    total = lw.w.reduce("ReduceSum", dy, axes, keepdims=True)
    lw.emit("Sub", [dy, lw.w.op("Mul", lw.w.op("Exp", y), total)], node.output[0])


@_lowers("com.microsoft::DropoutGrad")
def _dropout_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, mask = node.input[0], node.input[1]
    ratio = node.input[2] if len(node.input) > 2 and node.input[2] else lw.scalar(0.5, dy)
    ratio = lw.w.op("CastLike", ratio, dy)
    scale = lw.w.op("Div", lw.scalar(1.0, dy), lw.w.op("Sub", lw.scalar(1.0, dy), ratio))
    kept = lw.w.op("Mul", dy, lw.w.op("CastLike", mask, dy))
    lw.emit("Mul", [kept, scale], node.output[0])


# --- arithmetic --------------------------------------------------------------------------------


@_lowers("com.microsoft::Scale")
def _scale(lw: _Lowerer, node: onnx.NodeProto) -> None:
    x, scale = node.input[0], lw.w.op("CastLike", node.input[1], node.input[0])
    lw.emit("Div" if node_attrs(node).get("scale_down", 0) else "Mul", [x, scale], node.output[0])


@_lowers("com.microsoft::FusedMatMul")
def _fused_matmul(lw: _Lowerer, node: onnx.NodeProto) -> None:
    attrs = node_attrs(node)
    if attrs.get("transBatchA", 0) or attrs.get("transBatchB", 0):
        raise lw.fail(node, "transBatchA/transBatchB are not supported")
    alpha = float(attrs.get("alpha", 1.0))
    a, b = node.input[:2]
    shape_a, shape_b = lw.type_of(a)[1], lw.type_of(b)[1]
    if shape_a is not None and shape_b is not None and len(shape_a) == len(shape_b) == 2:
        # Gemm transposes inside its kernel: no transposed copy of an operand (weight gradients).
        lw.emit("Gemm", [a, b], node.output[0], alpha=alpha, transA=int(attrs.get("transA", 0)),
                transB=int(attrs.get("transB", 0)))
        return
    operands = []
    for name, flag in zip(node.input[:2], ("transA", "transB")):
        if attrs.get(flag, 0):
            rank = lw.rank(name, node)
            perm = list(range(rank - 2)) + [rank - 1, rank - 2]
            name = lw.w.op("Transpose", name, perm=perm)
        operands.append(name)
    if alpha == 1.0:
        lw.emit("MatMul", operands, node.output[0])
    else:
        lw.emit("Mul", [lw.w.op("MatMul", *operands), lw.scalar(alpha, node.input[0])], node.output[0])


@_lowers("com.microsoft::DivGrad")
def _div_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, a, b = node.input[:3]
    outputs = list(node.output) + [""] * (2 - len(node.output))
    grads = [lw.w.op("Div", dy, b) if outputs[0] else "",
             lw.w.op("Neg", lw.w.op("Div", lw.w.op("Mul", dy, a), lw.w.op("Mul", b, b))) if outputs[1] else ""]
    try:
        shapes = [lw.shape(a, node), lw.shape(b, node)]
    except _NotStatic:  # a data-dependent shape: reduce over axes found at run time
        axes = _broadcast_axes(lw, lw.w.op("Shape", a), lw.w.op("Shape", b))
        for out, grad, axis, like in zip(outputs, grads, axes, (a, b)):
            if out:
                _reduce_to_dynamic(lw, grad, axis, like, out)
        return
    out_shape = tuple(np.broadcast_shapes(*shapes))
    for out, grad, shape in zip(outputs, grads, shapes):
        if out:
            lw.reduce_to(grad, out_shape, shape, out=out)


@_lowers("com.microsoft::BroadcastGradientArgs")
def _broadcast_gradient_args(lw: _Lowerer, node: onnx.NodeProto) -> None:
    try:
        a = [int(d) for d in lw.static_value(node.input[0], node)]
        b = [int(d) for d in lw.static_value(node.input[1], node)]
    except _NotStatic:  # a data-dependent shape (Expand or Reshape to a computed shape): axes at run time
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


def _broadcast_axes(lw: _Lowerer, a: str, b: str) -> tuple[str, str]:
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


def _broadcast_gradient_args_dynamic(lw: _Lowerer, node: onnx.NodeProto) -> None:
    axes = _broadcast_axes(lw, *node.input[:2])
    for out, value in zip(node.output, axes):
        if out:
            lw.emit("Identity", [value], out)


def _reduce_to_dynamic(lw: _Lowerer, x: str, axes: str, like: str, out: str) -> None:
    """Sums a broadcast result over run-time ``axes`` back to the shape of tensor ``like``."""
    summed = lw.w.op("ReduceSum", x, axes, keepdims=1, noop_with_empty_axes=1)
    lw.emit("Reshape", [summed, lw.w.op("Shape", like)], out)


@_lowers("com.microsoft::Trilu")
def _trilu(lw: _Lowerer, node: onnx.NodeProto) -> None:
    lw.emit("Trilu", list(node.input), node.output[0], upper=node_attrs(node).get("upper", 1))


# --- normalisation and losses ---------------------------------------------------------------------


@_lowers("com.microsoft::LayerNormalizationGrad")
def _layer_norm_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, x, scale, mean, inv_std = node.input[:5]
    x_shape = lw.shape(x, node)
    rank = len(x_shape)
    axis = node_attrs(node).get("axis", -1)
    axis = axis + rank if axis < 0 else axis
    norm_axes = list(range(axis, rank))
    outputs = list(node.output) + [""] * (3 - len(node.output))
    # Mean and InvStdDev are stashed in stash_type (float32 by default), whatever X is.
    mean, inv_std = lw.w.op("CastLike", mean, x), lw.w.op("CastLike", inv_std, x)
    xhat = lw.w.op("Mul", lw.w.op("Sub", x, mean), inv_std)
    if outputs[2]:
        lw.reduce_to(dy, x_shape, lw.shape(scale, node), out=outputs[2])
    if outputs[1]:
        lw.reduce_to(lw.w.op("Mul", dy, xhat), x_shape, lw.shape(scale, node), out=outputs[1])
    if outputs[0]:
        g = lw.w.op("Mul", dy, scale)
        mean_g = lw.w.reduce("ReduceMean", g, norm_axes, keepdims=True)
        mean_gx = lw.w.reduce("ReduceMean", lw.w.op("Mul", g, xhat), norm_axes, keepdims=True)
        centered = lw.w.op("Sub", lw.w.op("Sub", g, mean_g), lw.w.op("Mul", xhat, mean_gx))
        lw.emit("Mul", [inv_std, centered], outputs[0])


@_lowers("com.microsoft::SoftmaxCrossEntropyLossGrad")
def _softmax_ce_loss_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, log_prob, label = node.input[:3]
    weight = node.input[3] if len(node.input) > 3 and node.input[3] else ""
    attrs = node_attrs(node)
    reduction = attrs.get("reduction", b"mean")
    reduction = reduction.decode() if isinstance(reduction, bytes) else reduction
    classes = lw.shape(log_prob, node)[1]
    label64 = lw.w.op("Cast", label, to=onnx.TensorProto.INT64)
    valid = None
    if "ignore_index" in attrs:
        valid = lw.w.op("Not", lw.w.op("Equal", label64, lw.ints([attrs["ignore_index"]])))
        label64 = lw.w.op("Where", valid, label64, lw.w.constant(np.array(0, np.int64)))
    on_off = lw.w.op("CastLike", lw.w.constant(np.array([0.0, 1.0], np.float32)), log_prob)
    one_hot = lw.w.op("OneHot", label64, lw.w.constant(np.array(classes, np.int64)), on_off, axis=1)
    per_label = None  # each label's class weight, 0 where ignored
    if weight:
        per_label = lw.w.op("Gather", weight, label64, axis=0)
    if valid is not None:
        mask = lw.w.op("CastLike", valid, log_prob)
        per_label = mask if per_label is None else lw.w.op("Mul", per_label, mask)
    diff = lw.w.op("Sub", lw.w.op("Exp", log_prob), one_hot)
    if per_label is None:  # dY is per label ("none") or a scalar
        coeff = dy
        if reduction == "mean":
            coeff = lw.w.op("Div", dy, lw.scalar(float(np.prod(lw.shape(label, node))), log_prob))
        if reduction == "none":
            coeff = lw.w.unsqueeze(coeff, [1])
        lw.emit("Mul", [diff, coeff], node.output[0])
        return
    coeff = lw.w.op("Mul", dy, per_label)
    if reduction == "mean":
        coeff = lw.w.op("Div", coeff, lw.w.reduce("ReduceSum", per_label, None, keepdims=False))
    lw.emit("Mul", [diff, lw.w.unsqueeze(coeff, [1])], node.output[0])


# --- indexing ------------------------------------------------------------------------------------


def _flat_scatter(lw: _Lowerer, flat_index: str, dy: str, shape: str, out: str, accumulate: bool) -> None:
    """``out`` of shape ``shape``: zeros with ``dy``'s values added at flat positions ``flat_index``."""
    numel = lw.w.reduce("ReduceProd", shape, None, keepdims=True)
    zeros = lw.zeros(numel, dy)
    flat_dy = lw.w.op("Reshape", dy, lw.ints([-1]))
    flat_ix = lw.w.op("Reshape", flat_index, lw.ints([-1]))
    attrs = {"reduction": "add"} if accumulate else {}
    scattered = lw.w.op("ScatterElements", zeros, flat_ix, flat_dy, axis=0, **attrs)
    lw.emit("Reshape", [scattered, shape], out)


def _iota(lw: _Lowerer, shape: str) -> str:
    """0, 1, 2, ... in ``shape``: each element's flat position."""
    numel = lw.w.reduce("ReduceProd", shape, None, keepdims=False)
    count = lw.w.op("Range", lw.w.constant(np.array(0, np.int64)), numel, lw.w.constant(np.array(1, np.int64)))
    return lw.w.op("Reshape", count, shape)


@_lowers("com.microsoft::GatherGrad")
def _gather_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    shape, indices, dy = node.input[:3]
    axis = node_attrs(node).get("axis", 0)
    rank = len(lw.static_value(shape, node)) if axis < 0 else 0
    axis = axis + rank if axis < 0 else axis
    if axis == 0:  # embeddings: rows scattered by ScatterND, no per-element index tensor
        ix = lw.w.op("Cast", indices, to=onnx.TensorProto.INT64)
        rows = lw.w.op("Gather", shape, lw.w.constant(np.array(0, np.int64)), axis=0)
        negative = lw.w.op("Cast", lw.w.op("Less", ix, lw.w.constant(np.array(0, np.int64))), to=onnx.TensorProto.INT64)
        ix = lw.w.op("Add", ix, lw.w.op("Mul", negative, rows))
        lw.emit("ScatterND", [lw.zeros(shape, dy), lw.w.unsqueeze(ix, [-1]), dy], node.output[0], reduction="add")
        return
    flat = lw.w.op("Gather", _iota(lw, shape), indices, axis=axis)
    _flat_scatter(lw, flat, dy, shape, node.output[0], accumulate=True)


@_lowers("com.microsoft::GatherElementsGrad")
def _gather_elements_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, shape, indices = node.input[:3]
    axis = node_attrs(node).get("axis", 0)
    lw.emit("ScatterElements", [lw.zeros(shape, dy), indices, dy], node.output[0], axis=axis, reduction="add")


@_lowers("com.microsoft::GatherNDGrad")
def _gather_nd_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    shape, indices, dy = node.input[:3]
    if node_attrs(node).get("batch_dims", 0):
        raise UnsupportedGradientError(
            f"The gradient of GatherND with batch_dims > 0 (node {node.name!r}) has no standard-op form yet: "
            "reshape the batch dimensions into the indices instead.",
            op_type="GatherND", node=node.name,
        )
    ix = lw.w.op("Cast", indices, to=onnx.TensorProto.INT64)
    lw.emit("ScatterND", [lw.zeros(shape, dy), ix, dy], node.output[0], reduction="add")


@_lowers("com.microsoft::SliceGrad")
def _slice_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, shape = node.input[:2]
    selected = lw.w.op("Slice", _iota(lw, shape), *node.input[2:])
    _flat_scatter(lw, selected, dy, shape, node.output[0], accumulate=False)


# --- convolution and pooling ----------------------------------------------------------------------


def _explicit_pads(attrs: dict, spatial: Sequence[int], kernel: Sequence[int], strides, dilations) -> list[int]:
    mode = attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    n = len(spatial)
    if mode in ("NOTSET", ""):
        return list(attrs.get("pads", [0] * 2 * n))
    if mode == "VALID":
        return [0] * 2 * n
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else large)
        end.append(large if mode == "SAME_UPPER" else small)
    return begin + end


#: The weight gradient unfolds the input (batch x input channels x kernel taps x output positions
#: elements) for one Gemm when that is at most this many elements, and at most _UNFOLDED_PER_WEIGHT
#: times the weight's size: it wins where weights are large next to activations (small batches, deep
#: layers); elsewhere a Conv correlating input and output gradient (which unfolds per channel) does.
_MAX_UNFOLDED_ELEMENTS = 1 << 23
_UNFOLDED_PER_WEIGHT = 64


@dataclasses.dataclass(frozen=True)
class _ConvGeometry:
    """A forward Conv's static shapes and explicit attributes."""

    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    kernel: list[int]
    strides: list[int]
    dilations: list[int]
    pads: list[int]
    group: int
    out_spatial: list[int]


def _pointwise(g: _ConvGeometry) -> bool:
    """A 1x1 Conv with unit strides and no padding: the input is its own unfolding."""
    return all(k == 1 for k in g.kernel) and all(s == 1 for s in g.strides) and not any(g.pads)


def _batch_inner(lw: _Lowerer, x: str, batch: int, rows: int, positions: int) -> str:
    """[N, rows, positions] as [rows, N * positions]: the batch joins the positions as a Gemm's inner dimension."""
    x = lw.w.op("Reshape", x, lw.ints([batch, rows, positions]))
    if batch > 1:
        x = lw.w.op("Transpose", x, perm=[1, 0, 2])
    return lw.w.op("Reshape", x, lw.ints([rows, batch * positions]))


def _weight_grad_unfolded(lw: _Lowerer, x: str, dy: str, g: _ConvGeometry, out: str) -> None:
    """dW = dY . unfold(X)^T as one Gemm, already in W's layout [C_out, C_in * taps]. The unfolding is a
    Conv of one-hot kernels, one group per input channel, with the forward's strides, dilations and pads."""
    batch, c_in = g.x_shape[:2]
    c_out, taps, positions = g.w_shape[0], math.prod(g.kernel), math.prod(g.out_spatial)
    columns = x
    if not _pointwise(g):  # [N, C_in * taps, *out_spatial]
        dtype = helper.tensor_dtype_to_np_dtype(lw.elem(x) or onnx.TensorProto.FLOAT)
        one_hot = np.tile(np.eye(taps, dtype=dtype).reshape(taps, 1, *g.kernel), (c_in, 1, *[1] * len(g.kernel)))
        columns = lw.w.op("Conv", x, lw.w.constant(one_hot), kernel_shape=g.kernel, strides=g.strides,
                          dilations=g.dilations, pads=g.pads, group=c_in)
    columns = _batch_inner(lw, columns, batch, c_in * taps, positions)
    grads = _batch_inner(lw, dy, batch, c_out, positions)
    lw.emit("Reshape", [lw.w.op("Gemm", grads, columns, transB=1), lw.ints(g.w_shape)], out)


def _weight_grad_correlated(lw: _Lowerer, x: str, dy: str, g: _ConvGeometry, out: str) -> None:
    """dW correlates X with dY: a Conv with batch and channels swapped, stride and dilation swapped."""
    n = len(g.kernel)
    batch, c_in = g.x_shape[:2]
    c_out, group = g.w_shape[0], g.group
    spatial = list(range(3, 3 + n))
    xs = lw.w.op("Reshape", x, lw.ints([batch, group, c_in // group, *g.x_shape[2:]]))
    xs = lw.w.op("Transpose", xs, perm=[2, 1, 0, *spatial])
    xs = lw.w.op("Reshape", xs, lw.ints([c_in // group, group * batch, *g.x_shape[2:]]))
    ds = lw.w.op("Reshape", dy, lw.ints([batch, group, c_out // group, *g.out_spatial]))
    ds = lw.w.op("Transpose", ds, perm=[1, 2, 0, *spatial])
    ds = lw.w.op("Reshape", ds, lw.ints([c_out, batch, *g.out_spatial]))
    # Offsets past the last kernel tap are wasted work and a cropping copy: pad the end only as far
    # as the last tap reaches (where the forward's stride dropped rows, crop what is left).
    reach = [(k - 1) * d + 1 + (o - 1) * s - size - g.pads[i]
             for i, (size, k, s, d, o) in enumerate(zip(g.x_shape[2:], g.kernel, g.strides, g.dilations, g.out_spatial))]
    end_pads = [max(0, r) for r in reach]
    full = lw.w.op("Conv", xs, ds, strides=g.dilations, dilations=g.strides, pads=g.pads[:n] + end_pads, group=group,
                   kernel_shape=g.out_spatial)
    if any(r < 0 for r in reach):
        full = lw.w.op("Slice", full, lw.ints([0] * n), lw.ints(g.kernel), lw.ints(list(range(2, 2 + n))))
    lw.emit("Transpose", [full], out, perm=[1, 0, *range(2, 2 + n)])


@_lowers("com.microsoft::ConvGrad")
def _conv_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, x, weight = node.input[:3]
    x_shape, w_shape = lw.shape(x, node), lw.shape(weight, node)
    attrs = node_attrs(node)
    n = len(x_shape) - 2
    kernel = list(attrs.get("kernel_shape", w_shape[2:]))
    strides = list(attrs.get("strides", [1] * n))
    dilations = list(attrs.get("dilations", [1] * n))
    group = int(attrs.get("group", 1))
    pads = _explicit_pads(attrs, x_shape[2:], kernel, strides, dilations)
    out_spatial = [
        (size + pads[i] + pads[i + n] - (k - 1) * d - 1) // s + 1
        for i, (size, k, s, d) in enumerate(zip(x_shape[2:], kernel, strides, dilations))
    ]
    outputs = list(node.output) + [""] * (3 - len(node.output))
    batch, c_in = x_shape[:2]
    if outputs[0]:  # ConvTranspose is Conv's adjoint; output_padding restores rows the stride dropped
        output_padding = [
            size - ((o - 1) * s + (k - 1) * d + 1 - pads[i] - pads[i + n])
            for i, (size, o, k, s, d) in enumerate(zip(x_shape[2:], out_spatial, kernel, strides, dilations))
        ]
        lw.emit(
            "ConvTranspose", [dy, weight], outputs[0], strides=strides, dilations=dilations, pads=pads,
            group=group, kernel_shape=kernel, output_padding=output_padding,
        )
    if outputs[1]:
        geometry = _ConvGeometry(x_shape, w_shape, kernel, strides, dilations, pads, group, out_spatial)
        unfolded = batch * c_in * math.prod(kernel) * math.prod(out_spatial)
        if group == 1 and unfolded <= min(_MAX_UNFOLDED_ELEMENTS, _UNFOLDED_PER_WEIGHT * math.prod(w_shape)):
            _weight_grad_unfolded(lw, x, dy, geometry, outputs[1])
        else:
            _weight_grad_correlated(lw, x, dy, geometry, outputs[1])
    if outputs[2]:
        lw.emit("Identity", [lw.w.reduce("ReduceSum", dy, [0, *range(2, 2 + n)], keepdims=False)], outputs[2])


def _resize_grad_refusal(lw: _Lowerer, node: onnx.NodeProto) -> UnsupportedGradientError:
    # Only Resize nodes onnxgrad could not rewrite (_rewrites._resize) get here: say what of the node.
    from onnxgrad._rewrites import RESIZE_COORDINATES, RESIZE_MODES, resize_refusal

    resize = lw.forward_producer(node.input[0], ["Resize"], node)
    reason = resize_refusal(resize) or "roi, scales or sizes that are not constants, or an input shape not static"
    return UnsupportedGradientError(
        f"The Resize node {resize.name or resize.output[0]!r} has {reason}, and onnxgrad differentiates Resize only "
        f"with mode in {list(RESIZE_MODES)} (antialias too), coordinate_transformation_mode in "
        f"{list(RESIZE_COORDINATES)}, constant roi, scales and sizes, and a static input shape "
        "(ONNX Runtime's ResizeGrad has no CPU kernel). Change the node to that, or ask for gradients that do not "
        "pass through it.",
        op_type="Resize", node=resize.name,
    )


#: Kernels with no lowering whose refusal can say more than their name: the error for a node.
_REFUSALS: dict[tuple[str, str], Callable[[_Lowerer, onnx.NodeProto], UnsupportedGradientError]] = {
    ("com.microsoft", "ResizeGrad"): _resize_grad_refusal,
}


@_lowers("::MaxPoolGrad")
def _max_pool_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy, indices = node.input[:2]
    pool = lw.producer.get(indices)
    if pool is None or pool.op_type != "MaxPool":
        raise lw.fail(node, f"its indices {indices!r} do not come from a MaxPool")
    if node_attrs(pool).get("storage_order", 0):
        raise lw.fail(node, "MaxPool with storage_order=1 is not supported", UnsupportedGradientError)
    _refuse_ceil_mode_overhang(lw, node, pool)
    # MaxPool's indices are flat positions in the whole input; overlapping windows share maxima.
    shape = lw.ints(lw.shape(pool.input[0], node))
    _flat_scatter(lw, indices, dy, shape, node.output[0], accumulate=True)


def _pool_geometry(attrs: dict, x_shape: Sequence[int]) -> tuple[int, list, list, list, list]:
    """A pool's spatial rank, kernel, strides, dilations and explicit pads (auto_pad resolved)."""
    n = len(x_shape) - 2
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides", [1] * n))
    dilations = list(attrs.get("dilations", [1] * n))
    return n, kernel, strides, dilations, _explicit_pads(attrs, x_shape[2:], kernel, strides, dilations)


def _refuse_ceil_mode_overhang(lw: _Lowerer, node: onnx.NodeProto, pool: onnx.NodeProto) -> None:
    """onnxruntime's MaxPool with an Indices output keeps a ceil_mode window that would start
    past the padded input, which the spec (and its MaxPool without Indices) drops: Y comes out
    larger than declared."""
    attrs = node_attrs(pool)
    if not attrs.get("ceil_mode", 0):
        return
    x_shape = lw.shape(pool.input[0], node)
    n, kernel, strides, dilations, pads = _pool_geometry(attrs, x_shape)
    for i in range(n):
        extent = (kernel[i] - 1) * dilations[i] + 1
        kept = math.ceil((x_shape[2 + i] + pads[i] + pads[i + n] - extent) / strides[i]) + 1
        if (kept - 1) * strides[i] >= x_shape[2 + i] + pads[i]:
            raise UnsupportedGradientError(
                f"The gradient of MaxPool node {pool.name or pool.output[0]!r} (ceil_mode, with a last window "
                "that would start past the input) needs MaxPool's Indices output, for which onnxruntime keeps "
                f"that window: {kept} outputs along spatial axis {i} instead of {kept - 1}. Pad the input or "
                "turn ceil_mode off.",
                op_type="MaxPool", node=pool.name,
            )


def _window_counts(size: int, out: int, k: int, s: int, d: int, begin: int) -> np.ndarray:
    """How many taps of each output position's window fall inside the input, along one axis."""
    counts = np.zeros(out)
    for o in range(out):
        positions = o * s - begin + d * np.arange(k)
        counts[o] = np.count_nonzero((positions >= 0) & (positions < size))
    return counts


@_lowers("::AveragePoolGrad")
def _average_pool_grad(lw: _Lowerer, node: onnx.NodeProto) -> None:
    dy = node.input[0]
    pool = lw.forward_producer(dy, ["AveragePool"], node)
    x = pool.input[0]
    x_shape, y_shape = lw.shape(x, node), lw.shape(pool.output[0], node)
    attrs = node_attrs(pool)  # the forward node's: the builder drops dilations from the gradient node
    n, kernel, strides, dilations, pads = _pool_geometry(attrs, x_shape)
    # Each output's divisor, as the runtime's own AveragePool computes it (count_include_pad with
    # ceil_mode differs between conventions): the pool of ones is (input taps) / divisor.
    taps = np.ones(())
    for i in range(n):
        axis = _window_counts(x_shape[2 + i], y_shape[2 + i], kernel[i], strides[i], dilations[i], pads[i])
        taps = np.multiply.outer(taps, axis)
    dtype = helper.tensor_dtype_to_np_dtype(lw.elem(x) or onnx.TensorProto.FLOAT)
    ones = lw.w.constant(np.ones([1, 1, *x_shape[2:]], dtype))
    pooled_ones = lw.w.op("AveragePool", ones, **{k: v for k, v in attrs.items()})
    inverse = lw.w.op("Div", pooled_ones, lw.w.constant(np.maximum(taps, 1).astype(dtype)[None, None]))
    # Taps past the input's end in every window only write what is cropped: a pool wider than its
    # input (nn.AvgPool2d(1280, ceil_mode=True) as a global pool) would otherwise spread a huge kernel.
    taps_kernel = [min(kernel[i], (x_shape[2 + i] - 1 + pads[i]) // dilations[i] + 1) for i in range(n)]
    end_pads, output_padding = [], []
    for i in range(n):  # crop the spread past the input's end, or pad rows no window reaches
        reach = (y_shape[2 + i] - 1) * strides[i] + (taps_kernel[i] - 1) * dilations[i] + 1 - pads[i]
        end_pads.append(max(0, reach - x_shape[2 + i]))
        output_padding.append(max(0, x_shape[2 + i] - reach))
    planes = x_shape[0] * x_shape[1]
    scaled = lw.w.op("Reshape", lw.w.op("Mul", dy, inverse), lw.ints([planes, 1, *y_shape[2:]]))
    ones = lw.w.constant(np.ones([1, 1, *taps_kernel], dtype))
    spread = lw.w.op(
        "ConvTranspose", scaled, ones, strides=strides, dilations=dilations, pads=pads[:n] + end_pads,
        kernel_shape=taps_kernel, output_padding=output_padding,
    )
    lw.emit("Reshape", [spread, lw.ints(x_shape)], node.output[0])


# --- the pass --------------------------------------------------------------------------------------


def _prune(graph: onnx.GraphProto) -> None:
    """Drops nodes whose outputs nothing reads (the builder's shape plumbing for lowered kernels)."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(out and out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
            for attr in node.attribute:  # outer-scope names a subgraph reads
                for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    needed.update(name for n in sub.node for name in n.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    used = needed | {i.name for i in graph.input}
    inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def declare_output_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Gives graph outputs declared without a shape their inferred one, in place.

    onnx's full check refuses an output whose declared type has no shape
    while inference finds one.
    """
    missing = [o for o in model.graph.output if not o.type.tensor_type.HasField("shape")]
    if missing:
        types = infer_types(model)
        for output in missing:
            shape = types.get(output.name, (0, None))[1]
            if shape is not None:
                dims = output.type.tensor_type.shape
                dims.SetInParent()
                for d in shape:
                    dim = dims.dim.add()
                    if d is not None:
                        dim.dim_value = d
    return model


def _merge_types(inferred: dict, forward: dict) -> dict:
    """Preparation's types, completed by inference on the built graph where they lack a shape."""
    merged = dict(inferred)
    for name, (elem, shape) in forward.items():
        known = merged.get(name)
        if known is None or shape is not None and None not in shape or known[1] is None:
            merged[name] = (elem or (known or (0,))[0], shape)
    return merged


def lower(model: onnx.ModelProto, types: dict) -> onnx.ModelProto:
    """Rewrites every non-standard node of a built gradient graph into standard ops, in place.

    Args:
        model: the builder's forward+backward graph.
        types: ``{tensor: (elem_type, shape)}`` of the prepared forward graph.

    Returns:
        ``model``, holding standard ONNX ops and model-local functions only.

    Raises:
        UnsupportedGradientError: a node has no standard-op lowering.
        GradientBuildError: a lowering lacks a static shape it needs.
    """
    functions = {(f.domain, f.name) for f in model.functions}
    # Shapes of the builder's own tensors become known as the kernels before them are lowered,
    # so lowering runs in passes, re-inferring types, until every node is standard.
    while any(not is_standard(node, functions) for node in model.graph.node):
        lw = _Lowerer(model, _merge_types(infer_types(model), types))
        lowered: list[onnx.NodeProto] = []
        waiting: _NotStatic | None = None
        progress = False
        for node in model.graph.node:
            if is_standard(node, functions):
                lowered.append(node)
                continue
            lowering = _LOWERINGS.get((node.domain, node.op_type))
            if lowering is None and (node.domain, node.op_type) in _REFUSALS:
                raise _REFUSALS[node.domain, node.op_type](lw, node)
            if lowering is None:
                raise UnsupportedGradientError(
                    f"The graph or its gradient uses {node.domain or 'ai.onnx'}::{node.op_type} (node {node.name!r}), "
                    "which only onnxruntime implements and onnxgrad cannot yet express in standard ONNX ops. "
                    "Replace that op (or the forward op it differentiates) in the model, or ask for gradients "
                    "that do not pass through it.",
                    op_type=node.op_type, node=node.name,
                )
            emitted: list[onnx.NodeProto] = []
            lw.w.nodes = emitted
            try:
                lowering(lw, node)
            except _NotStatic as err:
                waiting = err
                lowered.append(node)
                continue
            lowered.extend(emitted)
            progress = True
        del model.graph.node[:]
        model.graph.node.extend(lowered)
        if not progress and waiting is not None:
            raise waiting
    _reduce_sums_safe_when_empty(model)
    _prune(model.graph)
    left = {o.domain for o in model.opset_import} - {n.domain for n in model.graph.node} - {"", "ai.onnx"}
    left -= {f.domain for f in model.functions}
    kept = [o for o in model.opset_import if o.domain not in left]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    left_over = nonstandard_nodes(model)
    if left_over:
        raise lw.fail(left_over[0], "it is still there after lowering")
    return model


def _reduce_sums_safe_when_empty(model: onnx.ModelProto) -> None:
    """Rewrites each ReduceSum over axes known only at run time, with ``noop_with_empty_axes``, in place.

    The builder sums a broadcast gradient over axes it finds at run time. On a
    tensor with no elements ONNX Runtime's ReduceSum gets such a sum wrong: empty
    axes give a shape of ones instead of the input (a gradient of shape [1] for a
    slice that came out empty), and a negative axis is not reduced. Here X gets a
    leading axis of size 1 that is always reduced, so the axes are never empty,
    and negative axes are made positive first.
    """
    static = {init.name for init in model.graph.initializer}

    def affected(node: onnx.NodeProto) -> bool:
        return (
            node.op_type == "ReduceSum" and is_default_domain(node.domain) and len(node.input) > 1
            and node.input[1] not in ("", *static) and bool(node_attrs(node).get("noop_with_empty_axes", 0))
        )

    if not any(affected(node) for node in model.graph.node):
        return
    writer = GraphWriter(model.graph, default_opset(model), prefix="onnxgrad/lower")
    nodes: list[onnx.NodeProto] = []
    writer.nodes = nodes
    lead, zero, one = writer.constant([0], np.int64), writer.constant(0, np.int64), writer.constant(1, np.int64)
    for node in list(model.graph.node):
        if not affected(node):
            nodes.append(node)
            continue
        x, axes = node.input[:2]
        rank = writer.op("Size", writer.op("Shape", x))
        positive = writer.op("Where", writer.op("Less", axes, zero), writer.op("Add", axes, rank), axes)
        shifted = writer.op("Add", positive, one)
        all_axes = writer.op("Concat", lead, shifted, axis=0)
        keepdims = node_attrs(node).get("keepdims", 1)
        outputs = 1 if keepdims else list(node.output)  # without keepdims the leading axis goes with the sum
        summed = writer.node("ReduceSum", [writer.op("Unsqueeze", x, lead), all_axes], outputs, keepdims=keepdims)[0]
        if keepdims:
            writer.node("Squeeze", [summed, lead], list(node.output))
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def for_provider(model: onnx.ModelProto, device_kind: str) -> onnx.ModelProto:
    """A copy of a standard graph rewritten around one provider's kernel gaps (the model itself if none).

    ONNX Runtime's CANN provider registers Gemm for float16 only, and MatMul for
    float32 too, so on ``"cann"`` every Gemm becomes MatMul (+ Mul, + Add) and
    the matrix products stay on the NPU instead of falling back to the CPU
    (``scripts/provider_coverage.py``).
    """
    if device_kind != "cann" or not any(n.op_type == "Gemm" and is_default_domain(n.domain) for n in model.graph.node):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    types = infer_types(copy)
    writer = GraphWriter(graph, default_opset(copy), prefix="onnxgrad_cann")
    nodes: list[onnx.NodeProto] = []
    writer.nodes = nodes
    for node in list(graph.node):
        if node.op_type != "Gemm" or not is_default_domain(node.domain):
            nodes.append(node)
            continue
        attrs = node_attrs(node)
        a, b = node.input[0], node.input[1]
        if attrs.get("transA", 0):
            a = writer.op("Transpose", a, perm=[1, 0])
        if attrs.get("transB", 0):
            b = writer.op("Transpose", b, perm=[1, 0])
        product = writer.op("MatMul", a, b)
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        out = node.output[0]
        elem = types.get(node.input[0], (0, None))[0]
        dtype = helper.tensor_dtype_to_np_dtype(elem) if elem else np.float32
        steps = []
        if alpha != 1.0:
            steps.append(("Mul", lambda y, k=writer.constant(np.array(alpha, dtype)): [y, k]))
        if bias is not None and beta != 0.0:
            c = bias if beta == 1.0 else writer.op("Mul", bias, writer.constant(np.array(beta, dtype)))
            steps.append(("Add", lambda y, c=c: [y, c]))
        if not steps:
            writer.node("Identity", [product], [out])
        for k, (op, operands) in enumerate(steps):
            target = [out] if k == len(steps) - 1 else 1
            product = writer.node(op, operands(product), target)[0]
    del graph.node[:]
    graph.node.extend(nodes)
    return copy
