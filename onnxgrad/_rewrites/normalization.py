"""Normalizations as their formulas: batch (both modes), instance, layer, group, Lp, MVN and LRN."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxgrad._rewrites._common import attr, const_like, is_float, moments, rank_of, read_names, static_shape
from onnxgrad._rewrites._registry import NO_GRADIENT, WRONG_GRADIENT, register


@register("BatchNormalization", why=NO_GRADIENT, note="inference and training mode")
def _batch_norm(node, w, types) -> bool:
    training = attr(node, "training_mode", 0)
    if training:
        return _batch_norm_training(node, w, types)
    if len([o for o in node.output if o]) > 1:
        return False
    x, scale, bias, mean, var = node.input[:5]
    rank = types.rank(x) or 0
    if rank < 2:
        return False
    eps = w.constant(attr(node, "epsilon", 1e-5), helper.tensor_dtype_to_np_dtype(types[x][0]))
    inv_std = w.op("Reciprocal", w.op("Sqrt", w.op("Add", var, eps)))
    factor = w.op("Mul", scale, inv_std)
    shift = w.op("Sub", bias, w.op("Mul", mean, factor))
    # Per-channel vectors [C] broadcast against [N, C, d1, ...] as [C, 1, ...].
    channel_shape = w.constant([-1] + [1] * (rank - 2), np.int64)
    factor = w.op("Reshape", factor, channel_shape)
    shift = w.op("Reshape", shift, channel_shape)
    w.node("Add", [w.op("Mul", x, factor), shift], node.output[:1])
    return True


def _batch_norm_training(node, w, types) -> bool:
    """Training-mode BatchNormalization as its formula (batch statistics; the running statistics
    outputs follow the spec): the builder has no gradient for it."""
    x, scale, bias, mean, var = node.input[:5]
    rank = rank_of(types, x)
    if rank is None or rank < 2 or not is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    axes = [0, *range(2, rank)]
    channel_shape = w.constant([-1] + [1] * (rank - 2), np.int64)
    batch_mean, centered, batch_var = moments(w, x, axes)
    eps = w.constant(np.array(attr(node, "epsilon", 1e-5), dtype))
    normalized = w.op("Div", centered, w.op("Sqrt", w.op("Add", batch_var, eps)))
    y = w.op("Add", w.op("Mul", normalized, w.op("Reshape", scale, channel_shape)),
             w.op("Reshape", bias, channel_shape))
    w.node("Identity", [y], [node.output[0]])
    momentum = float(attr(node, "momentum", 0.9))
    keep, take = w.constant(np.array(momentum, dtype)), w.constant(np.array(1.0 - momentum, dtype))
    for out, running, current in zip(node.output[1:3], (mean, var), (batch_mean, batch_var)):
        if out:
            flat = w.op("Reshape", current, w.constant(np.array([-1], np.int64)))
            w.node("Add", [w.op("Mul", running, keep), w.op("Mul", flat, take)], [out])
    return True


@register("InstanceNormalization", why=NO_GRADIENT)
def _instance_norm(node, w, types) -> bool:
    x, scale, bias = node.input[:3]
    rank = rank_of(types, x)
    if rank is None or rank < 3:
        return False
    axes = list(range(2, rank))
    centered = w.op("Sub", x, w.reduce("ReduceMean", x, axes, True))
    variance = w.reduce("ReduceMean", w.op("Mul", centered, w.op("Identity", centered)), axes, True)
    eps = const_like(w, attr(node, "epsilon", 1e-5), x, types)
    normalized = w.op("Div", centered, w.op("Sqrt", w.op("Add", variance, eps)))
    channel_shape = w.constant([-1] + [1] * (rank - 2), np.int64)
    scaled = w.op("Mul", normalized, w.op("Reshape", scale, channel_shape))
    w.node("Add", [scaled, w.op("Reshape", bias, channel_shape)], node.output)
    return True


@register("LpNormalization", why=NO_GRADIENT)
def _lp_norm(node, w, types) -> bool:
    x = node.input[0]
    axis, p = attr(node, "axis", -1), attr(node, "p", 2)
    if p == 2:
        norm = w.reduce("ReduceL2", x, [axis], True)
    elif p == 1:
        norm = w.reduce("ReduceSum", w.op("Abs", x), [axis], True)
    else:
        return False
    w.node("Div", [x, norm], node.output)
    return True


@register(
    "LayerNormalization", why=WRONG_GRADIENT,
    note="without a bias the builder assumes three inputs; with Mean or InvStdDev read it differentiates Y only",
)
def _layer_norm(node, w, types) -> bool:
    read = read_names(w)
    if any(out and out in read for out in node.output[1:]):
        return _layer_norm_with_statistics(node, w, types)
    if len(node.input) > 2 and node.input[2]:
        return False
    x, scale = node.input[:2]
    # A zero bias shaped like the scale; Shape stops the gradient.
    zero = numpy_helper.from_array(np.zeros([1], helper.tensor_dtype_to_np_dtype(types.elem(x) or onnx.TensorProto.FLOAT)))
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
    rank = rank_of(types, x)
    if rank is None:
        from onnxgrad.errors import UnsupportedGradientError

        raise UnsupportedGradientError(
            f"LayerNormalization node {node.name!r} has its Mean or InvStdDev output read, whose gradient needs "
            f"the rank of {x!r}, which is not known: give the input a static shape.",
            op_type="LayerNormalization", node=node.name,
        )
    axis = attr(node, "axis", -1) % rank
    axes = list(range(axis, rank))
    elem = types.elem(x) or onnx.TensorProto.FLOAT
    stash = attr(node, "stash_type", onnx.TensorProto.FLOAT)
    # The statistics are computed (and returned) in stash_type; Y comes back in x's type.
    compute = stash if elem in (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16) else elem
    xc = w.op("Cast", x, to=compute) if compute != elem else x
    epsilon = w.constant(attr(node, "epsilon", 1e-5), helper.tensor_dtype_to_np_dtype(compute))
    mean, centered, variance = moments(w, xc, axes)
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


@register("GroupNormalization", why=NO_GRADIENT)
def _group_norm(node, w, types) -> bool:
    """GroupNormalization as its formula: no gradient in the builder."""
    x, scale, bias = node.input[:3]
    shape = static_shape(types, x)
    if shape is None or len(shape) < 2 or not is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    groups = int(attr(node, "num_groups"))
    n, channels = shape[0], shape[1]
    grouped = w.op("Reshape", x, w.constant(np.array([n, groups, -1], np.int64)))
    _, centered, variance = moments(w, grouped, [2])
    eps = w.constant(np.array(attr(node, "epsilon", 1e-5), dtype))
    normalized = w.op("Reshape", w.op("Div", centered, w.op("Sqrt", w.op("Add", variance, eps))),
                      w.constant(np.array(shape, np.int64)))
    per = static_shape(types, scale)
    # Opset 18 scales per group, opset 21 per channel.
    if per is not None and per[0] == groups and groups != channels:
        repeat = w.constant(np.repeat(np.arange(groups), channels // groups).astype(np.int64))
        scale, bias = w.op("Gather", scale, repeat), w.op("Gather", bias, repeat)
    channel_shape = w.constant(np.array([-1] + [1] * (len(shape) - 2), np.int64))
    w.node("Add", [w.op("Mul", normalized, w.op("Reshape", scale, channel_shape)),
                   w.op("Reshape", bias, channel_shape)], node.output[:1])
    return True


@register("MeanVarianceNormalization", why=NO_GRADIENT)
def _mean_variance_norm(node, w, types) -> bool:
    """MeanVarianceNormalization as its function body: (x - mean) / (sqrt(E[x^2] - mean^2) + 1e-9)."""
    x = node.input[0]
    if not is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    axes = list(attr(node, "axes", [0, 2, 3]))
    mean = w.reduce("ReduceMean", x, axes, True)
    mean_of_square = w.reduce("ReduceMean", w.op("Mul", x, w.op("Identity", x)), axes, True)
    variance = w.op("Sub", mean_of_square, w.op("Mul", mean, w.op("Identity", mean)))
    std = w.op("Add", w.op("Sqrt", variance), w.constant(np.array(1e-9, dtype)))
    w.node("Div", [w.op("Sub", x, mean), std], node.output)
    return True


@register("LRN", why=NO_GRADIENT)
def _lrn(node, w, types) -> bool:
    """LRN as its formula: x / (bias + alpha / size * (sum of squares over the channel window))^beta."""
    x = node.input[0]
    shape = static_shape(types, x)
    if shape is None or len(shape) < 2 or not is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    size = int(attr(node, "size"))
    alpha, beta, bias = (float(attr(node, k, d)) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
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
