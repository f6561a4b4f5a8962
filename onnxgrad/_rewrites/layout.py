"""Data movement: depth/space, crops, pads, scatters and Split."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxgrad._graph import TensorType, TypeTable
from onnxgrad._rewrites._common import attr, constant, is_float, rank_of, static_shape
from onnxgrad._rewrites._registry import NO_GRADIENT, WRONG_GRADIENT, register
from onnxgrad._rewrites.convolution import _conv_transpose


@register("DepthToSpace", why=NO_GRADIENT)
def _depth_to_space(node, gw, types) -> bool:
    shape = static_shape(types, node.input[0])
    if shape is None or len(shape) != 4:
        return False
    n, c, h, wd = shape
    b = attr(node, "blocksize")
    if attr(node, "mode", "DCR") == "DCR":
        split, perm = [n, b, b, c // (b * b), h, wd], [0, 3, 4, 1, 5, 2]
    else:  # CRD
        split, perm = [n, c // (b * b), b, b, h, wd], [0, 1, 4, 2, 5, 3]
    blocks = gw.op("Transpose", gw.op("Reshape", node.input[0], gw.constant(split, np.int64)), perm=perm)
    gw.node("Reshape", [blocks, gw.constant([n, c // (b * b), h * b, wd * b], np.int64)], node.output)
    return True


@register("SpaceToDepth", why=NO_GRADIENT)
def _space_to_depth(node, gw, types) -> bool:
    shape = static_shape(types, node.input[0])
    if shape is None or len(shape) != 4:
        return False
    n, c, h, wd = shape
    b = attr(node, "blocksize")
    split = gw.op("Reshape", node.input[0], gw.constant([n, c, h // b, b, wd // b, b], np.int64))
    blocks = gw.op("Transpose", split, perm=[0, 3, 5, 1, 2, 4])
    gw.node("Reshape", [blocks, gw.constant([n, c * b * b, h // b, wd // b], np.int64)], node.output)
    return True


@register("CenterCropPad", why=NO_GRADIENT)
def _center_crop_pad(node, gw, types) -> bool:
    """CenterCropPad as a Slice (crop) and a Pad with zeros (pad) per axis, for a static input shape
    and a constant target shape: no gradient in the builder."""
    x = node.input[0]
    shape, target = static_shape(types, x), constant(gw, node.input[1])
    if shape is None or target is None or not is_float(types, x):
        return False
    rank = len(shape)
    axes = [int(a) % rank for a in attr(node, "axes", None) or range(rank)]
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
        out = gw.op("Slice", out, gw.constant(begins, np.int64), gw.constant(ends, np.int64))
    if any(pads):
        out = gw.op("Pad", out, gw.constant(pads, np.int64))
    gw.node("Identity", [out], node.output)
    return True


@register("ReverseSequence", why=NO_GRADIENT)
def _reverse_sequence(node, gw, types) -> bool:
    """ReverseSequence as GatherElements with a constant index (static shape, constant
    sequence_lens): no gradient in the builder."""
    x = node.input[0]
    shape, lengths = static_shape(types, x), constant(gw, node.input[1])
    if shape is None or lengths is None or not is_float(types, x):
        return False
    time, batch = int(attr(node, "time_axis", 0)), int(attr(node, "batch_axis", 1))
    steps = np.arange(shape[time]).reshape([-1 if a == time else 1 for a in range(len(shape))])
    ends = lengths.astype(np.int64).reshape([-1 if a == batch else 1 for a in range(len(shape))])
    index = np.broadcast_to(np.where(steps < ends, ends - 1 - steps, steps), shape).astype(np.int64)
    gw.node("GatherElements", [x, gw.constant(index)], node.output, axis=time)
    return True


@register("MaxUnpool", why=NO_GRADIENT, note="constant sizes")
def _max_unpool(node, gw, types) -> bool:
    """MaxUnpool as ScatterElements of X into zeros at its (flat) indices (static shapes; a
    constant output_shape if given): no gradient in the builder."""
    x, indices = node.input[:2]
    shape = static_shape(types, x)
    if shape is None or not is_float(types, x):
        return False
    if len(node.input) > 2 and node.input[2]:
        given = constant(gw, node.input[2])
        if given is None:
            return False
        out_shape = [int(d) for d in given]
    else:
        kernel, rank = list(attr(node, "kernel_shape")), len(shape) - 2
        strides = list(attr(node, "strides") or [1] * rank)
        pads = list(attr(node, "pads") or [0] * (2 * rank))
        out_shape = list(shape[:2]) + [(d - 1) * s + k - pads[i] - pads[rank + i]
                                 for i, (d, s, k) in enumerate(zip(shape[2:], strides, kernel))]
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    flat = gw.constant([-1], np.int64)
    zeros = gw.constant(np.zeros(int(np.prod(out_shape)), dtype))
    scattered = gw.op("ScatterElements", zeros, gw.op("Reshape", gw.cast(indices, np.int64), flat),
                     gw.op("Reshape", x, flat), axis=0)
    gw.node("Reshape", [scattered, gw.constant(out_shape, np.int64)], node.output)
    return True


@register("Col2Im", why=NO_GRADIENT, note="constant sizes")
def _col2im(node, gw, types) -> bool:
    """Col2Im as a grouped ConvTranspose with one-hot kernels (one per block position), itself
    rewritten into a Conv: static shapes, constant image_shape and block_shape."""
    x = node.input[0]
    shape = static_shape(types, x)
    image_value, block_value = constant(gw, node.input[1]), constant(gw, node.input[2])
    if shape is None or image_value is None or block_value is None or not is_float(types, x):
        return False
    image, block = [int(d) for d in image_value], [int(d) for d in block_value]
    rank, positions = len(image), int(np.prod(block))
    dilations = list(attr(node, "dilations") or [1] * rank)
    strides = list(attr(node, "strides") or [1] * rank)
    pads = list(attr(node, "pads") or [0] * (2 * rank))
    counts = [(h + pads[i] + pads[rank + i] - d * (k - 1) - 1) // s + 1
              for i, (h, k, d, s) in enumerate(zip(image, block, dilations, strides))]
    n, channels = shape[0], shape[1] // positions
    if int(np.prod(counts)) != shape[2]:
        return False
    elem = types[x][0]
    blocks = gw.op("Reshape", x, gw.constant([n, channels * positions, *counts], np.int64))
    kernel = np.zeros((channels * positions, 1, *block), helper.tensor_dtype_to_np_dtype(elem))
    for c in range(channels):
        for j in range(positions):
            kernel[(c * positions + j, 0, *np.unravel_index(j, block))] = 1.0
    weight = gw.constant(kernel)
    extra = [h - ((m - 1) * s + d * (k - 1) + 1 - pads[i] - pads[rank + i])
             for i, (h, m, k, d, s) in enumerate(zip(image, counts, block, dilations, strides))]
    transposed = helper.make_node("ConvTranspose", [blocks, weight], list(node.output[:1]), group=channels,
                                  strides=strides, dilations=dilations, pads=pads, output_padding=extra)
    known = TypeTable({**types, blocks: TensorType(elem, (n, channels * positions, *counts)),
                       weight: TensorType(elem, kernel.shape)})
    return _conv_transpose(transposed, gw, known)


@register("Split", why=WRONG_GRADIENT, note="the wrong shape when an output gets no gradient")
def _split(node, gw, types) -> bool:
    # The builder's Split gradient concatenates only the outputs that have gradients: Slices instead.
    x = node.input[0]
    rank = rank_of(types, x)
    if not is_float(types, x) or not rank or gw.opset < 10:
        return False
    axis = attr(node, "axis", 0) % rank
    if len(node.input) > 1 and node.input[1]:
        given = constant(gw, node.input[1])
        if given is None:
            return False
        sizes = [int(s) for s in given.reshape(-1)]
    elif attr(node, "split"):
        sizes = list(attr(node, "split"))
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
            bounds = [gw.constant([start], np.int64), gw.constant([start + size], np.int64)]
            gw.node("Slice", [x, *bounds, gw.constant([axis], np.int64)], [output])
        start += size
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


def _pad_with_tensor_value(node, gw, types) -> bool:
    # The builder's Pad gradient gives a non-constant pad value none: pad with 0, then add
    # value times a mask of the padding (the mask comes from Shape, which stops gradients).
    if len(node.input) < 3 or not node.input[2] or constant(gw, node.input[2]) is not None:
        return False
    x, value = node.input[0], node.input[2]
    if not is_float(types, x):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    rest = list(node.input[3:])  # opset 18 axes
    padded = gw.op("Pad", *[x, node.input[1], "", *rest])
    zeros = gw.op("ConstantOfShape", gw.op("Shape", x), value=numpy_helper.from_array(np.zeros([1], dtype)))
    mask = gw.op("Pad", *[zeros, node.input[1], gw.constant(np.array(1, dtype)), *rest])
    gw.node("Add", [padded, gw.op("Mul", mask, value)], node.output)
    return True


def _full_rank_pads(node, gw, types) -> onnx.NodeProto | None:
    """The Pad with opset 18's ``axes`` folded into full-rank pads (the builder's gradient reads
    pads as full-rank); None when the rank is unknown."""
    rank = rank_of(types, node.input[0])
    if rank is None:
        return None
    pads, axes = constant(gw, node.input[1]), constant(gw, node.input[3])
    if pads is not None and axes is not None:
        full = np.zeros(2 * rank, np.int64)
        for k, axis in enumerate(int(a) % rank for a in axes.reshape(-1)):
            full[axis], full[rank + axis] = pads[k], pads[len(axes) + k]
        full_name = gw.constant(full)
    else:
        axes_name = gw.op("Cast", node.input[3], to=onnx.TensorProto.INT64)
        rank_name = gw.constant(np.array(rank, np.int64))
        positive = gw.op("Mod", gw.op("Add", axes_name, rank_name), rank_name)
        indices = gw.op("Concat", positive, gw.op("Add", positive, rank_name), axis=0)
        full_name = gw.op("ScatterElements", gw.constant(np.zeros(2 * rank, np.int64)), indices,
                         gw.op("Cast", node.input[1], to=onnx.TensorProto.INT64), axis=0)
    folded = onnx.NodeProto()
    folded.CopyFrom(node)
    del folded.input[:]
    folded.input.extend([node.input[0], full_name, node.input[2] if len(node.input) > 2 else ""])
    return folded


@register("Pad", why=NO_GRADIENT, note="modes other than constant; a non-constant pad value gets no gradient")
def _pad(node, gw, types) -> bool:
    # The builder's Pad gradient takes constant mode only: a Gather per padded axis copies the same elements.
    folded = None
    if len(node.input) > 3 and node.input[3]:
        folded = node = _full_rank_pads(node, gw, types)
        if node is None:
            return False
    mode = attr(node, "mode", "constant")
    x = node.input[0]
    if mode == "constant":
        if _pad_with_tensor_value(node, gw, types):
            return True
        if folded is not None:
            gw.nodes.append(folded)
            return True
        return False
    shape = static_shape(types, x)
    if shape is None:
        if folded is not None:
            gw.nodes.append(folded)
            return True
        return False
    if len(node.input) > 1:  # opset 11: pads (and, from 18, axes) as inputs
        pads_value = constant(gw, node.input[1])
        axes_value = constant(gw, node.input[3]) if len(node.input) > 3 and node.input[3] else np.arange(len(shape))
        if pads_value is None or axes_value is None:
            return False
        pads, axes = [int(p) for p in pads_value], [int(a) % len(shape) for a in axes_value]
    else:
        pads, axes = list(attr(node, "pads")), list(range(len(shape)))
    out = x
    for axis, begin, end in zip(axes, pads[: len(axes)], pads[len(axes) :]):
        size = shape[axis]
        if begin < 0 or end < 0 or (mode == "reflect" and max(begin, end) >= size):
            return False
        if begin or end:
            sources = [_pad_source(p, size, mode) for p in range(-begin, size + end)]
            out = gw.op("Gather", out, gw.constant(np.array(sources, np.int64)), axis=axis)
    gw.node("Identity", [out], node.output)
    return True
