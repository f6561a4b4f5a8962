"""Fixes for onnx 1.17's reference evaluator, so lowered graphs can be checked on it.

Each class replaces a reference kernel that is wrong on valid graphs our
lowering or rewrites emit (see each docstring); pass :data:`FIXED_OPS` as
``ReferenceEvaluator(model, new_ops=FIXED_OPS)``. Class names are op names:
that is how the evaluator matches them.
"""

from __future__ import annotations

import itertools

import numpy as np
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops import op_conv_transpose, op_max_pool, op_pad

__all__ = ["FIXED_OPS", "reference"]


class ConvTranspose(op_conv_transpose.ConvTranspose):
    """The reference writes group k's output to channel k only: wrong when a group has
    several output channels. Runs one group at a time instead."""

    def _run(self, X, W, B=None, group=None, **attrs):  # noqa: N803 (ONNX input names)
        if not group or group == 1:
            return super()._run(X, W, B, group=1, **attrs)
        parts = [
            super(ConvTranspose, self)._run(x, w, None, group=1, **attrs)[0]
            for x, w in zip(np.split(X, group, axis=1), np.split(W, group, axis=0))
        ]
        out = np.concatenate(parts, axis=1)
        if B is not None:
            out = out + B.reshape((1, -1) + (1,) * (out.ndim - 2))
        return (out.astype(X.dtype),)


class Pad(op_pad.Pad_18):
    """numpy.pad takes no negative pads; ONNX's negative pads crop."""

    def _run(self, data, pads, constant_value=None, axes=None, mode=None):
        pads = np.asarray(pads, np.int64)
        if (pads >= 0).all():
            return super()._run(data, pads, constant_value, axes, mode)
        rank = data.ndim
        axes = list(range(rank)) if axes is None else [int(a) % rank for a in np.asarray(axes).ravel()]
        n = len(axes)
        crop = [slice(None)] * rank
        for k, axis in enumerate(axes):
            begin, end = -min(0, int(pads[k])), data.shape[axis] + min(0, int(pads[k + n]))
            crop[axis] = slice(begin, end)
        return super()._run(data[tuple(crop)], np.maximum(pads, 0), constant_value, axes, mode)


class MaxPool(op_max_pool.MaxPool):
    """The reference's Indices count padding positions; ONNX's do not."""

    def _run(self, X, auto_pad=None, ceil_mode=None, dilations=None, kernel_shape=None, pads=None,  # noqa: N803
             storage_order=None, strides=None):
        simple = auto_pad in (None, "NOTSET", b"NOTSET") and not ceil_mode and not storage_order
        if len(self.onnx_node.output) < 2 or not simple:
            return super()._run(X, auto_pad, ceil_mode, dilations, kernel_shape, pads, storage_order, strides)
        n = X.ndim - 2
        strides, dilations = strides or [1] * n, dilations or [1] * n
        pads = pads or [0] * 2 * n
        spatial = X.shape[2:]
        out_shape = [
            (spatial[i] + pads[i] + pads[i + n] - (kernel_shape[i] - 1) * dilations[i] - 1) // strides[i] + 1
            for i in range(n)
        ]
        values = np.empty(X.shape[:2] + tuple(out_shape), X.dtype)
        indices = np.empty(values.shape, np.int64)
        flat = X.reshape(X.shape[0], X.shape[1], -1)
        offsets = np.arange(X.shape[0] * X.shape[1]).reshape(X.shape[:2]) * int(np.prod(spatial))
        for out in itertools.product(*(range(o) for o in out_shape)):
            coords = [
                [o * strides[i] - pads[i] + j * dilations[i] for j in range(kernel_shape[i])]
                for i, o in enumerate(out)
            ]
            inside = [
                pos for pos in itertools.product(*coords) if all(0 <= p < spatial[i] for i, p in enumerate(pos))
            ]
            positions = np.ravel_multi_index(tuple(np.array(inside).T), spatial)
            window = flat[:, :, positions]
            best = np.argmax(window, axis=-1)
            values[(slice(None), slice(None), *out)] = np.take_along_axis(window, best[..., None], -1)[..., 0]
            indices[(slice(None), slice(None), *out)] = positions[best] + offsets
        return values, indices


FIXED_OPS = [ConvTranspose, Pad, MaxPool]


def reference(model) -> ReferenceEvaluator:
    """The reference evaluator with :data:`FIXED_OPS`."""
    return ReferenceEvaluator(model, new_ops=list(FIXED_OPS))
