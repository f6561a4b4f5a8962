"""Rewrites of ops whose gradient onnxruntime-training lacks or gets wrong.

Each rewrite replaces one node by standard ops with the same forward values
and correct built-in gradients:

- no gradient in the builder: CastLike, ReduceSumSquare, ReduceL1, ReduceLogSum,
  ReduceMax, ReduceMin, GlobalMaxPool, Sum, Mean, Elu, Selu, Celu, Softplus,
  Softsign, Mish, HardSigmoid, HardSwish, ThresholdedRelu, Shrink, PRelu,
  Hardmax, inference-mode BatchNormalization, InstanceNormalization,
  LpNormalization, DepthToSpace, SpaceToDepth, and LayerNormalization without
  a bias (the builder assumes three inputs) or with its Mean or InvStdDev
  read (the builder differentiates Y only), Pad other than constant mode,
  ReduceProd (a tree of Muls, exact at zeros), RNN/GRU/LSTM (unrolled),
  GridSample (every mode and padding, 1 to 3 spatial axes),
  NegativeLogLikelihoodLoss, AffineGrid, CenterCropPad, DFT, STFT, ReverseSequence,
  MaxUnpool and Col2Im (constant sizes), Det (up to 4 x 4);
  ConvTranspose and Resize have gradients but no ConvTransposeGrad/ResizeGrad
  kernel on CPU;
- wrong gradients: inference-mode Dropout back-propagates twice the gradient;
  ReduceL2 ignores axes given as an input; SoftmaxCrossEntropyLoss ignores
  the gradient of its log_prob output and gives tensor weights none;
  opset-20 Gelu uses the erf gradient even with ``approximate='tanh'``; Where
  does not reduce the gradient of a broadcast operand; Split gives a gradient
  of the wrong shape when an output gets no gradient; Clip and OneHot give
  zeros to non-constant bounds and values, and Pad to a non-constant pad value.

A rewrite returns False to keep the node unchanged; those that need static
shapes or constant axes and sizes give up without them.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxgrad import _custom_gradients as cg
from onnxgrad._custom_gradients import DOMAIN
from onnxgrad._graph import FLOAT_TYPES, GraphWriter
from onnxgrad._standard_gradients import ones_like

__all__ = ["apply_rewrites"]

Rewrite = Callable[[onnx.NodeProto, GraphWriter, dict], bool]


def _attr(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            value = helper.get_attribute_value(attribute)
            # String attributes come back as bytes.
            return value.decode() if isinstance(value, bytes) else value
    return default


def _constant(w: GraphWriter, name: str) -> np.ndarray | None:
    """The value of ``name`` if a (non-trainable) initializer or a Constant node holds it."""
    if not name:
        return None
    for init in w.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in w.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output[0] == name:
            attribute = node.attribute[0]
            value = helper.get_attribute_value(attribute)
            if attribute.name == "value":
                return numpy_helper.to_array(value)
            if attribute.name in ("value_float", "value_floats", "value_int", "value_ints"):
                return np.asarray(value)
            return None
    return None


def _read_names(w: GraphWriter) -> set[str]:
    """Every tensor some node or the graph's outputs read."""
    return {name for n in w.graph.node for name in n.input} | {o.name for o in w.graph.output}


def _moments(w: GraphWriter, x: str, axes: list[int]) -> tuple[str, str, str]:
    """``(mean, x - mean, mean of its square)`` over ``axes``, kept as size-1 axes."""
    mean = w.reduce("ReduceMean", x, axes, True)
    centered = w.op("Sub", x, mean)
    # Identity: the builder refuses a tensor feeding one node twice.
    variance = w.reduce("ReduceMean", w.op("Mul", centered, w.op("Identity", centered)), axes, True)
    return mean, centered, variance


def _call_function(w: GraphWriter, name: str, op: str, inputs: list[str], outputs, **attrs) -> None:
    """Emits a call of the onnxgrad function ``name`` whose body is one ``op`` node (added once)."""
    args = [f"x{k}" for k in range(len(inputs))]
    body = [helper.make_node(op, args, ["y"], **attrs)]
    w.add_function(helper.make_function(DOMAIN, name, args, ["y"], body, [helper.make_opsetid("", w.opset)]))
    w.node(name, inputs, outputs, domain=DOMAIN)


def _broadcast_operands(w: GraphWriter, types: dict, a: str, b: str) -> tuple[str, str] | None:
    """Both operands expanded to their broadcast (static) shape, so that a function's gradients
    need no reduction; None when a shape is unknown."""
    shape_a, shape_b = _shape(types, a), _shape(types, b)
    if shape_a is None or shape_b is None:
        return None
    if shape_a == shape_b:
        return a, b
    out = w.constant(np.array(np.broadcast_shapes(shape_a, shape_b), np.int64))
    return w.op("Expand", a, out), w.op("Expand", b, out)


def _is_float(types: dict, name: str) -> bool:
    return types.get(name, (0, None))[0] in FLOAT_TYPES


def _rank(types: dict, name: str) -> int | None:
    shape = types.get(name, (0, None))[1]
    return None if shape is None else len(shape)


def _shape(types: dict, name: str) -> tuple[int, ...] | None:
    """The static shape of ``name``, or None when any size is unknown."""
    shape = types.get(name, (0, None))[1]
    if shape is None or any(d is None for d in shape):
        return None
    return tuple(shape)


def _reduction(node: onnx.NodeProto, w: GraphWriter) -> tuple[list[int] | None, bool] | None:
    """``(axes, keepdims)`` of a Reduce* node (axes None: all); None if the axes are not constant."""
    if len(node.input) > 1 and node.input[1]:  # opset 18 (ReduceSum: 13): axes as an input
        value = _constant(w, node.input[1])
        if value is None:
            return None
        axes = [int(a) for a in value.reshape(-1)]
    else:
        axes = _attr(node, "axes")
    if not axes:
        if _attr(node, "noop_with_empty_axes", 0):
            return None  # an identity: rare, keep the node
        axes = None
    return axes, bool(_attr(node, "keepdims", 1))


def _const_like(w: GraphWriter, value: float, ref: str, types: dict) -> str:
    # A scalar constant in the dtype of tensor `ref` (float32 when unknown).
    elem = types.get(ref, (onnx.TensorProto.FLOAT, None))[0]
    return w.constant(value, helper.tensor_dtype_to_np_dtype(elem))


def _reduce_l2(node, w, types) -> bool:
    # ORT's ReduceL2 gradient ignores axes given as an input (opset 18).
    square_sum = onnx.NodeProto()
    square_sum.CopyFrom(node)
    square_sum.op_type = "ReduceSumSquare"
    del square_sum.output[:]
    square_sum.output.append(w.fresh("sum_square"))
    _reduce_sum_square(square_sum, w, types)
    w.node("Sqrt", [square_sum.output[0]], node.output)
    return True


def _reduce_sum_square(node, w, types) -> bool:
    x = node.input[0]
    square = w.op("Mul", x, w.op("Identity", x))
    keepdims = _attr(node, "keepdims", 1)
    axes = _attr(node, "axes")
    if len(node.input) > 1 and node.input[1]:  # opset 18: axes as an input
        w.node("ReduceSum", [square, node.input[1]], node.output, keepdims=keepdims,
               noop_with_empty_axes=_attr(node, "noop_with_empty_axes", 0))
    elif axes is not None:
        out = w.reduce("ReduceSum", square, axes, bool(keepdims))
        w.node("Identity", [out], node.output)
    else:
        w.node("ReduceSum", [square], node.output, keepdims=keepdims)
    return True


def _sum(node, w, types) -> bool:
    inputs = list(node.input)
    acc = inputs[0]
    for other in inputs[1:-1]:
        acc = w.op("Add", acc, other)
    if len(inputs) == 1:
        w.node("Identity", [acc], node.output)
    else:
        w.node("Add", [acc, inputs[-1]], node.output)
    return True


def _batch_norm(node, w, types) -> bool:
    training = _attr(node, "training_mode", 0)
    if training:
        return _batch_norm_training(node, w, types)
    if len([o for o in node.output if o]) > 1:
        return False
    x, scale, bias, mean, var = node.input[:5]
    rank = len(types.get(x, (None, None))[1] or ())
    if rank < 2:
        return False
    eps = w.constant(_attr(node, "epsilon", 1e-5), helper.tensor_dtype_to_np_dtype(types[x][0]))
    inv_std = w.op("Reciprocal", w.op("Sqrt", w.op("Add", var, eps)))
    factor = w.op("Mul", scale, inv_std)
    shift = w.op("Sub", bias, w.op("Mul", mean, factor))
    # Per-channel vectors [C] broadcast against [N, C, d1, ...] as [C, 1, ...].
    channel_shape = w.constant([-1] + [1] * (rank - 2), np.int64)
    factor = w.op("Reshape", factor, channel_shape)
    shift = w.op("Reshape", shift, channel_shape)
    w.node("Add", [w.op("Mul", x, factor), shift], node.output[:1])
    return True


def _dropout(node, w, types) -> bool:
    training = node.input[2] if len(node.input) > 2 else ""
    if training:
        value = _constant(w, training)
        if value is None or bool(value):
            return False
    x = node.input[0]
    w.node("Identity", [x], node.output[:1])
    if len(node.output) > 1 and node.output[1]:  # the mask: all kept
        elem = types.get(node.output[1], (onnx.TensorProto.BOOL, None))[0]
        one = numpy_helper.from_array(np.ones([1], helper.tensor_dtype_to_np_dtype(elem)))
        w.node("ConstantOfShape", [w.op("Shape", x)], node.output[1:2], value=one)
    return True


def _gelu(node, w, types) -> bool:
    x = node.input[0]
    half = _const_like(w, 0.5, x, types)
    one = _const_like(w, 1.0, x, types)
    if _attr(node, "approximate", "none") == "tanh":
        cube = w.op("Mul", w.op("Mul", x, w.op("Identity", x)), w.op("Identity", x))
        inner = w.op("Add", x, w.op("Mul", cube, _const_like(w, 0.044715, x, types)))
        core = w.op("Tanh", w.op("Mul", inner, _const_like(w, math.sqrt(2.0 / math.pi), x, types)))
    else:
        core = w.op("Erf", w.op("Mul", x, _const_like(w, 1.0 / math.sqrt(2.0), x, types)))
    w.node("Mul", [w.op("Mul", x, half), w.op("Add", core, one)], node.output)
    return True


def _elu_of(w: GraphWriter, x: str, alpha: float, types: dict) -> str:
    # Elu(x) = Relu(x) + alpha * (exp(-Relu(-x)) - 1)
    negative_part = w.op("Neg", w.op("Relu", w.op("Neg", x)))
    expm1 = w.op("Sub", w.op("Exp", negative_part), _const_like(w, 1.0, x, types))
    scaled = w.op("Mul", expm1, _const_like(w, alpha, x, types))
    return w.op("Add", w.op("Relu", x), scaled)


def _softplus_of(w: GraphWriter, x: str, types: dict) -> str:
    elem = types.get(x, (onnx.TensorProto.FLOAT, None))[0]
    return w.softplus(x, helper.tensor_dtype_to_np_dtype(elem))


