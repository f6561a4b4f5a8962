"""DFT and STFT as MatMuls with constant cosine and sine matrices."""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnxgrad._graph import GraphWriter
from onnxgrad._rewrites._common import attr, constant, is_float, static_shape
from onnxgrad._rewrites._registry import NO_GRADIENT, register


def _fourier(w: GraphWriter, parts: list[str], length: int, onesided: bool, inverse: bool,
             dtype) -> tuple[str, str]:
    """``(real, imag)`` of the discrete Fourier transform along the last axis of ``parts`` (the real
    part, and the imaginary part if any): MatMuls with constant cosine and sine matrices."""
    angle = 2 * np.pi * np.outer(np.arange(length), np.arange(length // 2 + 1 if onesided else length)) / length
    scale, sign = (1.0 / length, 1.0) if inverse else (1.0, -1.0)
    cos, sin = w.constant(np.cos(angle) * scale, dtype), w.constant(np.sin(angle) * scale * sign, dtype)
    # (re + i im) (cos + i sin), sin carrying the direction's sign
    real = w.op("MatMul", parts[0], cos)
    imag = w.op("MatMul", parts[0], sin)
    if len(parts) > 1:
        real = w.op("Sub", real, w.op("MatMul", parts[1], sin))
        imag = w.op("Add", imag, w.op("MatMul", parts[1], cos))
    return real, imag


@register("STFT", why=NO_GRADIENT)
def _stft(node, w, types) -> bool:
    """STFT as frames gathered from the signal, times the window, then the Fourier MatMuls (static
    shape, constant frame_step and frame_length): no gradient in the builder. The window gets a
    gradient too."""
    signal = node.input[0]
    shape = static_shape(types, signal)
    inputs = list(node.input) + ["", "", ""]
    step = constant(w, inputs[1])
    window = inputs[2] or None
    window_shape = static_shape(types, window) if window else None
    length = constant(w, inputs[3]) if inputs[3] else None
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
    index = w.constant(np.arange(frames)[:, None] * hop + np.arange(frame)[None, :], np.int64)
    parts = []
    for k in range(shape[-1]):
        part = w.op("Gather", w.op("Gather", signal, w.constant(np.array(k, np.int64)), axis=-1), index, axis=1)
        parts.append(w.op("Mul", part, window) if window else part)
    real, imag = _fourier(w, parts, frame, bool(attr(node, "onesided", 1)), False, dtype)
    w.node("Concat", [w.unsqueeze(real, [3]), w.unsqueeze(imag, [3])], node.output, axis=-1)
    return True


@register("DFT", why=NO_GRADIENT)
def _dft(node, w, types) -> bool:
    """DFT as MatMuls with constant cosine and sine matrices along its axis (static shape, constant
    dft_length and axis): no gradient in the builder."""
    x = node.input[0]
    shape = static_shape(types, x)
    if shape is None or not is_float(types, x):
        return False
    rank = len(shape)
    inputs = list(node.input) + ["", ""]
    if w.opset >= 20:
        axis_value = constant(w, inputs[2]) if inputs[2] else np.array(-2)
    else:
        axis_value = np.array(attr(node, "axis", 1))
    length_value = constant(w, inputs[1]) if inputs[1] else None
    if axis_value is None or (inputs[1] and length_value is None):
        return False
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    axis = int(axis_value) % rank
    size = shape[axis]
    length = int(length_value) if length_value is not None else size
    inverse, onesided = bool(attr(node, "inverse", 0)), bool(attr(node, "onesided", 0))
    parts = [w.op("Gather", x, w.constant(np.array(k, np.int64)), axis=-1) for k in range(shape[-1])]
    if length < size:
        parts = [w.op("Slice", p, w.constant([0], np.int64), w.constant([length], np.int64),
                      w.constant([axis], np.int64)) for p in parts]
    elif length > size:
        pads = [0] * (2 * (rank - 1))
        pads[rank - 1 + axis] = length - size
        parts = [w.op("Pad", p, w.constant(pads, np.int64)) for p in parts]
    order = [a for a in range(rank - 1) if a != axis] + [axis]
    if order != list(range(rank - 1)):
        parts = [w.op("Transpose", p, perm=order) for p in parts]
    real, imag = _fourier(w, parts, length, onesided, inverse, dtype)
    if order != list(range(rank - 1)):
        back = [order.index(a) for a in range(rank - 1)]
        real, imag = w.op("Transpose", real, perm=back), w.op("Transpose", imag, perm=back)
    w.node("Concat", [w.unsqueeze(real, [rank - 1]), w.unsqueeze(imag, [rank - 1])], node.output, axis=-1)
    return True
