"""Resampling: Resize (no ResizeGrad kernel on CPU), GridSample and AffineGrid."""

from __future__ import annotations

import itertools
import math

import numpy as np
import onnx
from onnx import helper

from onnxgrad._graph import GraphWriter, TypeTable
from onnxgrad._rewrites._common import attr, constant, is_float, static_shape
from onnxgrad._rewrites._registry import NO_GRADIENT, NO_KERNEL, register

#: Resize's modes and coordinate transformations the rewrite covers (opset 13 to 21).
RESIZE_MODES = ("nearest", "linear", "cubic")


RESIZE_COORDINATES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                      "tf_crop_and_resize")


def resize_refusal(node: onnx.NodeProto) -> str | None:
    """What in a Resize node's attributes onnxgrad cannot differentiate, or None."""
    mode = attr(node, "mode", "nearest")
    coordinates = attr(node, "coordinate_transformation_mode", "half_pixel")
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
    mode = attr(node, "mode", "nearest")
    coordinates = attr(node, "coordinate_transformation_mode", "half_pixel")
    rounding = attr(node, "nearest_mode", "round_prefer_floor")
    a = float(attr(node, "cubic_coeff_a", -0.75))
    matrix = np.zeros((size_out, size_in))
    outside = np.zeros(size_out, bool)
    last = size_in - 1
    for o in range(size_out):
        x = float(_resize_source(o, size_in, size_out, scale, coordinates, roi, f))
        if coordinates == "tf_crop_and_resize" and not 0 <= x <= last:
            outside[o] = True
            continue
        if attr(node, "antialias", 0) and mode != "nearest":
            _antialias_row(matrix[o], x, scale, mode, a, bool(attr(node, "exclude_outside", 0)))
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
            if attr(node, "exclude_outside", 0):
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


def _resize_geometry(node, gw, shape, f: type) -> tuple[list[int], list[float], list[tuple[float, float]]] | None:
    """``(output shape, scale per axis, roi per axis)`` of a Resize with constant roi, scales and sizes,
    as ONNX Runtime computes them (in the float type ``f``); None when one is not constant."""
    rank = len(shape)
    inputs = list(node.input) + [""] * 4
    values = [constant(gw, name) if name else np.zeros(0) for name in inputs[1:4]]
    known = [v for v in values if v is not None]
    if len(known) < len(values):
        return None
    roi, scales, sizes = (v.reshape(-1) for v in known)
    axes = [int(a) % rank for a in attr(node, "axes", None) or range(rank)]
    out, factor = list(shape), [1.0] * rank
    if sizes.size:
        wanted = {axis: int(size) for axis, size in zip(axes, sizes)}
        ratios = {axis: f(wanted[axis]) / f(shape[axis]) for axis in axes}
        policy = attr(node, "keep_aspect_ratio_policy", "stretch")
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


@register("Resize", why=NO_KERNEL, note="also Upsample, converted to Resize on load")
def _resize(node, gw, types) -> bool:
    """Resize (nearest, linear, cubic, antialiased or not) with a static input shape and constant roi,
    scales and sizes, axis by axis as taps: Gathers of the sampled indices times constant weights,
    whose gradients the builder has (ResizeGrad has no CPU kernel)."""
    x = node.input[0]
    shape = static_shape(types, x)
    if shape is None or not is_float(types, x) or resize_refusal(node) is not None:
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    real = np.float64 if dtype == np.float64 else np.float32
    geometry = _resize_geometry(node, gw, shape, real)
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
            picked = gw.op("Gather", out, gw.constant(order.astype(np.int64)), axis=axis)
            if not np.all(weight == 1.0):
                picked = gw.op("Mul", picked, gw.constant(weight.reshape(broadcast), dtype))
            total = picked if total is None else gw.op("Add", total, picked)
        if outside.any():
            fill = gw.constant((outside * float(attr(node, "extrapolation_value", 0.0))).reshape(broadcast), dtype)
            total = fill if total is None else gw.op("Add", total, fill)
        out = total
    gw.node("Identity", [out], node.output[:1])
    return True