def _hard_sigmoid_of(w: GraphWriter, x: str, alpha: float, beta: float, types: dict) -> str:
    # HardSigmoid(x) = min(max(alpha * x + beta, 0), 1)
    linear = w.op("Add", w.op("Mul", x, _const_like(w, alpha, x, types)), _const_like(w, beta, x, types))
    return w.op("Min", w.op("Max", linear, _const_like(w, 0.0, x, types)), _const_like(w, 1.0, x, types))


def _elu(node, w, types) -> bool:
    w.node("Identity", [_elu_of(w, node.input[0], _attr(node, "alpha", 1.0), types)], node.output)
    return True


def _selu(node, w, types) -> bool:
    # Selu(x) = gamma * Elu(x, alpha)
    x = node.input[0]
    elu = _elu_of(w, x, _attr(node, "alpha", 1.67326319217681884765625), types)
    w.node("Mul", [elu, _const_like(w, _attr(node, "gamma", 1.05070102214813232421875), x, types)], node.output)
    return True


def _celu(node, w, types) -> bool:
    # Celu(x) = Relu(x) + alpha * (exp(-Relu(-x) / alpha) - 1)
    x = node.input[0]
    alpha = _const_like(w, _attr(node, "alpha", 1.0), x, types)
    negative_part = w.op("Div", w.op("Neg", w.op("Relu", w.op("Neg", x))), alpha)
    expm1 = w.op("Sub", w.op("Exp", negative_part), _const_like(w, 1.0, x, types))
    w.node("Add", [w.op("Relu", x), w.op("Mul", expm1, alpha)], node.output)
    return True


def _softplus(node, w, types) -> bool:
    w.node("Identity", [_softplus_of(w, node.input[0], types)], node.output)
    return True


def _softsign(node, w, types) -> bool:
    # Softsign(x) = x / (1 + |x|)
    x = node.input[0]
    w.node("Div", [x, w.op("Add", w.op("Abs", x), _const_like(w, 1.0, x, types))], node.output)
    return True


def _mish(node, w, types) -> bool:
    # Mish(x) = x * tanh(softplus(x))
    x = node.input[0]
    w.node("Mul", [x, w.op("Tanh", _softplus_of(w, x, types))], node.output)
    return True


def _hard_sigmoid(node, w, types) -> bool:
    x = node.input[0]
    out = _hard_sigmoid_of(w, x, _attr(node, "alpha", 0.2), _attr(node, "beta", 0.5), types)
    w.node("Identity", [out], node.output)
    return True


def _hard_swish(node, w, types) -> bool:
    # HardSwish(x) = x * HardSigmoid(x, alpha=1/6, beta=0.5)
    x = node.input[0]
    w.node("Mul", [x, _hard_sigmoid_of(w, x, 1.0 / 6.0, 0.5, types)], node.output)
    return True


def _thresholded_relu(node, w, types) -> bool:
    # ThresholdedRelu(x) = x where x > alpha, else 0
    x = node.input[0]
    above = w.op("Greater", x, _const_like(w, _attr(node, "alpha", 1.0), x, types))
    w.node("Where", [above, x, _const_like(w, 0.0, x, types)], node.output)
    return True


def _shrink(node, w, types) -> bool:
    # Shrink(x) = x + bias where x < -lambd, x - bias where x > lambd, else 0
    x = node.input[0]
    if not _is_float(types, x):
        return False
    lambd, bias = _attr(node, "lambd", 0.5), _attr(node, "bias", 0.0)
    below = w.op("Less", x, _const_like(w, -lambd, x, types))
    above = w.op("Greater", x, _const_like(w, lambd, x, types))
    upper = w.op("Where", above, w.op("Sub", x, _const_like(w, bias, x, types)), _const_like(w, 0.0, x, types))
    w.node("Where", [below, w.op("Add", x, _const_like(w, bias, x, types)), upper], node.output)
    return True


def _prelu(node, w, types) -> bool:
    # PRelu(x, slope) = Relu(x) - slope * Relu(-x)
    x, slope = node.input[:2]
    w.node("Sub", [w.op("Relu", x), w.op("Mul", slope, w.op("Relu", w.op("Neg", x)))], node.output)
    return True


def _mean(node, w, types) -> bool:
    inputs = list(node.input)
    total = inputs[0]
    for other in inputs[1:]:
        total = w.op("Add", total, other)
    w.node("Div", [total, _const_like(w, float(len(inputs)), inputs[0], types)], node.output)
    return True


def _reduce_l1(node, w, types) -> bool:
    reduction = _reduction(node, w)
    if reduction is None:
        return False
    axes, keepdims = reduction
    w.node("Identity", [w.reduce("ReduceSum", w.op("Abs", node.input[0]), axes, keepdims)], node.output)
    return True


def _reduce_log_sum(node, w, types) -> bool:
    reduction = _reduction(node, w)
    if reduction is None:
        return False
    axes, keepdims = reduction
    w.node("Log", [w.reduce("ReduceSum", node.input[0], axes, keepdims)], node.output)
    return True


def _reduce_prod(node, w, types) -> bool:
    """ReduceProd as a tree of Muls over the reduced elements (a static count), exact where x
    holds zeros: each element's gradient is the product of the others, never prod / x."""
    x = node.input[0]
    rank = _rank(types, x)
    if not _is_float(types, x) or rank is None:
        return False
    has_axes = (len(node.input) > 1 and node.input[1]) or _attr(node, "axes")
    if not has_axes and _attr(node, "noop_with_empty_axes", 0):
        w.node("Identity", [x], node.output)
        return True
    reduction = _reduction(node, w)
    if reduction is None:
        return False
    axes, keepdims = reduction
    axes = sorted({a % rank for a in axes}) if axes is not None else list(range(rank))
    shape = types[x][1]
    if any(shape[a] is None for a in axes):
        return False
    count = int(np.prod([shape[a] for a in axes], dtype=np.int64))
    if count == 0:
        return False
    kept = [a for a in range(rank) if a not in axes]
    # The reduced axes last, flattened into one; 0 in Reshape keeps a (possibly symbolic) size.
    flat = w.op("Transpose", x, perm=kept + axes) if kept + axes != list(range(rank)) else x
    flat = w.op("Reshape", flat, w.constant([0] * len(kept) + [count], np.int64))
    last = w.constant([len(kept)], np.int64)

    def part(t: str, start: int, stop: int) -> str:
        return w.op("Slice", t, w.constant([start], np.int64), w.constant([stop], np.int64), last)

    while count > 1:  # halve: pairwise products, an odd element carried over
        half = count // 2
        product = w.op("Mul", part(flat, 0, half), part(flat, half, 2 * half))
        if count % 2:
            product = w.op("Concat", product, part(flat, count - 1, count), axis=len(kept))
        flat, count = product, half + count % 2
    out = w.squeeze(flat, [len(kept)])
    if keepdims:
        out = w.unsqueeze(out, axes)
    w.node("Identity", [out], node.output)
    return True


def _max_over(w: GraphWriter, x: str, axes: list[int], largest: bool) -> str:
    # The max (min) over each axis in turn, keeping the axes: TopK has a gradient, ReduceMax none.
    k = w.constant([1], np.int64)
    for axis in axes:
        x = w.node("TopK", [x, k], 2, axis=axis, largest=int(largest))[0]
    return x


def _reduce_extreme(node, w, types) -> bool:
    x = node.input[0]
    rank = _rank(types, x)
    reduction = _reduction(node, w)
    if not _is_float(types, x) or not rank or reduction is None:
        return False
    axes, keepdims = reduction
    axes = sorted({a % rank for a in axes}) if axes is not None else list(range(rank))
    out = _max_over(w, x, axes, node.op_type == "ReduceMax")
    if not keepdims:
        out = w.squeeze(out, axes)
    w.node("Identity", [out], node.output)
    return True


def _global_max_pool(node, w, types) -> bool:
    x = node.input[0]
    rank = _rank(types, x)
    if rank is None or rank < 3:
        return False
    w.node("Identity", [_max_over(w, x, list(range(2, rank)), True)], node.output)
    return True


def _hardmax(node, w, types) -> bool:
    # One at the first maximum along `axis`: a piecewise constant function, so zero gradients.
    x = node.input[0]
    shape = _shape(types, x)
    if shape is None or not shape or w.opset < 13:  # before 13, Hardmax flattens to 2-D
        return False
    axis = _attr(node, "axis", -1) % len(shape)
    index = w.op("ArgMax", x, axis=axis, keepdims=1)
    positions = np.arange(shape[axis], dtype=np.int64).reshape([shape[axis]] + [1] * (len(shape) - 1 - axis))
    w.node("Cast", [w.op("Equal", index, w.constant(positions))], node.output, to=types[x][0])
    return True


def _instance_norm(node, w, types) -> bool:
    x, scale, bias = node.input[:3]
    rank = _rank(types, x)
    if rank is None or rank < 3:
        return False
    axes = list(range(2, rank))
    centered = w.op("Sub", x, w.reduce("ReduceMean", x, axes, True))
    variance = w.reduce("ReduceMean", w.op("Mul", centered, w.op("Identity", centered)), axes, True)
    eps = _const_like(w, _attr(node, "epsilon", 1e-5), x, types)
    normalized = w.op("Div", centered, w.op("Sqrt", w.op("Add", variance, eps)))
    channel_shape = w.constant([-1] + [1] * (rank - 2), np.int64)
    scaled = w.op("Mul", normalized, w.op("Reshape", scale, channel_shape))
    w.node("Add", [scaled, w.op("Reshape", bias, channel_shape)], node.output)
    return True


def _lp_norm(node, w, types) -> bool:
    x = node.input[0]
    axis, p = _attr(node, "axis", -1), _attr(node, "p", 2)
    if p == 2:
        norm = w.reduce("ReduceL2", x, [axis], True)
    elif p == 1:
        norm = w.reduce("ReduceSum", w.op("Abs", x), [axis], True)
    else:
        return False
    w.node("Div", [x, norm], node.output)
    return True


def _layer_norm(node, w, types) -> bool:
    read = _read_names(w)
    if any(out and out in read for out in node.output[1:]):
        return _layer_norm_with_statistics(node, w, types)
    if len(node.input) > 2 and node.input[2]:
        return False
    x, scale = node.input[:2]
    # A zero bias shaped like the scale; Shape stops the gradient.
    zero = numpy_helper.from_array(np.zeros([1], helper.tensor_dtype_to_np_dtype(types.get(x, (1, None))[0])))
    bias = w.op("ConstantOfShape", w.op("Shape", scale), value=zero)
    rewritten = onnx.NodeProto()
    rewritten.CopyFrom(node)
    del rewritten.input[:]
    rewritten.input.extend([x, scale, bias])
    w.nodes.append(rewritten)
    return True


