"""Reductions the builder has no gradient for (or, for ReduceL2, a wrong one)."""

from __future__ import annotations

import numpy as np
import onnx

from onnxgrad._graph import GraphWriter
from onnxgrad._rewrites._common import attr, is_float, rank_of, reduction_axes, static_shape
from onnxgrad._rewrites._registry import NO_GRADIENT, WRONG_GRADIENT, register


@register("ReduceSumSquare", why=NO_GRADIENT)
def _reduce_sum_square(node, w, types) -> bool:
    x = node.input[0]
    square = w.op("Mul", x, w.op("Identity", x))
    keepdims = attr(node, "keepdims", 1)
    axes = attr(node, "axes")
    if len(node.input) > 1 and node.input[1]:  # opset 18: axes as an input
        w.node("ReduceSum", [square, node.input[1]], node.output, keepdims=keepdims,
               noop_with_empty_axes=attr(node, "noop_with_empty_axes", 0))
    elif axes is not None:
        out = w.reduce("ReduceSum", square, axes, bool(keepdims))
        w.node("Identity", [out], node.output)
    else:
        w.node("ReduceSum", [square], node.output, keepdims=keepdims)
    return True


@register("ReduceL2", why=WRONG_GRADIENT, note="ignores axes given as an input")
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


@register("ReduceL1", why=NO_GRADIENT)
def _reduce_l1(node, w, types) -> bool:
    reduction = reduction_axes(node, w)
    if reduction is None:
        return False
    axes, keepdims = reduction
    w.node("Identity", [w.reduce("ReduceSum", w.op("Abs", node.input[0]), axes, keepdims)], node.output)
    return True


@register("ReduceLogSum", why=NO_GRADIENT)
def _reduce_log_sum(node, w, types) -> bool:
    reduction = reduction_axes(node, w)
    if reduction is None:
        return False
    axes, keepdims = reduction
    w.node("Log", [w.reduce("ReduceSum", node.input[0], axes, keepdims)], node.output)
    return True


@register("ReduceProd", why=NO_GRADIENT, note="a tree of Muls, exact at zeros")
def _reduce_prod(node, w, types) -> bool:
    """ReduceProd as a tree of Muls over the reduced elements (a static count), exact where x
    holds zeros: each element's gradient is the product of the others, never prod / x."""
    x = node.input[0]
    rank = rank_of(types, x)
    if not is_float(types, x) or rank is None:
        return False
    has_axes = (len(node.input) > 1 and node.input[1]) or attr(node, "axes")
    if not has_axes and attr(node, "noop_with_empty_axes", 0):
        w.node("Identity", [x], node.output)
        return True
    reduction = reduction_axes(node, w)
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


@register("ReduceMax", "ReduceMin", why=NO_GRADIENT)
def _reduce_extreme(node, w, types) -> bool:
    x = node.input[0]
    rank = rank_of(types, x)
    reduction = reduction_axes(node, w)
    if not is_float(types, x) or not rank or reduction is None:
        return False
    axes, keepdims = reduction
    axes = sorted({a % rank for a in axes}) if axes is not None else list(range(rank))
    out = _max_over(w, x, axes, node.op_type == "ReduceMax")
    if not keepdims:
        out = w.squeeze(out, axes)
    w.node("Identity", [out], node.output)
    return True


@register("GlobalMaxPool", why=NO_GRADIENT)
def _global_max_pool(node, w, types) -> bool:
    x = node.input[0]
    rank = rank_of(types, x)
    if rank is None or rank < 3:
        return False
    w.node("Identity", [_max_over(w, x, list(range(2, rank)), True)], node.output)
    return True


@register("Hardmax", why=NO_GRADIENT)
def _hardmax(node, w, types) -> bool:
    # One at the first maximum along `axis`: a piecewise constant function, so zero gradients.
    x = node.input[0]
    shape = static_shape(types, x)
    if shape is None or not shape or w.opset < 13:  # before 13, Hardmax flattens to 2-D
        return False
    axis = attr(node, "axis", -1) % len(shape)
    index = w.op("ArgMax", x, axis=axis, keepdims=1)
    positions = np.arange(shape[axis], dtype=np.int64).reshape([shape[axis]] + [1] * (len(shape) - 1 - axis))
    w.node("Cast", [w.op("Equal", index, w.constant(positions))], node.output, to=types[x][0])
    return True
