"""Pooling: MaxPoolGrad as a scatter at MaxPool's indices, AveragePoolGrad as a ConvTranspose of ones."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import onnx
from onnx import helper

from onnxgrad._graph import attrs as node_attrs
from onnxgrad._lower._lowerer import Lowerer
from onnxgrad._lower._registry import lowers
from onnxgrad._lower.convolution import explicit_pads
from onnxgrad._lower.indexing import flat_scatter
from onnxgrad.errors import UnsupportedGradientError


@lowers("::MaxPoolGrad")
def _max_pool_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, indices = node.input[:2]
    pool = lw.producer.get(indices)
    if pool is None or pool.op_type != "MaxPool":
        raise lw.fail(node, f"its indices {indices!r} do not come from a MaxPool")
    if node_attrs(pool).get("storage_order", 0):
        raise lw.fail(node, "MaxPool with storage_order=1 is not supported", UnsupportedGradientError)
    _refuse_ceil_mode_overhang(lw, node, pool)
    # MaxPool's indices are flat positions in the whole input; overlapping windows share maxima.
    shape = lw.ints(lw.shape(pool.input[0], node))
    flat_scatter(lw, indices, dy, shape, node.output[0], accumulate=True)


def _pool_geometry(attrs: dict, x_shape: Sequence[int]) -> tuple[int, list, list, list, list]:
    """A pool's spatial rank, kernel, strides, dilations and explicit pads (auto_pad resolved)."""
    n = len(x_shape) - 2
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides", [1] * n))
    dilations = list(attrs.get("dilations", [1] * n))
    return n, kernel, strides, dilations, explicit_pads(attrs, x_shape[2:], kernel, strides, dilations)


def _refuse_ceil_mode_overhang(lw: Lowerer, node: onnx.NodeProto, pool: onnx.NodeProto) -> None:
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


@lowers("::AveragePoolGrad")
def _average_pool_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
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