def _layer_norm_with_statistics(node, w, types) -> bool:
    """LayerNormalization as its formula, so that gradients flow through Mean and InvStdDev too
    (ORT's LayerNormalizationGrad takes the gradient of Y only)."""
    x, scale = node.input[:2]
    rank = _rank(types, x)
    if rank is None:
        from onnxgrad.errors import UnsupportedGradientError

        raise UnsupportedGradientError(
            f"LayerNormalization node {node.name!r} has its Mean or InvStdDev output read, whose gradient needs "
            f"the rank of {x!r}, which is not known: give the input a static shape.",
            op_type="LayerNormalization", node=node.name,
        )
    axis = _attr(node, "axis", -1) % rank
    axes = list(range(axis, rank))
    elem = types.get(x, (onnx.TensorProto.FLOAT, None))[0]
    stash = _attr(node, "stash_type", onnx.TensorProto.FLOAT)
    # The statistics are computed (and returned) in stash_type; Y comes back in x's type.
    compute = stash if elem in (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16) else elem
    xc = w.op("Cast", x, to=compute) if compute != elem else x
    epsilon = w.constant(_attr(node, "epsilon", 1e-5), helper.tensor_dtype_to_np_dtype(compute))
    mean, centered, variance = _moments(w, xc, axes)
    inv_std = w.op("Reciprocal", w.op("Sqrt", w.op("Add", variance, epsilon)))
    normalized = w.op("Mul", centered, inv_std)
    if compute != elem:
        normalized = w.op("Cast", normalized, to=elem)
    y = w.op("Mul", normalized, scale)
    if len(node.input) > 2 and node.input[2]:
        y = w.op("Add", y, node.input[2])
    outputs = list(node.output) + [""] * (3 - len(node.output))
    w.node("Identity", [y], [outputs[0]])
    for value, out in ((mean, outputs[1]), (inv_std, outputs[2])):
        if out:
            w.node("Identity", [value], [out])
    return True


def _negative_log_likelihood(node: onnx.NodeProto, w: GraphWriter, log_prob: str, elem: int) -> str:
    """The loss of a NegativeLogLikelihoodLoss or SoftmaxCrossEntropyLoss node (labels, optional
    class weights, ignore_index, reduction) on ``log_prob``, by its formula: the class weights get
    gradients too."""
    labels = w.op("Cast", node.input[1], to=onnx.TensorProto.INT64)
    weights = node.input[2] if len(node.input) > 2 and node.input[2] else None
    ignore = _attr(node, "ignore_index")
    mask = None
    if ignore is not None:
        mask = w.op("Not", w.op("Equal", labels, w.constant(np.array(ignore, np.int64))))
        labels = w.op("Where", mask, labels, w.constant(np.array(0, np.int64)))
    picked = w.squeeze(w.op("GatherElements", log_prob, w.unsqueeze(labels, [1]), axis=1), [1])
    loss = w.op("Neg", picked)
    scale = w.op("Gather", weights, labels) if weights is not None else None
    if mask is not None:
        as_float = w.op("Cast", mask, to=elem)
        scale = as_float if scale is None else w.op("Mul", scale, as_float)
    if scale is not None:
        loss = w.op("Mul", loss, scale)
    reduction = _attr(node, "reduction", "mean")
    if reduction == "sum":
        loss = w.reduce("ReduceSum", loss, None, False)
    elif reduction == "mean":
        total = w.reduce("ReduceSum", loss, None, False)
        count = w.reduce("ReduceSum", scale, None, False) if scale is not None else None
        loss = w.op("Div", total, count) if count is not None else w.reduce("ReduceMean", loss, None, False)
    return loss


def _softmax_cross_entropy(node, w, types) -> bool:
    """SoftmaxCrossEntropyLoss as its formula when its log_prob output is read or its class weights
    are a tensor: ORT's gradient ignores log_prob's incoming gradient and gives weights none."""
    read = _read_names(w)
    log_prob_read = len(node.output) > 1 and node.output[1] in read
    weights = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if not log_prob_read and (weights is None or _constant(w, weights) is not None):
        return False
    x = node.input[0]
    if not _is_float(types, x):
        return False
    log_prob = w.op("LogSoftmax", x, axis=1)
    w.node("Identity", [_negative_log_likelihood(node, w, log_prob, types[x][0])], [node.output[0]])
    if log_prob_read:
        w.node("Identity", [log_prob], [node.output[1]])
    return True


def _nll_loss(node, w, types) -> bool:
    """NegativeLogLikelihoodLoss by its formula: no gradient in the builder."""
    x = node.input[0]
    if not _is_float(types, x):
        return False
    w.node("Identity", [_negative_log_likelihood(node, w, x, types[x][0])], node.output[:1])
    return True


def _cast_like(node, w, types) -> bool:
    # No gradient in the builder; Cast to the (static) type of the second input has one.
    elem = types.get(node.input[1], (0, None))[0]
    if not elem:
        return False
    saturate = {"saturate": _attr(node, "saturate")} if _attr(node, "saturate") is not None else {}
    w.node("Cast", [node.input[0]], node.output, to=elem, **saturate)
    return True


def _batch_norm_training(node, w, types) -> bool:
    """Training-mode BatchNormalization as its formula (batch statistics; the running statistics
    outputs follow the spec): the builder has no gradient for it."""
    x, scale, bias, mean, var = node.input[:5]
    rank = _rank(types, x)
    if rank is None or rank < 2 or not _is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    axes = [0, *range(2, rank)]
    channel_shape = w.constant([-1] + [1] * (rank - 2), np.int64)
    batch_mean, centered, batch_var = _moments(w, x, axes)
    eps = w.constant(np.array(_attr(node, "epsilon", 1e-5), dtype))
    normalized = w.op("Div", centered, w.op("Sqrt", w.op("Add", batch_var, eps)))
    y = w.op("Add", w.op("Mul", normalized, w.op("Reshape", scale, channel_shape)),
             w.op("Reshape", bias, channel_shape))
    w.node("Identity", [y], [node.output[0]])
    momentum = float(_attr(node, "momentum", 0.9))
    keep, take = w.constant(np.array(momentum, dtype)), w.constant(np.array(1.0 - momentum, dtype))
    for out, running, current in zip(node.output[1:3], (mean, var), (batch_mean, batch_var)):
        if out:
            flat = w.op("Reshape", current, w.constant(np.array([-1], np.int64)))
            w.node("Add", [w.op("Mul", running, keep), w.op("Mul", flat, take)], [out])
    return True


