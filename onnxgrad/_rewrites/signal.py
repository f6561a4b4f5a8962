"""DFT and STFT as MatMuls with constant cosine and sine matrices."""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnxgrad._graph import GraphWriter
from onnxgrad._rewrites._common import attr, constant, is_float, static_shape
from onnxgrad._rewrites._registry import NO_GRADIENT, register


def _fourier(gw: GraphWriter, parts: list[str], length: int, onesided: bool, inverse: bool,
             dtype) -> tuple[str, str]:
    """``(real, imag)`` of the discrete Fourier transform along the last axis of ``parts`` (the real
    part, and the imaginary part if any): MatMuls with constant cosine and sine matrices."""
    angle = 2 * np.pi * np.outer(np.arange(length), np.arange(length // 2 + 1 if onesided else length)) / length
    scale, sign = (1.0 / length, 1.0) if inverse else (1.0, -1.0)
    cos, sin = gw.constant(np.cos(angle) * scale, dtype), gw.constant(np.sin(angle) * scale * sign, dtype)
    # (re + i im) (cos + i sin), sin carrying the direction's sign
    real = gw.op("MatMul", parts[0], cos)
    imag = gw.op("MatMul", parts[0], sin)
    if len(parts) > 1:
        real = gw.op("Sub", real, gw.op("MatMul", parts[1], sin))
        imag = gw.op("Add", imag, gw.op("MatMul", parts[1], cos))
    return real, imag


@register("STFT", why=NO_GRADIENT)
def _stft(node, gw, types) -> bool:
    """STFT as frames gathered from the signal, times the window, then the Fourier MatMuls (static
    shape, constant frame_step and frame_length): no gradient in the builder. The window gets a
    gradient too."""
    signal = node.input[0]
    shape = static_shape(types, signal)
    inputs = list(node.input) + ["", "", ""]
    step = constant(gw, inputs[1])
    window = inputs[2] or None
    window_shape = static_shape(types, window) if window else None
    length = constant(gw, inputs[3]) if inputs[3] else None
    if shape is None or step is None or not is_float(types, signal) or (window and window_shape is None):
        return False
    if length is not None:
        frame = int(length)
    elif window_shape is not None:
        frame = window_shape[0]
    else:
        return False
    hop = int(step)
    frames = (shape[1] - frame) // hop + 1
    dtype = helper.tensor_dtype_to_np_dtype(types[signal][0])
    index = gw.constant(np.arange(frames)[:, None] * hop + np.arange(frame)[None, :], np.int64)
    parts = []
    for k in range(shape[-1]):
        part = gw.op("Gather", gw.op("Gather", signal, gw.constant(np.array(k, np.int64)), axis=-1), index, axis=1)
        parts.append(gw.op("Mul", part, window) if window else part)
    real, imag = _fourier(gw, parts, frame, bool(attr(node, "onesided", 1)), False, dtype)
    gw.node("Concat", [gw.unsqueeze(real, [3]), gw.unsqueeze(imag, [3])], node.output, axis=-1)
    return True


@register("DFT", why=NO_GRADIENT)
def _dft(node, gw, types) -> bool:
    """DFT as MatMuls with constant cosine and sine matrices along its axis (static shape, constant
    dft_length and axis): no gradient in the builder."""
    x = node.input[0]
    shape = static_shape(types, x)
    if shape is None or not is_float(types, x):
        return False
    rank = len(shape)
    inputs = list(node.input) + ["", ""]
    if gw.opset >= 20:
        axis_value = constant(gw, inputs[2]) if inputs[2] else np.array(-2)
    else:
        axis_value = np.array(attr(node, "axis", 1))
    length_value = constant(gw, inputs[1]) if inputs[1] else None
    if axis_value is None or (inputs[1] and length_value is None):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    axis = int(axis_value) % rank
    size = shape[axis]
    length = int(length_value) if length_value is not None else size
    inverse, onesided = bool(attr(node, "inverse", 0)), bool(attr(node, "onesided", 0))
    parts = [gw.op("Gather", x, gw.constant(np.array(k, np.int64)), axis=-1) for k in range(shape[-1])]
    if length < size:
        parts = [gw.op("Slice", p, gw.constant([0], np.int64), gw.constant([length], np.int64),
                      gw.constant([axis], np.int64)) for p in parts]
    elif length > size:
        pads = [0] * (2 * (rank - 1))
        pads[rank - 1 + axis] = length - size
        parts = [gw.op("Pad", p, gw.constant(pads, np.int64)) for p in parts]
    order = [a for a in range(rank - 1) if a != axis] + [axis]
    if order != list(range(rank - 1)):
        parts = [gw.op("Transpose", p, perm=order) for p in parts]
    real, imag = _fourier(gw, parts, length, onesided, inverse, dtype)
    if order != list(range(rank - 1)):
        back = [order.index(a) for a in range(rank - 1)]
        real, imag = gw.op("Transpose", real, perm=back), gw.op("Transpose", imag, perm=back)
    gw.node("Concat", [gw.unsqueeze(real, [rank - 1]), gw.unsqueeze(imag, [rank - 1])], node.output, axis=-1)
    return True
