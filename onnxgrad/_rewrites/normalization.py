"""Normalizations as their formulas: batch (both modes), instance, layer, group, Lp, MVN and LRN."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxgrad._rewrites._common import attr, const_like, is_float, moments, rank_of, read_names, static_shape
from onnxgrad._rewrites._registry import NO_GRADIENT, WRONG_GRADIENT, register


@register("BatchNormalization", why=NO_GRADIENT, note="inference and training mode")
def _batch_norm(node, gw, types) -> bool:
    training = attr(node, "training_mode", 0)
    if training:
        return _batch_norm_training(node, gw, types)
    if len([o for o in node.output if o]) > 1:
        return False
    x, scale, bias, mean, var = node.input[:5]
    rank = types.rank(x) or 0
    if rank < 2:
        return False
    eps = gw.constant(attr(node, "epsilon", 1e-5), helper.tensor_dtype_to_np_dtype(types[x][0]))
    inv_std = gw.op("Reciprocal", gw.op("Sqrt", gw.op("Add", var, eps)))
    factor = gw.op("Mul", scale, inv_std)
    shift = gw.op("Sub", bias, gw.op("Mul", mean, factor))
    # Per-channel vectors [C] broadcast against [N, C, d1, ...] as [C, 1, ...].
    channel_shape = gw.constant([-1] + [1] * (rank - 2), np.int64)
    factor = gw.op("Reshape", factor, channel_shape)
    shift = gw.op("Reshape", shift, channel_shape)
    gw.node("Add", [gw.op("Mul", x, factor), shift], node.output[:1])
    return True


def _batch_norm_training(node, gw, types) -> bool:
    """Training-mode BatchNormalization as its formula (batch statistics; the running statistics
    outputs follow the spec): the builder has no gradient for it."""
    x, scale, bias, mean, var = node.input[:5]
    rank = rank_of(types, x)
    if rank is None or rank < 2 or not is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    axes = [0, *range(2, rank)]
    channel_shape = gw.constant([-1] + [1] * (rank - 2), np.int64)
    batch_mean, centered, batch_var = moments(gw, x, axes)
    eps = gw.constant(np.array(attr(node, "epsilon", 1e-5), dtype))
    normalized = gw.op("Div", centered, gw.op("Sqrt", gw.op("Add", batch_var, eps)))
    y = gw.op("Add", gw.op("Mul", normalized, gw.op("Reshape", scale, channel_shape)),
             gw.op("Reshape", bias, channel_shape))
    gw.node("Identity", [y], [node.output[0]])
    momentum = float(attr(node, "momentum", 0.9))
    keep, take = gw.constant(np.array(momentum, dtype)), gw.constant(np.array(1.0 - momentum, dtype))
    for out, running, current in zip(node.output[1:3], (mean, var), (batch_mean, batch_var)):
        if out:
            flat = gw.op("Reshape", current, gw.constant(np.array([-1], np.int64)))
            gw.node("Add", [gw.op("Mul", running, keep), gw.op("Mul", flat, take)], [out])
    return True


@register("InstanceNormalization", why=NO_GRADIENT)
def _instance_norm(node, gw, types) -> bool:
    x, scale, bias = node.input[:3]
    rank = rank_of(types, x)
    if rank is None or rank < 3:
        return False
    axes = list(range(2, rank))
    centered = gw.op("Sub", x, gw.reduce("ReduceMean", x, axes, True))
    variance = gw.reduce("ReduceMean", gw.op("Mul", centered, gw.op("Identity", centered)), axes, True)
    eps = const_like(gw, attr(node, "epsilon", 1e-5), x, types)
    normalized = gw.op("Div", centered, gw.op("Sqrt", gw.op("Add", variance, eps)))
    channel_shape = gw.constant([-1] + [1] * (rank - 2), np.int64)
    scaled = gw.op("Mul", normalized, gw.op("Reshape", scale, channel_shape))
    gw.node("Add", [scaled, gw.op("Reshape", bias, channel_shape)], node.output)
    return True


@register("LpNormalization", why=NO_GRADIENT)
def _lp_norm(node, gw, types) -> bool:
    x = node.input[0]
    axis, p = attr(node, "axis", -1), attr(node, "p", 2)
    if p == 2:
        norm = gw.reduce("ReduceL2", x, [axis], True)
    elif p == 1:
        norm = gw.reduce("ReduceSum", gw.op("Abs", x), [axis], True)
    else:
        return False
    gw.node("Div", [x, norm], node.output)
    return True


@register(
    "LayerNormalization", why=WRONG_GRADIENT,
    note="without a bias the builder assumes three inputs; with Mean or InvStdDev read it differentiates Y only",
)
def _layer_norm(node, gw, types) -> bool:
    read = read_names(gw)
    if any(out and out in read for out in node.output[1:]):
        return _layer_norm_with_statistics(node, gw, types)
    if len(node.input) > 2 and node.input[2]:
        return False
    x, scale = node.input[:2]
    # A zero bias shaped like the scale; Shape stops the gradient.
    zero = numpy_helper.from_array(np.zeros([1], helper.tensor_dtype_to_np_dtype(types.elem(x) or onnx.TensorProto.FLOAT)))
    bias = gw.op("ConstantOfShape", gw.op("Shape", scale), value=zero)
    rewritten = onnx.NodeProto()
    rewritten.CopyFrom(node)
    del rewritten.input[:]
    rewritten.input.extend([x, scale, bias])
    gw.nodes.append(rewritten)
    return True


def _layer_norm_with_statistics(node, gw, types) -> bool:
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
    xc = gw.op("Cast", x, to=compute) if compute != elem else x
    epsilon = gw.constant(attr(node, "epsilon", 1e-5), helper.tensor_dtype_to_np_dtype(compute))
    mean, centered, variance = moments(gw, xc, axes)
    inv_std = gw.op("Reciprocal", gw.op("Sqrt", gw.op("Add", variance, epsilon)))
    normalized = gw.op("Mul", centered, inv_std)
    if compute != elem:
        normalized = gw.op("Cast", normalized, to=elem)
    y = gw.op("Mul", normalized, scale)
    if len(node.input) > 2 and node.input[2]:
        y = gw.op("Add", y, node.input[2])
    outputs = list(node.output) + [""] * (3 - len(node.output))
    gw.node("Identity", [y], [outputs[0]])
    for value, out in ((mean, outputs[1]), (inv_std, outputs[2])):
        if out:
            gw.node("Identity", [value], [out])
    return True


@register("GroupNormalization", why=NO_GRADIENT)
def _group_norm(node, gw, types) -> bool:
    """GroupNormalization as its formula: no gradient in the builder."""
    x, scale, bias = node.input[:3]
    shape = static_shape(types, x)
    if shape is None or len(shape) < 2 or not is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    groups = int(attr(node, "num_groups"))
    n, channels = shape[0], shape[1]
    grouped = gw.op("Reshape", x, gw.constant(np.array([n, groups, -1], np.int64)))
    _, centered, variance = moments(gw, grouped, [2])
    eps = gw.constant(np.array(attr(node, "epsilon", 1e-5), dtype))
    normalized = gw.op("Reshape", gw.op("Div", centered, gw.op("Sqrt", gw.op("Add", variance, eps))),
                      gw.constant(np.array(shape, np.int64)))
    per = static_shape(types, scale)
    # Opset 18 scales per group, opset 21 per channel.
    if per is not None and per[0] == groups and groups != channels:
        repeat = gw.constant(np.repeat(np.arange(groups), channels // groups).astype(np.int64))
        scale, bias = gw.op("Gather", scale, repeat), gw.op("Gather", bias, repeat)
    channel_shape = gw.constant(np.array([-1] + [1] * (len(shape) - 2), np.int64))
    gw.node("Add", [gw.op("Mul", normalized, gw.op("Reshape", scale, channel_shape)),
                   gw.op("Reshape", bias, channel_shape)], node.output[:1])
    return True


@register("MeanVarianceNormalization", why=NO_GRADIENT)
def _mean_variance_norm(node, gw, types) -> bool:
    """MeanVarianceNormalization as its function body: (x - mean) / (sqrt(E[x^2] - mean^2) + 1e-9)."""
    x = node.input[0]
    if not is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    axes = list(attr(node, "axes", [0, 2, 3]))
    mean = gw.reduce("ReduceMean", x, axes, True)
    mean_of_square = gw.reduce("ReduceMean", gw.op("Mul", x, gw.op("Identity", x)), axes, True)
    variance = gw.op("Sub", mean_of_square, gw.op("Mul", mean, gw.op("Identity", mean)))
    std = gw.op("Add", gw.op("Sqrt", variance), gw.constant(np.array(1e-9, dtype)))
    gw.node("Div", [gw.op("Sub", x, mean), std], node.output)
    return True


@register("LRN", why=NO_GRADIENT)
def _lrn(node, gw, types) -> bool:
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
    padded = gw.op("Pad", gw.op("Mul", x, gw.op("Identity", x)), gw.constant(np.array(pads, np.int64)))
    channels = shape[1]
    window = [
        gw.op("Slice", padded, gw.constant(np.array([k], np.int64)), gw.constant(np.array([k + channels], np.int64)),
             gw.constant(np.array([1], np.int64)))
        for k in range(size)
    ]
    total = window[0]
    for part in window[1:]:
        total = gw.op("Add", total, part)
    scaled = gw.op("Mul", total, gw.constant(np.array(alpha / size, dtype)))
    scaled = gw.op("Add", gw.constant(np.array(bias, dtype)), scaled)
    gw.node("Div", [x, gw.op("Pow", scaled, gw.constant(np.array(beta, dtype)))], node.output)
    return True