def _group_norm(node, w, types) -> bool:
    """GroupNormalization as its formula: no gradient in the builder."""
    x, scale, bias = node.input[:3]
    shape = _shape(types, x)
    if shape is None or len(shape) < 2 or not _is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    groups = int(_attr(node, "num_groups"))
    n, channels = shape[0], shape[1]
    grouped = w.op("Reshape", x, w.constant(np.array([n, groups, -1], np.int64)))
    _, centered, variance = _moments(w, grouped, [2])
    eps = w.constant(np.array(_attr(node, "epsilon", 1e-5), dtype))
    normalized = w.op("Reshape", w.op("Div", centered, w.op("Sqrt", w.op("Add", variance, eps))),
                      w.constant(np.array(shape, np.int64)))
    per = _shape(types, scale)
    # Opset 18 scales per group, opset 21 per channel.
    if per is not None and per[0] == groups and groups != channels:
        repeat = w.constant(np.repeat(np.arange(groups), channels // groups).astype(np.int64))
        scale, bias = w.op("Gather", scale, repeat), w.op("Gather", bias, repeat)
    channel_shape = w.constant(np.array([-1] + [1] * (len(shape) - 2), np.int64))
    w.node("Add", [w.op("Mul", normalized, w.op("Reshape", scale, channel_shape)),
                   w.op("Reshape", bias, channel_shape)], node.output[:1])
    return True


def _lp_pool(node, w, types) -> bool:
    """LpPool as (sum over the window of |x|^p)^(1/p), the sum an AveragePool counting the padding."""
    x = node.input[0]
    shape = _shape(types, x)
    if shape is None or not _is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    p = float(_attr(node, "p", 2))
    kernel = list(_attr(node, "kernel_shape"))
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "p"}
    attrs["count_include_pad"] = 1
    powered = w.op("Pow", w.op("Abs", x), w.constant(np.array(p, dtype)))
    mean = w.op("AveragePool", powered, **attrs)
    total = w.op("Mul", mean, w.constant(np.array(float(np.prod(kernel)), dtype)))
    w.node("Pow", [total, w.constant(np.array(1.0 / p, dtype))], node.output)
    return True


def _mean_variance_norm(node, w, types) -> bool:
    """MeanVarianceNormalization as its function body: (x - mean) / (sqrt(E[x^2] - mean^2) + 1e-9)."""
    x = node.input[0]
    if not _is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    axes = list(_attr(node, "axes", [0, 2, 3]))
    mean = w.reduce("ReduceMean", x, axes, True)
    mean_of_square = w.reduce("ReduceMean", w.op("Mul", x, w.op("Identity", x)), axes, True)
    variance = w.op("Sub", mean_of_square, w.op("Mul", mean, w.op("Identity", mean)))
    std = w.op("Add", w.op("Sqrt", variance), w.constant(np.array(1e-9, dtype)))
    w.node("Div", [w.op("Sub", x, mean), std], node.output)
    return True


def _cum_sum(node, w, types) -> bool:
    """CumSum as an onnxgrad function whose gradient is the opposite-direction CumSum."""
    exclusive, reverse = int(_attr(node, "exclusive", 0)), int(_attr(node, "reverse", 0))
    _call_function(w, f"CumSum_e{exclusive}_r{reverse}", "CumSum", list(node.input[:2]), node.output,
                   exclusive=exclusive, reverse=reverse)
    return True


def _mod(node, w, types) -> bool:
    """Float Mod (fmod) as an onnxgrad function: d/da = 1, d/db = -trunc(a / b). Operands are
    expanded to the output's shape first, so the function's gradients need no reduction."""
    if not _attr(node, "fmod", 0) or not all(_is_float(types, name) for name in node.input[:2]):
        return False
    operands = _broadcast_operands(w, types, *node.input[:2])
    if operands is None:
        return False
    _call_function(w, "FMod", "Mod", list(operands), node.output, fmod=1)
    return True


def _pow(node, w, types) -> bool:
    """Pow with a tensor or an int exponent as an onnxgrad function: the builder differentiates
    neither the exponent nor a base under an int exponent. Operands are expanded to the output's
    shape first, so the function's gradients need no reduction."""
    base, exponent = node.input[:2]
    if not _is_float(types, base) or _constant(w, exponent) is not None:
        return False
    operands = _broadcast_operands(w, types, base, exponent)
    if operands is None:
        return False
    _call_function(w, "PowerT" if _is_float(types, exponent) else "PowerI", "Pow", list(operands), node.output)
    return True


def _lrn(node, w, types) -> bool:
    """LRN as its formula: x / (bias + alpha / size * (sum of squares over the channel window))^beta."""
    x = node.input[0]
    shape = _shape(types, x)
    if shape is None or len(shape) < 2 or not _is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    size = int(_attr(node, "size"))
    alpha, beta, bias = (float(_attr(node, k, d)) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    pads = [0] * (2 * len(shape))
    pads[1], pads[len(shape) + 1] = before, after
    padded = w.op("Pad", w.op("Mul", x, w.op("Identity", x)), w.constant(np.array(pads, np.int64)))
    channels = shape[1]
    window = [
        w.op("Slice", padded, w.constant(np.array([k], np.int64)), w.constant(np.array([k + channels], np.int64)),
             w.constant(np.array([1], np.int64)))
        for k in range(size)
    ]
    total = window[0]
    for part in window[1:]:
        total = w.op("Add", total, part)
    scaled = w.op("Mul", total, w.constant(np.array(alpha / size, dtype)))
    scaled = w.op("Add", w.constant(np.array(bias, dtype)), scaled)
    w.node("Div", [x, w.op("Pow", scaled, w.constant(np.array(beta, dtype)))], node.output)
    return True


def _einsum_explicit(equation: str, shapes: list[tuple[int, ...]]) -> tuple[list[str], str] | None:
    """``(operand labels, output labels)`` of an equation with its ellipses spelled out as letters
    (the same letter for the same broadcast axis) and its implicit output made explicit; None when
    an ellipsis axis broadcasts (size 1 against more), which the Einsum gradients cannot reduce."""
    lhs, arrow, out = equation.partition("->")
    operands = lhs.split(",")
    free = [c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba" if c not in equation]
    widths = [len(shape) - len(op.replace("...", "")) for op, shape in zip(operands, shapes)]
    ellipsis = "".join(free[: max([wd for op, wd in zip(operands, widths) if "..." in op], default=0)][::-1])
    sizes: dict[str, int] = {}
    for k, (op, width) in enumerate(zip(operands, widths)):
        operands[k] = op.replace("...", ellipsis[len(ellipsis) - width:] if width else "")
        for letter, size in zip(operands[k], shapes[k]):
            if letter in ellipsis and sizes.setdefault(letter, size) != size:
                return None
    if not arrow:
        letters = "".join(operands)
        out = ellipsis + "".join(sorted(c for c in set(letters) - set(ellipsis) if letters.count(c) == 1))
    return operands, out.replace("...", ellipsis)


def _einsum_diagonal(w: GraphWriter, x: str, labels: str, shape: tuple[int, ...]) -> tuple[str, str]:
    """An operand with an index repeated (``ii``) as its diagonal, a Gather on the pair's flattened
    axes: ``(tensor, labels)`` with each index once."""
    while len(set(labels)) != len(labels):
        letter = next(c for c in labels if labels.count(c) > 1)
        first = labels.index(letter)
        second = labels.index(letter, first + 1)
        others = [k for k in range(len(labels)) if k not in (first, second)]
        size = shape[first]
        moved = w.op("Transpose", x, perm=others + [first, second])
        flat = w.op("Reshape", moved, w.constant([0] * len(others) + [size * size], np.int64))
        x = w.op("Gather", flat, w.constant(np.arange(size, dtype=np.int64) * (size + 1)), axis=len(others))
        labels = "".join(labels[k] for k in others) + letter
        shape = tuple(shape[k] for k in others) + (size,)
    return x, labels


def _einsum(node, w, types) -> bool:
    """Einsum as an onnxgrad function per equation, its gradients Einsums too: the gradient of an
    operand contracts dY with the other operands (and ones shaped like the operand, for its indices
    that appear nowhere else). Ellipses become letters (static ranks; no broadcast of size-1 ellipsis
    axes); an operand with a repeated index becomes its diagonal first (static sizes)."""
    equation = _attr(node, "equation").replace(" ", "")
    if not all(_is_float(types, x) for x in node.input):
        return False
    shapes = [types.get(x, (0, None))[1] for x in node.input]
    if "." in equation or any(len(set(op)) != len(op) for op in equation.partition("->")[0].split(",")):
        if any(shape is None or None in shape for shape in shapes):
            return False
    explicit = _einsum_explicit(equation, shapes) if "." in equation else None
    if "." in equation and explicit is None:
        return False
    operands, out = explicit or _einsum_explicit(equation, [()] * len(node.input))
    tensors = list(node.input)
    for k, op in enumerate(operands):
        if len(set(op)) != len(op):
            tensors[k], operands[k] = _einsum_diagonal(w, tensors[k], op, tuple(shapes[k]))
    name = "Einsum_" + "".join(c if c.isalnum() else "_" for c in f"{','.join(operands)}_{out}")
    grads = []
    for k, op in enumerate(operands):
        others = [(operands[j], f"I({j})") for j in range(len(operands)) if j != k]
        labels, inputs = [out], ["GO(0)"]
        for label, ref in others:
            labels.append(label)
            inputs.append(ref)
        if set(op) - set(out) - {c for label, _ in others for c in label}:
            grads += ones_like(f"ones{k}", f"I({k})")
            labels.append(op)
            inputs.append(f"ones{k}")
        grads.append(cg.GradNode("Einsum", tuple(inputs), (f"GI({k})",), {"equation": f"{','.join(labels)}->{op}"}))
    cg.register(cg.CustomGradient(name, tuple(grads)))
    _call_function(w, name, "Einsum", tensors, node.output, equation=f"{','.join(operands)}->{out}")
    return True


#: Resize's modes and coordinate transformations the rewrite covers (opset 13 to 21).
RESIZE_MODES = ("nearest", "linear", "cubic")
RESIZE_COORDINATES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                      "tf_crop_and_resize")


def resize_refusal(node: onnx.NodeProto) -> str | None:
    """What in a Resize node's attributes onnxgrad cannot differentiate, or None."""
    mode = _attr(node, "mode", "nearest")
    coordinates = _attr(node, "coordinate_transformation_mode", "half_pixel")
    if mode not in RESIZE_MODES:
        return f"mode={mode!r}"
    if coordinates not in RESIZE_COORDINATES:
        return f"coordinate_transformation_mode={coordinates!r}"
    return None


def _resize_source(position: int, size_in: int, size_out: int, scale: float, coordinates: str,
                   roi: tuple[float, float], f: type) -> float:
    """Where output index ``position`` samples the input, computed in the float type ``f``: ONNX
    Runtime's float32 for float32 and narrower inputs (so nearest picks the same samples)."""
    position, scale, half = f(position), f(scale), f(0.5)
    if coordinates == "half_pixel":
        return (position + half) / scale - half
    if coordinates == "half_pixel_symmetric":
        adjustment = f(size_out) / (scale * f(size_in))
        offset = f(size_in) / f(2) * (f(1) - adjustment)
        return offset + (position + half) / scale - half
    if coordinates == "pytorch_half_pixel":
        return (position + half) / scale - half if size_out > 1 else f(0)
    if coordinates == "align_corners":
        return position * f(size_in - 1) / f(size_out - 1) if size_out > 1 else f(0)
    if coordinates == "asymmetric":
        return position / scale
    start, end = f(roi[0]), f(roi[1])  # tf_crop_and_resize
    if size_out > 1:
        return start * f(size_in - 1) + position * (end - start) * f(size_in - 1) / f(size_out - 1)
    return half * (start + end) * f(size_in - 1)


def _resize_matrix(node: onnx.NodeProto, size_in: int, size_out: int, scale: float,
                   roi: tuple[float, float], f: type) -> tuple[np.ndarray, np.ndarray]:
    """``(M, outside)``: Resize along one axis is ``M @ x`` (M is ``[size_out, size_in]``), except at
    the ``outside`` positions of tf_crop_and_resize, which hold extrapolation_value."""
    mode = _attr(node, "mode", "nearest")
    coordinates = _attr(node, "coordinate_transformation_mode", "half_pixel")
    rounding = _attr(node, "nearest_mode", "round_prefer_floor")
    a = float(_attr(node, "cubic_coeff_a", -0.75))
    matrix = np.zeros((size_out, size_in))
    outside = np.zeros(size_out, bool)
    last = size_in - 1
    for o in range(size_out):
        x = float(_resize_source(o, size_in, size_out, scale, coordinates, roi, f))
        if coordinates == "tf_crop_and_resize" and not 0 <= x <= last:
            outside[o] = True
            continue
        if _attr(node, "antialias", 0) and mode != "nearest":
            _antialias_row(matrix[o], x, scale, mode, a, bool(_attr(node, "exclude_outside", 0)))
        elif mode == "nearest":
            if rounding == "round_prefer_floor":
                index = math.floor(x) if x == math.floor(x) + 0.5 else round(x)
            elif rounding == "round_prefer_ceil":
                index = math.ceil(x) if x == math.floor(x) + 0.5 else round(x)
            else:
                index = math.floor(x) if rounding == "floor" else math.ceil(x)
            matrix[o, min(max(index, 0), last)] = 1.0
        elif mode == "linear":
            x = min(max(x, 0.0), float(last))
            low = min(int(x), last)
            matrix[o, low] += 1.0 - (x - low)
            matrix[o, min(low + 1, last)] += x - low
        else:  # cubic, on the 4 nearest samples, indices clamped
            low = math.floor(x)
            t = x - low
            weights = np.array([
                ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
                ((a + 2) * t - (a + 3)) * t * t + 1,
                ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
                ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
            ])
            indices = np.arange(low - 1, low + 3)
            if _attr(node, "exclude_outside", 0):
                weights = np.where((indices < 0) | (indices > last), 0.0, weights)
                weights /= weights.sum()
            for index, weight in zip(np.clip(indices, 0, last), weights):
                matrix[o, index] += weight
    return matrix, outside


def _cubic_kernel(distance: np.ndarray, a: float) -> np.ndarray:
    """The cubic convolution kernel (coefficient ``a``) at the given distances."""
    d = np.abs(distance)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _antialias_row(row: np.ndarray, x: float, scale: float, mode: str, a: float, exclude_outside: bool) -> None:
    """Adds one output's antialiased weights to ``row``: the kernel stretched by 1 / scale when
    downsampling, over the samples it covers (edge samples repeated), normalized."""
    scale = min(scale, 1.0)
    reach = 1 if mode == "linear" else 2  # the kernel's half width at scale 1
    start = math.floor(-reach / scale) + 1
    offsets = np.arange(start, 2 - start if mode == "cubic" else start + 2 - 2 * start)
    # Samples to the left of x; an integer x counts as the right end of its interval (ratio 1).
    base = math.floor(x) if x != math.floor(x) else int(x) - 1
    distances = (offsets - (x - base)) * scale
    weights = np.clip(1 - np.abs(distances), 0, 1) if mode == "linear" else _cubic_kernel(distances, a)
    indices = base + offsets
    last = len(row) - 1
    if exclude_outside:
        weights = np.where((indices < 0) | (indices > last), 0.0, weights)
    weights = weights / weights.sum()
    for index, weight in zip(np.clip(indices, 0, last), weights):
        row[index] += weight


def _resize_geometry(node, w, shape, f: type) -> tuple[list[int], list[float], list[tuple[float, float]]] | None:
    """``(output shape, scale per axis, roi per axis)`` of a Resize with constant roi, scales and sizes,
    as ONNX Runtime computes them (in the float type ``f``); None when one is not constant."""
    rank = len(shape)
    inputs = list(node.input) + [""] * 4
    values = [_constant(w, name) if name else np.zeros(0) for name in inputs[1:4]]
    if any(v is None for v in values):
        return None
    roi, scales, sizes = (v.reshape(-1) for v in values)
    axes = [int(a) % rank for a in _attr(node, "axes", None) or range(rank)]
    out, factor = list(shape), [1.0] * rank
    if sizes.size:
        wanted = {axis: int(size) for axis, size in zip(axes, sizes)}
        ratios = {axis: f(wanted[axis]) / f(shape[axis]) for axis in axes}
        policy = _attr(node, "keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            common = (min if policy == "not_larger" else max)(ratios.values())
            ratios = dict.fromkeys(axes, common)
            wanted = {axis: int(math.floor(float(common) * shape[axis] + 0.5)) for axis in axes}
        for axis in axes:
            out[axis], factor[axis] = wanted[axis], float(ratios[axis])
    elif scales.size:
        for axis, scale in zip(axes, scales.astype(np.float32)):
            out[axis], factor[axis] = int(np.float32(shape[axis]) * scale), float(scale)
    else:
        return None
    spans = [(0.0, 1.0)] * rank
    if roi.size:
        for k, axis in enumerate(axes):
            spans[axis] = (float(roi[k]), float(roi[len(axes) + k]))
    return out, factor, spans


def _resize(node, w, types) -> bool:
    """Resize (nearest, linear, cubic, antialiased or not) with a static input shape and constant roi,
    scales and sizes, axis by axis as taps: Gathers of the sampled indices times constant weights,
    whose gradients the builder has (ResizeGrad has no CPU kernel)."""
    x = node.input[0]
    shape = _shape(types, x)
    if shape is None or not _is_float(types, x) or resize_refusal(node) is not None:
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    real = np.float64 if dtype == np.float64 else np.float32
    geometry = _resize_geometry(node, w, shape, real)
    if geometry is None:
        return False
    out = x
    for axis, (size_out, scale, roi) in enumerate(zip(*geometry)):
        size_in = shape[axis]
        matrix, outside = _resize_matrix(node, size_in, size_out, scale, roi, real)
        if size_out == size_in and not outside.any() and np.array_equal(matrix, np.eye(size_in)):
            continue
        broadcast = [size_out] + [1] * (len(shape) - 1 - axis)
        taps = int((matrix != 0).sum(axis=1).max(initial=0))
        total = None
        for k in range(taps):
            # The k-th nonzero weight of every output position (index 0, weight 0 where a row has fewer).
            order = np.argsort(matrix == 0, axis=1, kind="stable")[:, k]
            weight = matrix[np.arange(size_out), order]
            picked = w.op("Gather", out, w.constant(order.astype(np.int64)), axis=axis)
            if not np.all(weight == 1.0):
                picked = w.op("Mul", picked, w.constant(weight.reshape(broadcast), dtype))
            total = picked if total is None else w.op("Add", total, picked)
        if outside.any():
            fill = w.constant((outside * float(_attr(node, "extrapolation_value", 0.0))).reshape(broadcast), dtype)
            total = fill if total is None else w.op("Add", total, fill)
        out = total
    w.node("Identity", [out], node.output[:1])
    return True


def _reflect(w: GraphWriter, value: str, low: float, high: float, dtype) -> str:
    """``value`` reflected into [low, high] as often as needed (a triangle wave; the identity inside)."""
    span, period = w.constant(np.array(high - low, dtype)), w.constant(np.array(2 * (high - low), dtype))
    shifted = w.op("Sub", value, w.constant(np.array(low, dtype)))
    wrapped = w.op("Sub", shifted, w.op("Mul", w.op("Floor", w.op("Div", shifted, period)), period))
    folded = w.op("Sub", span, w.op("Abs", w.op("Sub", wrapped, span)))
    return w.op("Add", folded, w.constant(np.array(low, dtype)))


def _horner(w: GraphWriter, t: str, coefficients: list[float], dtype) -> str:
    """The polynomial with ``coefficients`` (highest power first) at ``t``."""
    total = w.constant(np.array(coefficients[0], dtype))
    for c in coefficients[1:]:
        total = w.op("Add", w.op("Mul", total, t), w.constant(np.array(c, dtype)))
    return total


def _grid_sample(node, w, types) -> bool:
    """GridSample (linear, nearest or cubic; zeros, border or reflection padding; 1 to 3 spatial axes)
    as GatherElements of the samples each output reads (2^r corners, 4^r for cubic, one for nearest)
    times weights computed from the grid, so that both X and the grid get gradients."""
    x, grid = node.input[:2]
    shape, grid_shape = _shape(types, x), _shape(types, grid)
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(_attr(node, "mode", "linear"), _attr(node, "mode", "linear"))
    padding = _attr(node, "padding_mode", "zeros")
    if (shape is None or grid_shape is None or not _is_float(types, x) or types[grid][0] != types[x][0]
            or mode not in ("linear", "nearest", "cubic") or padding not in ("zeros", "border", "reflection")):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    n, channels, sizes = shape[0], shape[1], list(shape[2:])
    rank = len(sizes)
    samples = int(np.prod(grid_shape[1:-1], dtype=np.int64))
    align = bool(_attr(node, "align_corners", 0))
    flat_x = w.op("Reshape", x, w.constant([n, channels, -1], np.int64))
    index_shape = w.constant([n, channels, samples], np.int64)
    strides = [int(np.prod(sizes[k + 1:], dtype=np.int64)) for k in range(rank)]

    def const(value: float) -> str:
        return w.constant(np.array(value, dtype))

    one, a = const(1.0), -0.75  # a: PyTorch's and ONNX's cubic coefficient
    options = []  # per spatial axis of X: [(sample index, weight or None)]
    for k, size in enumerate(sizes):
        # The grid's last axis lists coordinates innermost axis first: (x, y, z).
        normalized = w.op("Reshape", w.op("Gather", grid, w.constant(np.array(rank - 1 - k, np.int64)), axis=-1),
                          w.constant([n, samples], np.int64))
        # align_corners: -1 and 1 are the centers of the corner samples, else their outer edges.
        low, high = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        point = w.op("Sub", w.op("Mul", w.op("Add", normalized, one), const((high - low) / 2)), const(-low))
        if mode == "nearest":
            point = w.op("Round", point)  # half to even, as ONNX and PyTorch
        # Cubic pads each of its samples (below), as ONNX Runtime and PyTorch; the others the point.
        if padding == "border" and mode != "cubic":  # outside [low, high]: the nearest edge sample
            outside = w.op("Or", w.op("Less", point, const(low)), w.op("Greater", point, const(high)))
            point = w.op("Where", outside, w.op("Clip", point, const(0.0), const(size - 1.0)), point)
        elif padding == "reflection" and mode != "cubic":
            point = _reflect(w, point, low, high, dtype)
        if mode == "nearest":
            options.append([(point, None)])
            continue
        floor = w.op("Floor", point)
        t = w.op("Sub", point, floor)
        if mode == "linear":
            options.append([(floor, w.op("Sub", one, t)), (w.op("Add", floor, one), t)])
            continue
        far = [a, -5 * a, 8 * a, -4 * a]  # the cubic kernel for distances in [1, 2]
        near = [a + 2, -(a + 3), 0.0, 1.0]  # and in [0, 1]
        distances = [w.op("Add", t, one), t, w.op("Sub", one, t), w.op("Sub", const(2.0), t)]
        weights = [_horner(w, d, far if k2 in (0, 3) else near, dtype) for k2, d in enumerate(distances)]
        options.append([(w.op("Add", floor, const(float(shift))), weight)
                        for shift, weight in zip((-1, 0, 1, 2), weights)])
    total = None
    for corner in itertools.product(*options):
        flat, weight, valid = None, None, None
        for k, (index, factor) in enumerate(corner):
            if padding == "zeros":
                inside = w.op("And", w.op("GreaterOrEqual", index, const(0.0)),
                              w.op("LessOrEqual", index, const(sizes[k] - 1.0)))
                valid = inside if valid is None else w.op("And", valid, inside)
            elif padding == "reflection" and mode != "nearest":  # linear: samples past the edges
                index = _reflect(w, index, *((0.0, sizes[k] - 1.0) if align else (-0.5, sizes[k] - 0.5)), dtype)
            clamped = w.op("Clip", index, const(0.0), const(sizes[k] - 1.0))
            term = w.op("Mul", clamped, const(float(strides[k])))
            flat = term if flat is None else w.op("Add", flat, term)
            if factor is not None:
                weight = factor if weight is None else w.op("Mul", weight, factor)
        if valid is not None:
            mask = w.cast(valid, dtype)
            weight = mask if weight is None else w.op("Mul", weight, mask)
        indices = w.op("Expand", w.unsqueeze(w.cast(flat, np.int64), [1]), index_shape)
        sampled = w.op("GatherElements", flat_x, indices, axis=2)
        if weight is not None:
            sampled = w.op("Mul", sampled, w.unsqueeze(weight, [1]))
        total = sampled if total is None else w.op("Add", total, sampled)
    w.node("Reshape", [total, w.constant([n, channels, *grid_shape[1:-1]], np.int64)], node.output)
    return True


def _center_crop_pad(node, w, types) -> bool:
    """CenterCropPad as a Slice (crop) and a Pad with zeros (pad) per axis, for a static input shape
    and a constant target shape: no gradient in the builder."""
    x = node.input[0]
    shape, target = _shape(types, x), _constant(w, node.input[1])
    if shape is None or target is None or not _is_float(types, x):
        return False
    rank = len(shape)
    axes = [int(a) % rank for a in _attr(node, "axes", None) or range(rank)]
    begins, ends, pads = [0] * rank, list(shape), [0] * (2 * rank)
    for axis, size in zip(axes, (int(t) for t in target.reshape(-1))):
        if size < shape[axis]:  # crop: the extra element, if any, comes off the end
            begins[axis] = (shape[axis] - size) // 2
            ends[axis] = begins[axis] + size
        elif size > shape[axis]:  # pad: the extra zero, if any, goes at the end
            pads[axis] = (size - shape[axis]) // 2
            pads[rank + axis] = size - shape[axis] - pads[axis]
    out = x
    if begins != [0] * rank or ends != list(shape):
        out = w.op("Slice", out, w.constant(begins, np.int64), w.constant(ends, np.int64))
    if any(pads):
        out = w.op("Pad", out, w.constant(pads, np.int64))
    w.node("Identity", [out], node.output)
    return True


def _fourier(w: GraphWriter, parts: list[str], length: int, onesided: bool, inverse: bool,
             dtype) -> tuple[str, str]:
    """``(real, imag)`` of the discrete Fourier transform along the last axis of ``parts`` (the real
    part, and the imaginary part if any): MatMuls with constant cosine and sine matrices."""
    angle = 2 * np.pi * np.outer(np.arange(length), np.arange(length // 2 + 1 if onesided else length)) / length
    scale, sign = (1.0 / length, 1.0) if inverse else (1.0, -1.0)
    cos, sin = w.constant(np.cos(angle) * scale, dtype), w.constant(np.sin(angle) * scale * sign, dtype)
    # (re + i im) (cos + i sin), sin carrying the direction's sign
    real = w.op("MatMul", parts[0], cos)
    imag = w.op("MatMul", parts[0], sin)
    if len(parts) > 1:
        real = w.op("Sub", real, w.op("MatMul", parts[1], sin))
        imag = w.op("Add", imag, w.op("MatMul", parts[1], cos))
    return real, imag


def _stft(node, w, types) -> bool:
    """STFT as frames gathered from the signal, times the window, then the Fourier MatMuls (static
    shape, constant frame_step and frame_length): no gradient in the builder. The window gets a
    gradient too."""
    signal = node.input[0]
    shape = _shape(types, signal)
    inputs = list(node.input) + ["", "", ""]
    step = _constant(w, inputs[1])
    window = inputs[2] or None
    window_shape = _shape(types, window) if window else None
    length = _constant(w, inputs[3]) if inputs[3] else None
    if shape is None or step is None or not _is_float(types, signal) or (window and window_shape is None):
        return False
    if length is None and window_shape is None:
        return False
    frame = int(length) if length is not None else window_shape[0]
    step = int(step)
    frames = (shape[1] - frame) // step + 1
    dtype = helper.tensor_dtype_to_np_dtype(types[signal][0])
    index = w.constant(np.arange(frames)[:, None] * step + np.arange(frame)[None, :], np.int64)
    parts = []
    for k in range(shape[-1]):
        part = w.op("Gather", w.op("Gather", signal, w.constant(np.array(k, np.int64)), axis=-1), index, axis=1)
        parts.append(w.op("Mul", part, window) if window else part)
    real, imag = _fourier(w, parts, frame, bool(_attr(node, "onesided", 1)), False, dtype)
    w.node("Concat", [w.unsqueeze(real, [3]), w.unsqueeze(imag, [3])], node.output, axis=-1)
    return True


def _dft(node, w, types) -> bool:
    """DFT as MatMuls with constant cosine and sine matrices along its axis (static shape, constant
    dft_length and axis): no gradient in the builder."""
    x = node.input[0]
    shape = _shape(types, x)
    if shape is None or not _is_float(types, x):
        return False
    rank = len(shape)
    inputs = list(node.input) + ["", ""]
    if w.opset >= 20:
        axis_value = _constant(w, inputs[2]) if inputs[2] else np.array(-2)
    else:
        axis_value = np.array(_attr(node, "axis", 1))
    length_value = _constant(w, inputs[1]) if inputs[1] else None
    if axis_value is None or (inputs[1] and length_value is None):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    axis = int(axis_value) % rank
    size = shape[axis]
    length = int(length_value) if length_value is not None else size
    inverse, onesided = bool(_attr(node, "inverse", 0)), bool(_attr(node, "onesided", 0))
    parts = [w.op("Gather", x, w.constant(np.array(k, np.int64)), axis=-1) for k in range(shape[-1])]
    if length < size:
        parts = [w.op("Slice", p, w.constant([0], np.int64), w.constant([length], np.int64),
                      w.constant([axis], np.int64)) for p in parts]
    elif length > size:
        pads = [0] * (2 * (rank - 1))
        pads[rank - 1 + axis] = length - size
        parts = [w.op("Pad", p, w.constant(pads, np.int64)) for p in parts]
    order = [a for a in range(rank - 1) if a != axis] + [axis]
    if order != list(range(rank - 1)):
        parts = [w.op("Transpose", p, perm=order) for p in parts]
    real, imag = _fourier(w, parts, length, onesided, inverse, dtype)
    if order != list(range(rank - 1)):
        back = [order.index(a) for a in range(rank - 1)]
        real, imag = w.op("Transpose", real, perm=back), w.op("Transpose", imag, perm=back)
    w.node("Concat", [w.unsqueeze(real, [rank - 1]), w.unsqueeze(imag, [rank - 1])], node.output, axis=-1)
    return True


def _reverse_sequence(node, w, types) -> bool:
    """ReverseSequence as GatherElements with a constant index (static shape, constant
    sequence_lens): no gradient in the builder."""
    x = node.input[0]
    shape, lengths = _shape(types, x), _constant(w, node.input[1])
    if shape is None or lengths is None or not _is_float(types, x):
        return False
    time, batch = int(_attr(node, "time_axis", 0)), int(_attr(node, "batch_axis", 1))
    steps = np.arange(shape[time]).reshape([-1 if a == time else 1 for a in range(len(shape))])
    ends = lengths.astype(np.int64).reshape([-1 if a == batch else 1 for a in range(len(shape))])
    index = np.broadcast_to(np.where(steps < ends, ends - 1 - steps, steps), shape).astype(np.int64)
    w.node("GatherElements", [x, w.constant(index)], node.output, axis=time)
    return True


def _max_unpool(node, w, types) -> bool:
    """MaxUnpool as ScatterElements of X into zeros at its (flat) indices (static shapes; a
    constant output_shape if given): no gradient in the builder."""
    x, indices = node.input[:2]
    shape = _shape(types, x)
    if shape is None or not _is_float(types, x):
        return False
    if len(node.input) > 2 and node.input[2]:
        out_shape = _constant(w, node.input[2])
        if out_shape is None:
            return False
        out_shape = [int(d) for d in out_shape]
    else:
        kernel, rank = list(_attr(node, "kernel_shape")), len(shape) - 2
        strides = list(_attr(node, "strides") or [1] * rank)
        pads = list(_attr(node, "pads") or [0] * (2 * rank))
        out_shape = list(shape[:2]) + [(d - 1) * s + k - pads[i] - pads[rank + i]
                                 for i, (d, s, k) in enumerate(zip(shape[2:], strides, kernel))]
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    flat = w.constant([-1], np.int64)
    zeros = w.constant(np.zeros(int(np.prod(out_shape)), dtype))
    scattered = w.op("ScatterElements", zeros, w.op("Reshape", w.cast(indices, np.int64), flat),
                     w.op("Reshape", x, flat), axis=0)
    w.node("Reshape", [scattered, w.constant(out_shape, np.int64)], node.output)
    return True


def _col2im(node, w, types) -> bool:
    """Col2Im as a grouped ConvTranspose with one-hot kernels (one per block position), itself
    rewritten into a Conv: static shapes, constant image_shape and block_shape."""
    x = node.input[0]
    shape = _shape(types, x)
    image, block = _constant(w, node.input[1]), _constant(w, node.input[2])
    if shape is None or image is None or block is None or not _is_float(types, x):
        return False
    image, block = [int(d) for d in image], [int(d) for d in block]
    rank, positions = len(image), int(np.prod(block))
    dilations = list(_attr(node, "dilations") or [1] * rank)
    strides = list(_attr(node, "strides") or [1] * rank)
    pads = list(_attr(node, "pads") or [0] * (2 * rank))
    counts = [(h + pads[i] + pads[rank + i] - d * (k - 1) - 1) // s + 1
              for i, (h, k, d, s) in enumerate(zip(image, block, dilations, strides))]
    n, channels = shape[0], shape[1] // positions
    if int(np.prod(counts)) != shape[2]:
        return False
    elem = types[x][0]
    blocks = w.op("Reshape", x, w.constant([n, channels * positions, *counts], np.int64))
    kernel = np.zeros((channels * positions, 1, *block), helper.tensor_dtype_to_np_dtype(elem))
    for c in range(channels):
        for j in range(positions):
            kernel[(c * positions + j, 0, *np.unravel_index(j, block))] = 1.0
    weight = w.constant(kernel)
    extra = [h - ((m - 1) * s + d * (k - 1) + 1 - pads[i] - pads[rank + i])
             for i, (h, m, k, d, s) in enumerate(zip(image, counts, block, dilations, strides))]
    transposed = helper.make_node("ConvTranspose", [blocks, weight], list(node.output[:1]), group=channels,
                                  strides=strides, dilations=dilations, pads=pads, output_padding=extra)
    known = {**types, blocks: (elem, (n, channels * positions, *counts)), weight: (elem, kernel.shape)}
    return _conv_transpose(transposed, w, known)


def _det(node, w, types) -> bool:
    """Det of matrices up to 4 x 4 as its Leibniz sum (products of entries, one per permutation):
    exact gradients, singular matrices included. No gradient in the builder."""
    x = node.input[0]
    shape = _shape(types, x)
    if (shape is None or len(shape) < 2 or shape[-1] != shape[-2] or not 1 <= shape[-1] <= 4
            or not _is_float(types, x)):
        return False
    size = shape[-1]
    flat = w.op("Reshape", x, w.constant([*shape[:-2], size * size], np.int64))
    total = None
    for permutation in itertools.permutations(range(size)):
        sign = np.linalg.det(np.eye(size)[list(permutation)])
        factors = [w.op("Gather", flat, w.constant(np.array(row * size + col, np.int64)), axis=-1)
                   for row, col in enumerate(permutation)]
        term = factors[0]
        for factor in factors[1:]:
            term = w.op("Mul", term, factor)
        if total is None:
            total = term if sign > 0 else w.op("Neg", term)
        else:
            total = w.op("Add" if sign > 0 else "Sub", total, term)
    w.node("Identity", [total], node.output)
    return True


def _affine_grid(node, w, types) -> bool:
    """AffineGrid as the (constant) grid of normalized positions times theta transposed, for a
    constant size: no gradient in the builder."""
    theta = node.input[0]
    size = _constant(w, node.input[1])
    if size is None or not _is_float(types, theta):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[theta][0])
    n, spatial = int(size[0]), [int(d) for d in size[2:]]
    if _attr(node, "align_corners", 0):
        axes = [np.linspace(-1.0, 1.0, d) if d > 1 else np.zeros(1) for d in spatial]
    else:
        axes = [(np.arange(d) * 2.0 + 1.0) / d - 1.0 for d in spatial]
    # Rows (x, y[, z], 1) for every position, the innermost axis (x) first in each row.
    mesh = np.meshgrid(*axes, indexing="ij")
    base = np.stack([m.reshape(-1) for m in mesh[::-1]] + [np.ones(mesh[0].size)], axis=1)
    # theta @ base^T, then transposed: a transposed MatMul input would fuse into FusedMatMul, float-only.
    grid = w.op("Transpose", w.op("MatMul", theta, w.constant(base.T, dtype)), perm=[0, 2, 1])
    w.node("Reshape", [grid, w.constant([n, *spatial, len(spatial)], np.int64)], node.output)
    return True


#: Gates per step and default activations of the recurrent ops (ONNX's gate order).
_RECURRENT = {"RNN": (1, ("Tanh",)), "GRU": (3, ("Sigmoid", "Tanh")), "LSTM": (4, ("Sigmoid", "Tanh", "Tanh"))}
_ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu"}


def _recurrent(node, w, types) -> bool:
    """RNN, GRU and LSTM unrolled over their (static) sequence length into MatMul, Add, Mul and the
    activations, every output (Y, Y_h, Y_c) and direction; sequence_lens as masks, peepholes, clip.
    Not covered (the node is kept): layout=1, LSTM's input_forget, activations other than Tanh,
    Sigmoid and Relu."""
    gates, defaults = _RECURRENT[node.op_type]
    inputs = list(node.input) + [""] * (8 - len(node.input))
    x, weight, recurrence, bias, lengths, initial_h, initial_c, peepholes = inputs[:8]
    shape = _shape(types, weight)
    x_shape = types.get(x, (0, None))[1]
    if (not _is_float(types, x) or shape is None or x_shape is None or x_shape[0] is None
            or _attr(node, "layout", 0) or _attr(node, "input_forget", 0)):
        return False
    names = [(a.decode() if isinstance(a, bytes) else a).lower() for a in (_attr(node, "activations") or [])]
    directions = 2 if _attr(node, "direction", "forward") == "bidirectional" else 1
    names = names or [d.lower() for d in defaults] * directions
    if len(names) != len(defaults) * directions or any(name not in _ACTIVATIONS for name in names):
        return False
    activations = [_ACTIVATIONS[name] for name in names]
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    steps, hidden = x_shape[0], shape[1] // gates
    clip = _attr(node, "clip")
    reverse = [_attr(node, "direction", "forward") == "reverse", True][:directions]

    def act(k: int, d: int, value: str) -> str:
        if clip is not None:
            value = w.op("Clip", value, w.constant(np.array(-clip, dtype)), w.constant(np.array(clip, dtype)))
        return w.op(activations[d * len(defaults) + k], value)

    def part(value: str, k: int, count: int = 1) -> str:  # gates k .. k+count-1 of the last axis
        return w.op("Slice", value, w.constant([k * hidden], np.int64), w.constant([(k + count) * hidden], np.int64),
                    w.constant([-1], np.int64))

    def pick(value: str, index: int) -> str:  # index of axis 0, dropped
        return w.op("Gather", value, w.constant(np.array(index, np.int64)), axis=0)

    def blend(mask: str | None, new: str, old: str | None) -> str:  # new where the step is in the sequence
        if mask is None:
            return new
        kept = w.op("Mul", new, mask)
        return kept if old is None else w.op("Add", kept, w.op("Mul", old, w.op("Sub", one, mask)))

    one = w.constant(np.array(1.0, dtype))
    masks: list[str | None] = [None] * steps
    if lengths:
        lengths64 = w.cast(lengths, np.int64)
        masks = [w.unsqueeze(w.cast(w.op("Less", w.constant(np.array(t, np.int64)), lengths64), dtype), [1])
                 for t in range(steps)]
    ys, finals_h, finals_c = [], [], []
    for d in range(directions):
        w_t = w.op("Transpose", pick(weight, d), perm=[1, 0])
        r_t = w.op("Transpose", pick(recurrence, d), perm=[1, 0])
        projected = w.op("MatMul", x, w_t)  # [steps, batch, gates * hidden]
        recurrent_bias = zr_bias = None
        if bias:
            both = pick(bias, d)
            w_bias, r_bias = part(both, 0, gates), part(both, gates, gates)
            if node.op_type == "GRU" and _attr(node, "linear_before_reset", 0):
                # The h gate's recurrent bias sits inside r * (...): added per step, as z's and r's.
                recurrent_bias, zr_bias = part(r_bias, 2), part(r_bias, 0, 2)
                projected = w.op("Add", projected, w_bias)
            else:
                projected = w.op("Add", projected, w.op("Add", w_bias, r_bias))
        h = pick(initial_h, d) if initial_h else None
        c = pick(initial_c, d) if initial_c and node.op_type == "LSTM" else None
        p = pick(peepholes, d) if peepholes and node.op_type == "LSTM" else None
        outputs = [None] * steps
        for t in (range(steps - 1, -1, -1) if reverse[d] else range(steps)):
            step = pick(projected, t)
            mixed = step if h is None else w.op("Add", step, w.op("MatMul", h, r_t))
            if node.op_type == "RNN":
                new_h = act(0, d, mixed)
            elif node.op_type == "GRU":
                zr = part(mixed, 0, 2) if zr_bias is None else w.op("Add", part(mixed, 0, 2), zr_bias)
                z, r = act(0, d, part(zr, 0)), act(0, d, part(zr, 1))
                if h is None:
                    candidate = part(step, 2)
                    if recurrent_bias is not None:
                        candidate = w.op("Add", candidate, w.op("Mul", r, recurrent_bias))
                elif _attr(node, "linear_before_reset", 0):
                    inner = w.op("MatMul", h, part(r_t, 2))
                    if recurrent_bias is not None:
                        inner = w.op("Add", inner, recurrent_bias)
                    candidate = w.op("Add", part(step, 2), w.op("Mul", r, inner))
                else:
                    candidate = w.op("Add", part(step, 2), w.op("MatMul", w.op("Mul", r, h), part(r_t, 2)))
                candidate = act(1, d, candidate)
                # (1 - z) * candidate + z * h
                new_h = w.op("Mul", w.op("Sub", one, z), candidate)
                if h is not None:
                    new_h = w.op("Add", new_h, w.op("Mul", z, h))
            else:  # LSTM: gates i, o, f, c; peepholes i, o, f
                pre_i, pre_o, pre_f = part(mixed, 0), part(mixed, 1), part(mixed, 2)
                if p is not None and c is not None:
                    pre_i = w.op("Add", pre_i, w.op("Mul", part(p, 0), c))
                    pre_f = w.op("Add", pre_f, w.op("Mul", part(p, 2), c))
                i, f, g = act(0, d, pre_i), act(0, d, pre_f), act(1, d, part(mixed, 3))
                new_c = w.op("Mul", i, g)
                if c is not None:
                    new_c = w.op("Add", w.op("Mul", f, c), new_c)
                if p is not None:
                    pre_o = w.op("Add", pre_o, w.op("Mul", part(p, 1), new_c))
                new_h = w.op("Mul", act(0, d, pre_o), act(2, d, new_c))
                c = blend(masks[t], new_c, c)
            outputs[t] = w.unsqueeze(blend(masks[t], new_h, None), [0])
            h = blend(masks[t], new_h, h)
        ys.append(w.unsqueeze(w.op("Concat", *outputs, axis=0), [1]))
        finals_h.append(w.unsqueeze(h, [0]))
        if node.op_type == "LSTM":
            finals_c.append(w.unsqueeze(c, [0]))
    results = [ys, finals_h, finals_c]
    for out, parts in zip(node.output, results):
        if out:
            w.node("Concat", parts, [out], axis=1 if parts is ys else 0)
    return True


def _depth_to_space(node, w, types) -> bool:
    shape = _shape(types, node.input[0])
    if shape is None or len(shape) != 4:
        return False
    n, c, h, wd = shape
    b = _attr(node, "blocksize")
    if _attr(node, "mode", "DCR") == "DCR":
        split, perm = [n, b, b, c // (b * b), h, wd], [0, 3, 4, 1, 5, 2]
    else:  # CRD
        split, perm = [n, c // (b * b), b, b, h, wd], [0, 1, 4, 2, 5, 3]
    blocks = w.op("Transpose", w.op("Reshape", node.input[0], w.constant(split, np.int64)), perm=perm)
    w.node("Reshape", [blocks, w.constant([n, c // (b * b), h * b, wd * b], np.int64)], node.output)
    return True


def _space_to_depth(node, w, types) -> bool:
    shape = _shape(types, node.input[0])
    if shape is None or len(shape) != 4:
        return False
    n, c, h, wd = shape
    b = _attr(node, "blocksize")
    split = w.op("Reshape", node.input[0], w.constant([n, c, h // b, b, wd // b, b], np.int64))
    blocks = w.op("Transpose", split, perm=[0, 3, 5, 1, 2, 4])
    w.node("Reshape", [blocks, w.constant([n, c * b * b, h // b, wd // b], np.int64)], node.output)
    return True


def _conv_transpose(node, w, types) -> bool:
    # ConvTranspose(x, W) = Conv(x with stride-1 zeros between elements, W flipped with in/out channels
    # swapped per group): the CPU build has no ConvTransposeGrad kernel.
    x, weight = node.input[:2]
    shape, kernel = _shape(types, x), _shape(types, weight)
    if shape is None or kernel is None or _attr(node, "auto_pad", "NOTSET") != "NOTSET" or _attr(node, "output_shape"):
        return False
    spatial = len(shape) - 2
    strides = _attr(node, "strides") or [1] * spatial
    dilations = _attr(node, "dilations") or [1] * spatial
    pads = _attr(node, "pads") or [0] * (2 * spatial)
    output_padding = _attr(node, "output_padding") or [0] * spatial
    group = _attr(node, "group", 1)
    sizes = kernel[2:]
    extents = [d * (k - 1) for d, k in zip(dilations, sizes)]
    begins = [e - p for e, p in zip(extents, pads[:spatial])]
    ends = [e - p + o for e, p, o in zip(extents, pads[spatial:], output_padding)]
    if min(begins + ends) < 0:
        return False
    if any(s > 1 for s in strides):
        n, c, dims = shape[0], shape[1], shape[2:]
        interleaved = [n, c] + [v for d in dims for v in (d, 1)]
        padded = w.op("Pad", w.op("Reshape", x, w.constant(interleaved, np.int64)),
                      w.constant([0] * len(interleaved) + [0, 0] + [v for s in strides for v in (0, s - 1)], np.int64))
        spread = w.op("Reshape", padded, w.constant([n, c] + [d * s for d, s in zip(dims, strides)], np.int64))
        axes = list(range(2, 2 + spatial))
        x = w.op("Slice", spread, w.constant([0] * spatial, np.int64),
                 w.constant([(d - 1) * s + 1 for d, s in zip(dims, strides)], np.int64), w.constant(axes, np.int64))
    c_in, c_out_group = kernel[0], kernel[1]
    grouped = w.op("Reshape", weight, w.constant([group, c_in // group, c_out_group, *sizes], np.int64))
    swapped = w.op("Transpose", grouped, perm=[0, 2, 1, *range(3, 3 + spatial)])
    regrouped = w.op("Reshape", swapped, w.constant([group * c_out_group, c_in // group, *sizes], np.int64))
    flipped = regrouped
    for axis, size in enumerate(sizes, start=2):  # Gather, not a step -1 Slice: SliceGrad rejects those
        flipped = w.op("Gather", flipped, w.constant(np.arange(size - 1, -1, -1, dtype=np.int64)), axis=axis)
    inputs = [x, flipped] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
    w.node("Conv", inputs, node.output, dilations=list(dilations), group=group, pads=begins + ends)
    return True


def _pad_source(position: int, size: int, mode: str) -> int:
    """The input index a padded position copies in reflect, edge or wrap mode."""
    if mode == "edge":
        return min(max(position, 0), size - 1)
    if mode == "wrap":
        return position % size
    if position < 0:  # reflect
        return -position
    return position if position < size else 2 * (size - 1) - position


def _pad_with_tensor_value(node, w, types) -> bool:
    # The builder's Pad gradient gives a non-constant pad value none: pad with 0, then add
    # value times a mask of the padding (the mask comes from Shape, which stops gradients).
    if len(node.input) < 3 or not node.input[2] or _constant(w, node.input[2]) is not None:
        return False
    x, value = node.input[0], node.input[2]
    if not _is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    rest = list(node.input[3:])  # opset 18 axes
    padded = w.op("Pad", *[x, node.input[1], "", *rest])
    zeros = w.op("ConstantOfShape", w.op("Shape", x), value=numpy_helper.from_array(np.zeros([1], dtype)))
    mask = w.op("Pad", *[zeros, node.input[1], w.constant(np.array(1, dtype)), *rest])
    w.node("Add", [padded, w.op("Mul", mask, value)], node.output)
    return True


def _full_rank_pads(node, w, types) -> onnx.NodeProto | None:
    """The Pad with opset 18's ``axes`` folded into full-rank pads (the builder's gradient reads
    pads as full-rank); None when the rank is unknown."""
    rank = _rank(types, node.input[0])
    if rank is None:
        return None
    pads, axes = _constant(w, node.input[1]), _constant(w, node.input[3])
    if pads is not None and axes is not None:
        full = np.zeros(2 * rank, np.int64)
        for k, axis in enumerate(int(a) % rank for a in axes.reshape(-1)):
            full[axis], full[rank + axis] = pads[k], pads[len(axes) + k]
        full_name = w.constant(full)
    else:
        axes_name = w.op("Cast", node.input[3], to=onnx.TensorProto.INT64)
        rank_name = w.constant(np.array(rank, np.int64))
        positive = w.op("Mod", w.op("Add", axes_name, rank_name), rank_name)
        indices = w.op("Concat", positive, w.op("Add", positive, rank_name), axis=0)
        full_name = w.op("ScatterElements", w.constant(np.zeros(2 * rank, np.int64)), indices,
                         w.op("Cast", node.input[1], to=onnx.TensorProto.INT64), axis=0)
    folded = onnx.NodeProto()
    folded.CopyFrom(node)
    del folded.input[:]
    folded.input.extend([node.input[0], full_name, node.input[2] if len(node.input) > 2 else ""])
    return folded


def _pad(node, w, types) -> bool:
    # The builder's Pad gradient takes constant mode only: a Gather per padded axis copies the same elements.
    folded = None
    if len(node.input) > 3 and node.input[3]:
        folded = node = _full_rank_pads(node, w, types)
        if node is None:
            return False
    mode = _attr(node, "mode", "constant")
    x = node.input[0]
    if mode == "constant":
        if _pad_with_tensor_value(node, w, types):
            return True
        if folded is not None:
            w.nodes.append(folded)
            return True
        return False
    shape = _shape(types, x)
    if shape is None:
        if folded is not None:
            w.nodes.append(folded)
            return True
        return False
    if len(node.input) > 1:  # opset 11: pads (and, from 18, axes) as inputs
        pads = _constant(w, node.input[1])
        axes = _constant(w, node.input[3]) if len(node.input) > 3 and node.input[3] else np.arange(len(shape))
        if pads is None or axes is None:
            return False
        pads, axes = [int(p) for p in pads], [int(a) % len(shape) for a in axes]
    else:
        pads, axes = list(_attr(node, "pads")), list(range(len(shape)))
    out = x
    for axis, begin, end in zip(axes, pads[: len(axes)], pads[len(axes) :]):
        size = shape[axis]
        if begin < 0 or end < 0 or (mode == "reflect" and max(begin, end) >= size):
            return False
        if begin or end:
            sources = [_pad_source(p, size, mode) for p in range(-begin, size + end)]
            out = w.op("Gather", out, w.constant(np.array(sources, np.int64)), axis=axis)
    w.node("Identity", [out], node.output)
    return True


def _where(node, w, types) -> bool:
    # The builder's Where gradient keeps the output's shape: expand broadcast operands first.
    cond, a, b = node.input
    out_shape = _shape(types, node.output[0])
    if out_shape is None or not _is_float(types, node.output[0]):
        return False
    operands = []
    for operand in (a, b):
        if _shape(types, operand) != out_shape:
            operand = w.op("Expand", operand, w.constant(list(out_shape), np.int64))
        operands.append(operand)
    if operands == [a, b]:
        return False
    w.node("Where", [cond, *operands], node.output)
    return True


def _split(node, w, types) -> bool:
    # The builder's Split gradient concatenates only the outputs that have gradients: Slices instead.
    x = node.input[0]
    rank = _rank(types, x)
    if not _is_float(types, x) or not rank or w.opset < 10:
        return False
    axis = _attr(node, "axis", 0) % rank
    if len(node.input) > 1 and node.input[1]:
        sizes = _constant(w, node.input[1])
        if sizes is None:
            return False
        sizes = [int(s) for s in sizes.reshape(-1)]
    elif _attr(node, "split"):
        sizes = list(_attr(node, "split"))
    else:  # equal parts, the last one smaller (opset 18's num_outputs)
        dim = types[x][1][axis]
        if dim is None:
            return False
        count = len(node.output)
        part = -(-dim // count)
        sizes = [part] * (count - 1) + [dim - part * (count - 1)]
    start = 0
    for output, size in zip(node.output, sizes):
        if output:
            bounds = [w.constant([start], np.int64), w.constant([start + size], np.int64)]
            w.node("Slice", [x, *bounds, w.constant([axis], np.int64)], [output])
        start += size
    return True


def _clip(node, w, types) -> bool:
    # The builder gives non-constant bounds (trainable ones) no gradient: Max and Min do.
    inputs = list(node.input) + ["", ""]
    x, low, high = inputs[:3]
    bounds = [b for b in (low, high) if b]
    if all(_constant(w, b) is not None for b in bounds):
        return False
    out = x
    if low:
        out = w.op("Max", out, low)
    if high:
        out = w.op("Min", out, high)
    w.node("Identity", [out], node.output)
    return True


def _one_hot(node, w, types) -> bool:
    # The builder gives non-constant off/on values no gradient: select them with Where.
    indices, depth, values = node.input
    out_shape = _shape(types, node.output[0])
    if _constant(w, values) is not None or out_shape is None or not _is_float(types, values):
        return False
    hot = w.op("OneHot", w.cast(indices, np.int64), w.cast(depth, np.int64), w.constant([0, 1], np.int64),
               axis=_attr(node, "axis", -1))
    full = w.constant(list(out_shape), np.int64)
    off = w.op("Expand", w.op("Gather", values, w.constant(0, np.int64)), full)
    on = w.op("Expand", w.op("Gather", values, w.constant(1, np.int64)), full)
    w.node("Where", [w.cast(hot, np.bool_), on, off], node.output)
    return True


def _explicit_pads(node, w, types) -> bool:
    """auto_pad SAME_*/VALID as explicit pads: ORT's ConvGrad ignores auto_pad (wrong gradients)."""
    mode = _attr(node, "auto_pad", "NOTSET")
    if mode == "NOTSET":
        return False
    shape = types.get(node.input[0], (0, None))[1]
    if node.op_type == "Conv":
        kernel = _attr(node, "kernel_shape") or (types.get(node.input[1], (0, None))[1] or ())[2:]
    else:
        kernel = _attr(node, "kernel_shape")
    if shape is None or None in shape or not kernel or None in kernel:
        return False
    spatial = shape[2:]
    strides = _attr(node, "strides") or [1] * len(spatial)
    dilations = _attr(node, "dilations") or [1] * len(spatial)
    begins, ends = [], []
    for size, k, stride, dilation in zip(spatial, kernel, strides, dilations):
        total = 0
        if mode in ("SAME_UPPER", "SAME_LOWER"):
            out = -(-size // stride)
            total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if mode != "SAME_LOWER" else large)
        ends.append(large if mode != "SAME_LOWER" else small)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name not in ("auto_pad", "pads")}
    w.node(node.op_type, list(node.input), list(node.output), pads=begins + ends, **attrs)
    return True


_REWRITES: dict[str, Rewrite] = {
    # auto_pad: ConvGrad ignores it
    "Conv": _explicit_pads,
    "MaxPool": _explicit_pads,
    "AveragePool": _explicit_pads,
    # no gradient in the builder
    "ReduceSumSquare": _reduce_sum_square,
    "ReduceL2": _reduce_l2,
    "CastLike": _cast_like,
    "GroupNormalization": _group_norm,
    "LpPool": _lp_pool,
    "MeanVarianceNormalization": _mean_variance_norm,
    "CumSum": _cum_sum,
    "Mod": _mod,
    "Pow": _pow,
    "LRN": _lrn,
    "Einsum": _einsum,
    "SoftmaxCrossEntropyLoss": _softmax_cross_entropy,
    "NegativeLogLikelihoodLoss": _nll_loss,
    "ReduceL1": _reduce_l1,
    "ReduceLogSum": _reduce_log_sum,
    "ReduceProd": _reduce_prod,
    "ReduceMax": _reduce_extreme,
    "ReduceMin": _reduce_extreme,
    "GlobalMaxPool": _global_max_pool,
    "Sum": _sum,
    "Mean": _mean,
    "BatchNormalization": _batch_norm,
    "InstanceNormalization": _instance_norm,
    "LpNormalization": _lp_norm,
    "LayerNormalization": _layer_norm,
    "Elu": _elu,
    "Selu": _selu,
    "Celu": _celu,
    "Softplus": _softplus,
    "Softsign": _softsign,
    "Mish": _mish,
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _hard_swish,
    "ThresholdedRelu": _thresholded_relu,
    "Shrink": _shrink,
    "PRelu": _prelu,
    "Hardmax": _hardmax,
    "DepthToSpace": _depth_to_space,
    "SpaceToDepth": _space_to_depth,
    "ConvTranspose": _conv_transpose,  # no ConvTransposeGrad kernel on CPU
    "Resize": _resize,  # no ResizeGrad kernel on CPU
    "GridSample": _grid_sample,
    "AffineGrid": _affine_grid,
    "DFT": _dft,
    "STFT": _stft,
    "ReverseSequence": _reverse_sequence,
    "MaxUnpool": _max_unpool,
    "Col2Im": _col2im,
    "Det": _det,
    "CenterCropPad": _center_crop_pad,
    "RNN": _recurrent,
    "GRU": _recurrent,
    "LSTM": _recurrent,
    "Pad": _pad,  # the builder's gradient takes constant mode only
    # wrong gradients
    "Dropout": _dropout,
    "Gelu": _gelu,
    "Where": _where,
    "Split": _split,
    "Clip": _clip,
    "OneHot": _one_hot,
}


def apply_rewrites(model: onnx.ModelProto, w: GraphWriter, types: dict) -> None:
    """Rewrites, in place, every node of the main graph that needs it.

    Args:
        model: the (onnxgrad-owned) model.
        w: a writer on its graph.
        types: ``{tensor: (elem_type, shape)}`` from shape inference.
    """
    graph = model.graph
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        rewrite = _REWRITES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        w.nodes = []
        if rewrite is not None and rewrite(node, w, types):
            new_nodes.extend(w.nodes)
        else:
            new_nodes.append(node)
    w.nodes = graph.node
    del graph.node[:]
    graph.node.extend(new_nodes)
