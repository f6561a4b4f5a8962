"""``NLLLoss`` and ``CrossEntropyLoss``, MindSpore 2.10's class-weighted losses.

Classes lie on axis 1 of the logits (axis 0 for 1-D logits, which are treated
as a batch of one), as in ``mindspore.ops.nll_loss`` and ``ops.cross_entropy``.
Both are written with standard ONNX ops whose built-in gradients are the true
ones, which is what MindSpore returns: class-index labels get int zeros;
probability targets get ``-(1 - label_smoothing) * weight * log_softmax(logits)``
(scaled by the reduction).

With class indices, ``'mean'`` divides by the summed weights of the labels
that are not ``ignore_index`` (NaN when every label is ignored, as in
MindSpore); ignored positions have zero loss and zero gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from onnxgrad._graph import GraphWriter, TensorInfo
from onnxgrad.errors import InputError
from onnxgrad.nn._loss import LossFn, float_array, log_softmax

__all__ = ["NLLLoss", "CrossEntropyLoss"]

_INDEX_LABELS = (np.dtype(np.int32), np.dtype(np.int64))
# MindSpore takes float16/float32 targets; float64 ones are cast to the logits' dtype as well.
_TARGET_LABELS = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64))
_AXIS = 1  # the class axis once 1-D logits are made a batch of one


def _without_class_axis(logits: TensorInfo) -> tuple | None:
    if not logits.shape:
        return logits.shape
    axis = 0 if len(logits.shape) == 1 else _AXIS
    return logits.shape[:axis] + logits.shape[axis + 1 :]


@dataclasses.dataclass
class _Batch:
    """Logits ``[N, C, ...]`` and labels as the loss sees them.

    Attributes:
        logits: the logits' tensor name.
        label: the label's tensor name.
        info: the logits' metadata.
        single: the caller's logits were 1-D (``[C]``): the unreduced loss is squeezed back to a scalar.
    """

    logits: str
    label: str
    info: TensorInfo
    single: bool

    @property
    def shape(self) -> tuple[int | str | None, ...]:
        assert self.info.shape is not None  # _batch refuses logits of unknown rank
        return self.info.shape

    @property
    def classes(self) -> int | str | None:
        return self.shape[_AXIS]

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclasses.dataclass
class _Terms:
    """The unreduced loss, and the divisor of ``'mean'`` (None: the number of positions)."""

    loss: str
    weights: str | None = None


class _ClassLoss(LossFn):
    """What NLLLoss and CrossEntropyLoss share: class weights, ignore_index, batching and reduction."""

    def __init__(self, weight: Any, ignore_index: int, reduction: str) -> None:
        super().__init__(reduction)
        name = type(self).__name__
        self.weight = float_array(
            weight, name + "'s weight must be a 1-D float array with one weight per class, got {dtype}{shape}.", ndim=1
        )
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise InputError(f"{name}'s ignore_index must be an int, got {ignore_index!r}.")
        self.ignore_index = int(ignore_index)

    def label_shape(self, logits: TensorInfo, label_dtype: np.dtype | None = None) -> tuple | None:
        return _without_class_axis(logits)

    def loss_shape(self, logits: TensorInfo) -> tuple | None:
        return _without_class_axis(logits)

    def class_axis(self) -> int | None:
        return 1

    def allowed_label(self) -> int | None:
        return self.ignore_index

    def terms(self, gw: GraphWriter, batch: _Batch, label_dtype: np.dtype) -> _Terms:
        """Emits the per-position loss of a batch (and the divisor of its mean)."""
        raise NotImplementedError

    def _batch(self, gw: GraphWriter, logits: str, label: str, info: TensorInfo, label_dtype: np.dtype) -> _Batch:
        name = type(self).__name__
        if not info.shape:
            raise InputError(
                f"{name} needs logits of known rank >= 1 (classes on axis 1, or axis 0 for 1-D logits), "
                f"got {info.shape_text()}: export the backbone with a static output shape."
            )
        single = len(info.shape) == 1
        if single:
            logits = gw.unsqueeze(logits, [0])
            label = gw.unsqueeze(label, [0])
            info = dataclasses.replace(info, shape=(1, *info.shape))
        batch = _Batch(logits, label, info, single)
        if self.weight is not None and isinstance(batch.classes, int) and len(self.weight) != batch.classes:
            raise InputError(
                f"{name}'s weight has {len(self.weight)} entries but the logits have {batch.classes} classes "
                f"(axis {0 if single else _AXIS}): pass one weight per class."
            )
        return batch

    def _build(self, gw: GraphWriter, logits: str, label: str, logits_info: TensorInfo, label_dtype: np.dtype) -> str:
        batch = self._batch(gw, logits, label, logits_info, label_dtype)
        loss = self.terms(gw, batch, label_dtype).loss
        return gw.squeeze(loss, [0]) if batch.single else loss

    def _emit(self, gw: GraphWriter, logits: str, label: str, logits_info: TensorInfo, label_dtype: np.dtype) -> str:
        if self.reduction == "none":
            return self._build(gw, logits, label, logits_info, label_dtype)
        terms = self.terms(gw, self._batch(gw, logits, label, logits_info, label_dtype), label_dtype)
        if self.reduction == "sum" or terms.weights is None:
            return self._reduce(gw, terms.loss)
        total = gw.reduce("ReduceSum", terms.loss, None, keepdims=False)
        return gw.op("Div", total, gw.reduce("ReduceSum", terms.weights, None, keepdims=False))

    def class_weight(self, gw: GraphWriter, batch: _Batch) -> str:
        """The class weights as a constant that broadcasts along the class axis."""
        assert self.weight is not None  # the callers test for class weights first
        shape = [1] * batch.rank
        shape[_AXIS] = len(self.weight)
        return gw.constant(self.weight.astype(batch.info.dtype).reshape(shape))

    def index_terms(self, gw: GraphWriter, log_probs: str, batch: _Batch, label_dtype: np.dtype) -> tuple[_Terms, str]:
        """MindSpore's ``_nll_loss`` without reduction: ``-weight[t] * log_probs[t]``, 0 where ignored.

        Returns:
            The terms (the divisor of ``'mean'`` is ``weight[t]``, 0 where
            ignored), and a bool tensor true at the ignored positions.
        """
        dtype = batch.info.dtype
        zero = gw.constant(0.0, dtype)
        ignored = gw.op("Equal", batch.label, gw.constant(self.ignore_index, label_dtype))
        # Ignored labels pick class 0; the result is masked away.
        safe = gw.cast(gw.op("Where", ignored, gw.constant(0, label_dtype), batch.label), np.int64)
        index = gw.unsqueeze(safe, [_AXIS])
        picked = gw.squeeze(gw.op("GatherElements", log_probs, index, axis=_AXIS), [_AXIS])
        if self.weight is None:
            loss = gw.op("Neg", picked)
            weights = gw.cast(gw.op("Not", ignored), dtype)
        else:
            label_weight = gw.op("Gather", gw.constant(self.weight.astype(dtype)), safe, axis=0)
            loss = gw.op("Neg", gw.op("Mul", picked, label_weight))
            weights = gw.op("Where", ignored, zero, label_weight)
        return _Terms(gw.op("Where", ignored, zero, loss), weights), ignored


class NLLLoss(_ClassLoss):
    """Negative log-likelihood of class indices: MindSpore's ``nn.NLLLoss``.

    The logits are log-probabilities ``[N, C]`` (or ``[N, C, d1, ...]``, or
    ``[C]``); labels are class indices shaped like the logits without the class
    axis, int32 (MindSpore's dtype) or int64. Per position
    ``loss = -weight[t] * logits[t]``, 0 where ``t == ignore_index``.

    Args:
        weight: one weight per class (default: all 1).
        ignore_index: a label value that contributes neither loss nor gradient.
        reduction: ``'mean'`` (the default: divided by the summed weights of
            the labels not ignored), ``'sum'`` or ``'none'``.

    Raises:
        InputError: a bad weight or ignore_index.
    """

    def __init__(self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(weight, ignore_index, reduction)

    def label_dtypes(self) -> tuple[np.dtype, ...]:
        return _INDEX_LABELS

    def terms(self, gw: GraphWriter, batch: _Batch, label_dtype: np.dtype) -> _Terms:
        return self.index_terms(gw, batch.logits, batch, label_dtype)[0]


class CrossEntropyLoss(_ClassLoss):
    """Softmax cross-entropy: MindSpore's ``nn.CrossEntropyLoss``.

    The logits are ``[N, C]`` (or ``[N, C, d1, ...]``, or ``[C]``). The label's
    dtype picks the target type:

    - class indices (int32, MindSpore's only index dtype), shaped like the logits
      without the class axis: ``loss = (1 - s) * nll + s / C * smooth`` with
      ``nll = -weight[t] * log_softmax(logits)[t]`` and
      ``smooth = -sum_c weight[c] * log_softmax(logits)[c]``, both 0 where
      ``t == ignore_index``; ``'mean'`` divides by the summed weights of the
      labels not ignored;
    - probabilities (float32 or float16 as in MindSpore; float64 too), shaped
      like the logits: ``loss = -sum_c weight[c] * log_softmax(logits)[c] *
      (target[c] * (1 - s) + s / C)``; ``'mean'`` divides by the number of
      positions; ``ignore_index`` plays no part.

    ``s`` is ``label_smoothing``.

    Args:
        weight: one weight per class (default: all 1).
        ignore_index: a class-index label value that contributes neither loss nor gradient.
        reduction: ``'mean'`` (the default), ``'sum'`` or ``'none'``.
        label_smoothing: in ``[0, 1]``.

    Raises:
        InputError: a bad weight, ignore_index or label_smoothing.
    """

    def __init__(
        self, weight: Any = None, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0
    ) -> None:
        super().__init__(weight, ignore_index, reduction)
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or not (
            0.0 <= label_smoothing <= 1.0
        ):
            raise InputError(
                f"{type(self).__name__}'s label_smoothing must be a number in [0, 1], got {label_smoothing!r}."
            )
        self.label_smoothing = float(label_smoothing)

    def label_dtypes(self) -> tuple[np.dtype, ...]:
        return (np.dtype(np.int32), *_TARGET_LABELS)

    def label_shape(self, logits: TensorInfo, label_dtype: np.dtype | None = None) -> tuple | None:
        if label_dtype is not None and np.dtype(label_dtype).kind == "f":
            return logits.shape
        return _without_class_axis(logits)

    def terms(self, gw: GraphWriter, batch: _Batch, label_dtype: np.dtype) -> _Terms:
        log_probs = log_softmax(gw, batch.logits, _AXIS)
        if np.dtype(label_dtype).kind == "f":
            return self._probability_terms(gw, log_probs, batch, label_dtype)
        terms, ignored = self.index_terms(gw, log_probs, batch, label_dtype)
        if self.label_smoothing == 0.0:
            return terms
        weighted = log_probs if self.weight is None else gw.op("Mul", log_probs, self.class_weight(gw, batch))
        smooth = gw.op("Neg", gw.reduce("ReduceSum", weighted, [_AXIS], keepdims=False))
        smooth = gw.op("Where", ignored, gw.constant(0.0, batch.info.dtype), smooth)
        kept = gw.op("Mul", terms.loss, gw.constant(1.0 - self.label_smoothing, batch.info.dtype))
        spread = gw.op("Mul", smooth, gw.constant(self.label_smoothing / self._classes(batch), batch.info.dtype))
        return _Terms(gw.op("Add", kept, spread), terms.weights)

    def _probability_terms(self, gw: GraphWriter, log_probs: str, batch: _Batch, label_dtype: np.dtype) -> _Terms:
        dtype = batch.info.dtype
        target = batch.label
        if self.label_smoothing != 0.0:  # in the label's dtype, as MindSpore does
            scaled = gw.op("Mul", target, gw.constant(1.0 - self.label_smoothing, label_dtype))
            target = gw.op("Add", scaled, gw.constant(self.label_smoothing / self._classes(batch), label_dtype))
        if label_dtype != dtype:
            target = gw.cast(target, dtype)
        product = gw.op("Mul", log_probs, target)
        if self.weight is not None:
            product = gw.op("Mul", product, self.class_weight(gw, batch))
        return _Terms(gw.op("Neg", gw.reduce("ReduceSum", product, [_AXIS], keepdims=False)))

    def _classes(self, batch: _Batch) -> int:
        if not isinstance(batch.classes, int):
            raise InputError(
                f"label_smoothing needs a static number of classes, the logits have {batch.info.shape_text()}: "
                "export the backbone with static shapes."
            )
        return batch.classes
