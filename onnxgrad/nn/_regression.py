"""Element-wise regression losses: ``MSELoss``, ``L1Loss``, ``SmoothL1Loss``, ``HuberLoss``.

Each is a function of ``d = logits - labels``, written with standard ONNX ops
whose built-in gradients are the true ones. That is what MindSpore 2.10
returns for these losses, the labels' gradient (``-d loss/d logits``)
included; at ``d = 0`` both give the L1 and Huber terms a zero gradient.
"""

from __future__ import annotations

import abc

import numpy as np

from onnxgrad._graph import GraphWriter, TensorInfo
from onnxgrad.errors import InputError
from onnxgrad.nn._loss import LossFn

__all__ = ["MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss"]

#: Float labels the regression losses take; they are cast to the logits' dtype.
FLOAT_LABELS = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64))


class _ElementwiseLoss(LossFn):
    """A loss of ``d = logits - labels``, labels shaped like the logits."""

    def label_dtypes(self) -> tuple[np.dtype, ...]:
        return FLOAT_LABELS

    def _build(self, gw: GraphWriter, logits: str, label: str, logits_info: TensorInfo, label_dtype: np.dtype) -> str:
        if label_dtype != logits_info.dtype:
            label = gw.cast(label, logits_info.dtype)
        return self.of_difference(gw, gw.op("Sub", logits, label), logits_info.dtype)

    @abc.abstractmethod
    def of_difference(self, gw: GraphWriter, d: str, dtype: np.dtype) -> str:
        """Emits the per-element loss of the difference ``d``."""


def _piecewise(gw: GraphWriter, d: str, dtype: np.dtype, threshold: float, quadratic: float, linear: float) -> str:
    """``quadratic * d**2`` where ``|d| < threshold``, else ``linear * (|d| - threshold / 2)``."""
    size = gw.op("Abs", d)
    inner = gw.op("Mul", gw.op("Mul", d, d), gw.constant(quadratic, dtype))
    outer = gw.op("Mul", gw.op("Sub", size, gw.constant(threshold / 2, dtype)), gw.constant(linear, dtype))
    return gw.op("Where", gw.op("Less", size, gw.constant(threshold, dtype)), inner, outer)


def _positive(cls: type, name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InputError(f"{cls.__name__}'s {name} must be a number greater than 0, got {value!r}.")
    return float(value)


class MSELoss(_ElementwiseLoss):
    """Mean squared error ``(logits - labels)**2``: MindSpore's ``nn.MSELoss``.

    Args:
        reduction: ``'mean'`` (the default), ``'sum'`` or ``'none'``.

    Labels have the logits' shape and a float dtype; their gradient is
    ``-2 * (logits - labels)`` (divided by the element count for ``'mean'``).
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def of_difference(self, gw: GraphWriter, d: str, dtype: np.dtype) -> str:
        return gw.op("Mul", d, d)


class L1Loss(_ElementwiseLoss):
    """Mean absolute error ``|logits - labels|``: MindSpore's ``nn.L1Loss``.

    Args:
        reduction: ``'mean'`` (the default), ``'sum'`` or ``'none'``.

    The gradient is ``sign(logits - labels)``, zero where they are equal.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def of_difference(self, gw: GraphWriter, d: str, dtype: np.dtype) -> str:
        return gw.op("Abs", d)


class SmoothL1Loss(_ElementwiseLoss):
    """MindSpore's ``nn.SmoothL1Loss``: ``0.5 * d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 * beta``.

    Args:
        beta: where the loss turns from quadratic to linear; greater than 0.
        reduction: ``'none'`` (MindSpore's default for this loss), ``'mean'`` or ``'sum'``.

    Raises:
        InputError: ``beta`` is not greater than 0 (MindSpore refuses it when called).
    """

    def __init__(self, beta: float = 1.0, reduction: str = "none") -> None:
        super().__init__(reduction)
        self.beta = _positive(type(self), "beta", beta)

    def of_difference(self, gw: GraphWriter, d: str, dtype: np.dtype) -> str:
        return _piecewise(gw, d, dtype, self.beta, 0.5 / self.beta, 1.0)


class HuberLoss(_ElementwiseLoss):
    """MindSpore's ``nn.HuberLoss``: ``0.5 * d**2`` where ``|d| < delta``, else ``delta * (|d| - 0.5 * delta)``.

    Args:
        reduction: ``'mean'`` (the default), ``'sum'`` or ``'none'``.
        delta: where the loss turns from quadratic to linear; greater than 0.

    Raises:
        InputError: ``delta`` is not greater than 0.
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        self.delta = _positive(type(self), "delta", delta)

    def of_difference(self, gw: GraphWriter, d: str, dtype: np.dtype) -> str:
        return _piecewise(gw, d, dtype, self.delta, 0.5, self.delta)