def _reflect(gw: GraphWriter, value: str, low: float, high: float, dtype) -> str:
    """``value`` reflected into [low, high] as often as needed (a triangle wave; the identity inside)."""
    span, period = gw.constant(np.array(high - low, dtype)), gw.constant(np.array(2 * (high - low), dtype))
    shifted = gw.op("Sub", value, gw.constant(np.array(low, dtype)))
    wrapped = gw.op("Sub", shifted, gw.op("Mul", gw.op("Floor", gw.op("Div", shifted, period)), period))
    folded = gw.op("Sub", span, gw.op("Abs", gw.op("Sub", wrapped, span)))
    return gw.op("Add", folded, gw.constant(np.array(low, dtype)))


def _horner(gw: GraphWriter, t: str, coefficients: list[float], dtype) -> str:
    """The polynomial with ``coefficients`` (highest power first) at ``t``."""
    total = gw.constant(np.array(coefficients[0], dtype))
    for c in coefficients[1:]:
        total = gw.op("Add", gw.op("Mul", total, t), gw.constant(np.array(c, dtype)))
    return total


def _grid_sample_kept(node: onnx.NodeProto, graph: onnx.GraphProto, types: TypeTable) -> str | None:
    """Why a GridSample node cannot be rewritten (an attribute, a shape or a dtype), or None."""
    x, grid = node.input[:2]
    mode = attr(node, "mode", "linear")
    padding = attr(node, "padding_mode", "zeros")
    if mode not in ("linear", "bilinear", "nearest", "cubic", "bicubic"):
        return f"its attribute mode={mode!r} (onnxgrad covers linear, nearest and cubic)"
    if padding not in ("zeros", "border", "reflection"):
        return f"its attribute padding_mode={padding!r} (onnxgrad covers zeros, border and reflection)"
    for role, name in (("X", x), ("grid", grid)):
        if static_shape(types, name) is None:
            return f"the shape of its {role} {name!r} is not static"
    if not is_float(types, x) or types[grid][0] != types[x][0]:
        return "its X and grid are not float tensors of one dtype"
    return None


