"""Convolutions and pools: explicit pads for auto_pad, ConvTranspose as a Conv, LpPool."""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnxgrad._rewrites._common import attr, is_float, static_shape
from onnxgrad._rewrites._registry import NO_GRADIENT, NO_KERNEL, WRONG_GRADIENT, register


@register(
    "Conv", "MaxPool", "AveragePool", why=WRONG_GRADIENT,
    note="auto_pad SAME_*/VALID: ConvGrad ignores auto_pad; written as explicit pads",
)
def _explicit_pads(node, gw, types) -> bool:
    """auto_pad SAME_*/VALID as explicit pads: ORT's ConvGrad ignores auto_pad (wrong gradients)."""
    mode = attr(node, "auto_pad", "NOTSET")
    if mode == "NOTSET":
        return False
    shape = types.shape(node.input[0])
    if node.op_type == "Conv":
        kernel = attr(node, "kernel_shape") or (types.shape(node.input[1]) or ())[2:]
    else:
        kernel = attr(node, "kernel_shape")
    if shape is None or None in shape or not kernel or None in kernel:
        return False
    spatial = shape[2:]
    strides = attr(node, "strides") or [1] * len(spatial)
    dilations = attr(node, "dilations") or [1] * len(spatial)
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
    gw.node(node.op_type, list(node.input), list(node.output), pads=begins + ends, **attrs)
    return True


@register("ConvTranspose", why=NO_KERNEL)
def _conv_transpose(node, gw, types) -> bool:
    # ConvTranspose(x, W) = Conv(x with stride-1 zeros between elements, W flipped with in/out channels
    # swapped per group): the CPU build has no ConvTransposeGrad kernel.
    x, weight = node.input[:2]
    shape, kernel = static_shape(types, x), static_shape(types, weight)
    if shape is None or kernel is None or attr(node, "auto_pad", "NOTSET") != "NOTSET" or attr(node, "output_shape"):
        return False
    spatial = len(shape) - 2
    strides = attr(node, "strides") or [1] * spatial
    dilations = attr(node, "dilations") or [1] * spatial
    pads = attr(node, "pads") or [0] * (2 * spatial)
    output_padding = attr(node, "output_padding") or [0] * spatial
    group = attr(node, "group", 1)
    sizes = kernel[2:]
    extents = [d * (k - 1) for d, k in zip(dilations, sizes)]
    begins = [e - p for e, p in zip(extents, pads[:spatial])]
    ends = [e - p + o for e, p, o in zip(extents, pads[spatial:], output_padding)]
    if min(begins + ends) < 0:
        return False
    if any(s > 1 for s in strides):
        n, c, dims = shape[0], shape[1], shape[2:]
        interleaved = [n, c] + [v for d in dims for v in (d, 1)]
        padded = gw.op("Pad", gw.op("Reshape", x, gw.constant(interleaved, np.int64)),
                      gw.constant([0] * len(interleaved) + [0, 0] + [v for s in strides for v in (0, s - 1)], np.int64))
        spread = gw.op("Reshape", padded, gw.constant([n, c] + [d * s for d, s in zip(dims, strides)], np.int64))
        axes = list(range(2, 2 + spatial))
        x = gw.op("Slice", spread, gw.constant([0] * spatial, np.int64),
                 gw.constant([(d - 1) * s + 1 for d, s in zip(dims, strides)], np.int64), gw.constant(axes, np.int64))
    c_in, c_out_group = kernel[0], kernel[1]
    grouped = gw.op("Reshape", weight, gw.constant([group, c_in // group, c_out_group, *sizes], np.int64))
    swapped = gw.op("Transpose", grouped, perm=[0, 2, 1, *range(3, 3 + spatial)])
    regrouped = gw.op("Reshape", swapped, gw.constant([group * c_out_group, c_in // group, *sizes], np.int64))
    flipped = regrouped
    for axis, size in enumerate(sizes, start=2):  # Gather, not a step -1 Slice: SliceGrad rejects those
        flipped = gw.op("Gather", flipped, gw.constant(np.arange(size - 1, -1, -1, dtype=np.int64)), axis=axis)
    inputs = [x, flipped] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
    gw.node("Conv", inputs, node.output, dilations=list(dilations), group=group, pads=begins + ends)
    return True


@register("LpPool", why=NO_GRADIENT)
def _lp_pool(node, gw, types) -> bool:
    """LpPool as (sum over the window of |x|^p)^(1/p), the sum an AveragePool counting the padding."""
    x = node.input[0]
    shape = static_shape(types, x)
    if shape is None or not is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    p = float(attr(node, "p", 2))
    kernel = list(attr(node, "kernel_shape"))
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "p"}
    attrs["count_include_pad"] = 1
    powered = gw.op("Pow", gw.op("Abs", x), gw.constant(np.array(p, dtype)))
    mean = gw.op("AveragePool", powered, **attrs)
    total = gw.op("Mul", mean, gw.constant(np.array(float(np.prod(kernel)), dtype)))
    gw.node("Pow", [total, gw.constant(np.array(1.0 / p, dtype))], node.output)
    return True
