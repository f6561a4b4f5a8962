"""``BCEWithLogitsLoss``: binary cross-entropy on logits."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxgrad._graph import GraphWriter, TensorInfo
from onnxgrad.errors import InputError
from onnxgrad.nn._loss import LossFn, float_array
from onnxgrad.nn._regression import FLOAT_LABELS

__all__ = ["BCEWithLogitsLoss"]


class BCEWithLogitsLoss(LossFn):
    """Sigmoid then binary cross-entropy: MindSpore's ``nn.BCEWithLogitsLoss``.

    Per element, with ``p = pos_weight`` and ``w = weight`` (both 1 when None)::

        loss = -w * (p * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x)))

    computed stably as ``w * ((1 - y) * x + (1 + (p - 1) * y) * log(1 + exp(-x)))``.

    Args:
        reduction: ``'mean'`` (the default: the plain mean of the weighted
            elements), ``'sum'`` or ``'none'``.
        weight: rescales each element; broadcast to the logits' shape.
        pos_weight: weight of the positive term per class (the last axis);
            broadcast to the logits' shape.

    Labels have the logits' shape and a float dtype. Their gradient is the
    true one, as in MindSpore: ``w * (p * log(1 + exp(-x)) - log(1 + exp(x)))``.
    """

    def __init__(self, reduction: str = "mean", weight: Any = None, pos_weight: Any = None) -> None:
        super().__init__(reduction)
        message = "BCEWithLogitsLoss's {name} must hold floats, got {{dtype}}: pass a float array."
        self.weight = float_array(weight, message.format(name="weight"))
        self.pos_weight = float_array(pos_weight, message.format(name="pos_weight"))

    def label_dtypes(self) -> tuple[np.dtype, ...]:
        return FLOAT_LABELS

    def _build(self, gw: GraphWriter, logits: str, label: str, logits_info: TensorInfo, label_dtype: np.dtype) -> str:
        self._check_broadcast(logits_info)
        dtype = logits_info.dtype
        if label_dtype != dtype:
            label = gw.cast(label, dtype)
        one = gw.constant(1.0, dtype)
        negative_part = gw.op("Mul", gw.op("Sub", one, label), logits)
        positive_scale = one
        if self.pos_weight is not None:
            extra = gw.op("Sub", gw.constant(self.pos_weight, dtype), one)
            positive_scale = gw.op("Add", one, gw.op("Mul", extra, label))
        loss = gw.op("Add", negative_part, gw.op("Mul", positive_scale, gw.softplus(gw.op("Neg", logits), dtype)))
        if self.weight is not None:
            loss = gw.op("Mul", loss, gw.constant(self.weight, dtype))
        return loss

    def _check_broadcast(self, logits: TensorInfo) -> None:
        dims = tuple(d for d in logits.shape or () if isinstance(d, int))
        if logits.shape is None or len(dims) != len(logits.shape):
            return
        for name, array in (("weight", self.weight), ("pos_weight", self.pos_weight)):
            if array is None:
                continue
            try:
                fits = np.broadcast_shapes(array.shape, dims) == dims
            except ValueError:
                fits = False
            if not fits:
                raise InputError(
                    f"BCEWithLogitsLoss's {name} of shape {list(array.shape)} does not broadcast to the logits' "
                    f"shape {list(dims)}: pass one value per class (the last axis) or the logits' shape."
                )