@register(
    "GridSample", why=NO_GRADIENT, note="every mode and padding, 1 to 3 spatial axes", explain=_grid_sample_kept
)
def _grid_sample(node, gw, types) -> bool:
    """GridSample (linear, nearest or cubic; zeros, border or reflection padding; 1 to 3 spatial axes)
    as GatherElements of the samples each output reads (2^r corners, 4^r for cubic, one for nearest)
    times weights computed from the grid, so that both X and the grid get gradients."""
    if _grid_sample_kept(node, gw.graph, types) is not None:
        return False
    x, grid = node.input[:2]
    shape, grid_shape = static_shape(types, x), static_shape(types, grid)
    assert shape is not None and grid_shape is not None  # _grid_sample_kept checked both
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(attr(node, "mode", "linear"), attr(node, "mode", "linear"))
    padding = attr(node, "padding_mode", "zeros")
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    n, channels, sizes = shape[0], shape[1], list(shape[2:])
    rank = len(sizes)
    samples = int(np.prod(grid_shape[1:-1], dtype=np.int64))
    align = bool(attr(node, "align_corners", 0))
    flat_x = gw.op("Reshape", x, gw.constant([n, channels, -1], np.int64))
    index_shape = gw.constant([n, channels, samples], np.int64)
    strides = [int(np.prod(sizes[k + 1:], dtype=np.int64)) for k in range(rank)]

    def const(value: float) -> str:
        return gw.constant(np.array(value, dtype))

    one, a = const(1.0), -0.75  # a: PyTorch's and ONNX's cubic coefficient
    options: list[list[tuple[str, str | None]]] = []  # per spatial axis of X: [(sample index, weight or None)]
    for k, size in enumerate(sizes):
        # The grid's last axis lists coordinates innermost axis first: (x, y, z).
        normalized = gw.op("Reshape", gw.op("Gather", grid, gw.constant(np.array(rank - 1 - k, np.int64)), axis=-1),
                          gw.constant([n, samples], np.int64))
        # align_corners: -1 and 1 are the centers of the corner samples, else their outer edges.
        low, high = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        point = gw.op("Sub", gw.op("Mul", gw.op("Add", normalized, one), const((high - low) / 2)), const(-low))
        if mode == "nearest":
            point = gw.op("Round", point)  # half to even, as ONNX and PyTorch
        # Cubic pads each of its samples (below), as ONNX Runtime and PyTorch; the others the point.
        if padding == "border" and mode != "cubic":  # outside [low, high]: the nearest edge sample
            outside = gw.op("Or", gw.op("Less", point, const(low)), gw.op("Greater", point, const(high)))
            point = gw.op("Where", outside, gw.op("Clip", point, const(0.0), const(size - 1.0)), point)
        elif padding == "reflection" and mode != "cubic":
            point = _reflect(gw, point, low, high, dtype)
        if mode == "nearest":
            options.append([(point, None)])
            continue
        floor = gw.op("Floor", point)
        t = gw.op("Sub", point, floor)
        if mode == "linear":
            options.append([(floor, gw.op("Sub", one, t)), (gw.op("Add", floor, one), t)])
            continue
        far = [a, -5 * a, 8 * a, -4 * a]  # the cubic kernel for distances in [1, 2]
        near = [a + 2, -(a + 3), 0.0, 1.0]  # and in [0, 1]
        distances = [gw.op("Add", t, one), t, gw.op("Sub", one, t), gw.op("Sub", const(2.0), t)]
        weights = [_horner(gw, d, far if k2 in (0, 3) else near, dtype) for k2, d in enumerate(distances)]
        options.append([(gw.op("Add", floor, const(float(shift))), weight)
                        for shift, weight in zip((-1, 0, 1, 2), weights)])
    total = None
    for corner in itertools.product(*options):
        flat, weight, valid = None, None, None
        for k, (index, factor) in enumerate(corner):
            if padding == "zeros":
                inside = gw.op("And", gw.op("GreaterOrEqual", index, const(0.0)),
                              gw.op("LessOrEqual", index, const(sizes[k] - 1.0)))
                valid = inside if valid is None else gw.op("And", valid, inside)
            elif padding == "reflection" and mode != "nearest":  # linear: samples past the edges
                index = _reflect(gw, index, *((0.0, sizes[k] - 1.0) if align else (-0.5, sizes[k] - 0.5)), dtype)
            clamped = gw.op("Clip", index, const(0.0), const(sizes[k] - 1.0))
            term = gw.op("Mul", clamped, const(float(strides[k])))
            flat = term if flat is None else gw.op("Add", flat, term)
            if factor is not None:
                weight = factor if weight is None else gw.op("Mul", weight, factor)
        if valid is not None:
            mask = gw.cast(valid, dtype)
            weight = mask if weight is None else gw.op("Mul", weight, mask)
        indices = gw.op("Expand", gw.unsqueeze(gw.cast(flat, np.int64), [1]), index_shape)
        sampled = gw.op("GatherElements", flat_x, indices, axis=2)
        if weight is not None:
            sampled = gw.op("Mul", sampled, gw.unsqueeze(weight, [1]))
        total = sampled if total is None else gw.op("Add", total, sampled)
    gw.node("Reshape", [total, gw.constant([n, channels, *grid_shape[1:-1]], np.int64)], node.output)
    return True


@register("AffineGrid", why=NO_GRADIENT)
def _affine_grid(node, gw, types) -> bool:
    """AffineGrid as the (constant) grid of normalized positions times theta transposed, for a
    constant size: no gradient in the builder."""
    theta = node.input[0]
    size = constant(gw, node.input[1])
    if size is None or not is_float(types, theta):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[theta][0])
    n, spatial = int(size[0]), [int(d) for d in size[2:]]
    if attr(node, "align_corners", 0):
        axes = [np.linspace(-1.0, 1.0, d) if d > 1 else np.zeros(1) for d in spatial]
    else:
        axes = [(np.arange(d) * 2.0 + 1.0) / d - 1.0 for d in spatial]
    # Rows (x, y[, z], 1) for every position, the innermost axis (x) first in each row.
    mesh = np.meshgrid(*axes, indexing="ij")
    base = np.stack([m.reshape(-1) for m in mesh[::-1]] + [np.ones(mesh[0].size)], axis=1)
    # theta @ base^T, then transposed: a transposed MatMul input would fuse into FusedMatMul, float-only.
    grid = gw.op("Transpose", gw.op("MatMul", theta, gw.constant(base.T, dtype)), perm=[0, 2, 1])
    gw.node("Reshape", [grid, gw.constant([n, *spatial, len(spatial)], np.int64)], node.output)
    return True
