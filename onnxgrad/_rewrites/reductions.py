"""Reductions the builder has no gradient for (or, for ReduceL2, a wrong one)."""

from __future__ import annotations

import numpy as np
import onnx

from onnxgrad._graph import GraphWriter
from onnxgrad._rewrites._common import attr, is_float, rank_of, reduction_axes, static_shape
from onnxgrad._rewrites._registry import NO_GRADIENT, WRONG_GRADIENT, register


@register("ReduceSumSquare", why=NO_GRADIENT)
def _reduce_sum_square(node, gw, types) -> bool:
    x = node.input[0]
    square = gw.op("Mul", x, gw.op("Identity", x))
    keepdims = attr(node, "keepdims", 1)
    axes = attr(node, "axes")
    if len(node.input) > 1 and node.input[1]:  # opset 18: axes as an input
        gw.node("ReduceSum", [square, node.input[1]], node.output, keepdims=keepdims,
               noop_with_empty_axes=attr(node, "noop_with_empty_axes", 0))
    elif axes is not None:
        out = gw.reduce("ReduceSum", square, axes, bool(keepdims))
        gw.node("Identity", [out], node.output)
    else:
        gw.node("ReduceSum", [square], node.output, keepdims=keepdims)
    return True


@register("ReduceL2", why=WRONG_GRADIENT, note="ignores axes given as an input")
def _reduce_l2(node, gw, types) -> bool:
    # ORT's ReduceL2 gradient ignores axes given as an input (opset 18).
    square_sum = onnx.NodeProto()
    square_sum.CopyFrom(node)
    square_sum.op_type = "ReduceSumSquare"
    del square_sum.output[:]
    square_sum.output.append(gw.fresh("sum_square"))
    _reduce_sum_square(square_sum, gw, types)
    gw.node("Sqrt", [square_sum.output[0]], node.output)
    return True


@register("ReduceL1", why=NO_GRADIENT)
def _reduce_l1(node, gw, types) -> bool:
    reduction = reduction_axes(node, gw)
    if reduction is None:
        return False
    axes, keepdims = reduction
    gw.node("Identity", [gw.reduce("ReduceSum", gw.op("Abs", node.input[0]), axes, keepdims)], node.output)
    return True


@register("ReduceLogSum", why=NO_GRADIENT)
def _reduce_log_sum(node, gw, types) -> bool:
    reduction = reduction_axes(node, gw)
    if reduction is None:
        return False
    axes, keepdims = reduction
    gw.node("Log", [gw.reduce("ReduceSum", node.input[0], axes, keepdims)], node.output)
    return True


@register("ReduceProd", why=NO_GRADIENT, note="a tree of Muls, exact at zeros")
def _reduce_prod(node, gw, types) -> bool:
    """ReduceProd as a tree of Muls over the reduced elements (a static count), exact where x
    holds zeros: each element's gradient is the product of the others, never prod / x."""
    x = node.input[0]
    rank = rank_of(types, x)
    if not is_float(types, x) or rank is None:
        return False
    has_axes = (len(node.input) > 1 and node.input[1]) or attr(node, "axes")
    if not has_axes and attr(node, "noop_with_empty_axes", 0):
        gw.node("Identity", [x], node.output)
        return True
    reduction = reduction_axes(node, gw)
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
    flat = gw.op("Transpose", x, perm=kept + axes) if kept + axes != list(range(rank)) else x
    flat = gw.op("Reshape", flat, gw.constant([0] * len(kept) + [count], np.int64))
    last = gw.constant([len(kept)], np.int64)

    def part(t: str, start: int, stop: int) -> str:
        return gw.op("Slice", t, gw.constant([start], np.int64), gw.constant([stop], np.int64), last)

    while count > 1:  # halve: pairwise products, an odd element carried over
        half = count // 2
        product = gw.op("Mul", part(flat, 0, half), part(flat, half, 2 * half))
        if count % 2:
            product = gw.op("Concat", product, part(flat, count - 1, count), axis=len(kept))
        flat, count = product, half + count % 2
    out = gw.squeeze(flat, [len(kept)])
    if keepdims:
        out = gw.unsqueeze(out, axes)
    gw.node("Identity", [out], node.output)
    return True


def _max_over(gw: GraphWriter, x: str, axes: list[int], largest: bool) -> str:
    # The max (min) over each axis in turn, keeping the axes: TopK has a gradient, ReduceMax none.
    k = gw.constant([1], np.int64)
    for axis in axes:
        x = gw.node("TopK", [x, k], 2, axis=axis, largest=int(largest))[0]
    return x


@register("ReduceMax", "ReduceMin", why=NO_GRADIENT)
def _reduce_extreme(node, gw, types) -> bool:
    x = node.input[0]
    rank = rank_of(types, x)
    reduction = reduction_axes(node, gw)
    if not is_float(types, x) or not rank or reduction is None:
        return False
    axes, keepdims = reduction
    axes = sorted({a % rank for a in axes}) if axes is not None else list(range(rank))
    out = _max_over(gw, x, axes, node.op_type == "ReduceMax")
    if not keepdims:
        out = gw.squeeze(out, axes)
    gw.node("Identity", [out], node.output)
    return True


@register("GlobalMaxPool", why=NO_GRADIENT)
def _global_max_pool(node, gw, types) -> bool:
    x = node.input[0]
    rank = rank_of(types, x)
    if rank is None or rank < 3:
        return False
    gw.node("Identity", [_max_over(gw, x, list(range(2, rank)), True)], node.output)
    return True


@register("Hardmax", why=NO_GRADIENT)
def _hardmax(node, gw, types) -> bool:
    # One at the first maximum along `axis`: a piecewise constant function, so zero gradients.
    x = node.input[0]
    shape = static_shape(types, x)
    if shape is None or not shape or gw.opset < 13:  # before 13, Hardmax flattens to 2-D
        return False
    axis = attr(node, "axis", -1) % len(shape)
    index = gw.op("ArgMax", x, axis=axis, keepdims=1)
    positions = np.arange(shape[axis], dtype=np.int64).reshape([shape[axis]] + [1] * (len(shape) - 1 - axis))
    gw.node("Cast", [gw.op("Equal", index, gw.constant(positions))], node.output, to=types[x][0])
    return True
