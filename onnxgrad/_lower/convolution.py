"""Convolution: ConvGrad as a ConvTranspose (dX), one Gemm over the unfolded input or a correlating
Conv (dW), and a sum (dB)."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import onnx
from onnx import helper

from onnxgrad._graph import attrs as node_attrs
from onnxgrad._lower._lowerer import Lowerer
from onnxgrad._lower._registry import lowers


def explicit_pads(attrs: dict, spatial: Sequence[int], kernel: Sequence[int], strides, dilations) -> list[int]:
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


def _batch_inner(lw: Lowerer, x: str, batch: int, rows: int, positions: int) -> str:
    """[N, rows, positions] as [rows, N * positions]: the batch joins the positions as a Gemm's inner dimension."""
    x = lw.w.op("Reshape", x, lw.ints([batch, rows, positions]))
    if batch > 1:
        x = lw.w.op("Transpose", x, perm=[1, 0, 2])
    return lw.w.op("Reshape", x, lw.ints([rows, batch * positions]))


def _weight_grad_unfolded(lw: Lowerer, x: str, dy: str, g: _ConvGeometry, out: str) -> None:
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


def _weight_grad_correlated(lw: Lowerer, x: str, dy: str, g: _ConvGeometry, out: str) -> None:
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


@lowers("com.microsoft::ConvGrad")
def _conv_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, x, weight = node.input[:3]
    x_shape, w_shape = lw.shape(x, node), lw.shape(weight, node)
    attrs = node_attrs(node)
    n = len(x_shape) - 2
    kernel = list(attrs.get("kernel_shape", w_shape[2:]))
    strides = list(attrs.get("strides", [1] * n))
    dilations = list(attrs.get("dilations", [1] * n))
    group = int(attrs.get("group", 1))
    pads = explicit_pads(attrs, x_shape[2:], kernel, strides, dilations)
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
