"""Losses as ONNX subgraphs, and :class:`WithLossCell`.

A loss is one small unit: a :class:`LossFn` subclass that says which label
dtypes it takes and emits the nodes computing the per-element loss from
``logits`` and ``label`` (``_build``); the base class applies MindSpore's
reduction (``_reduce``). A loss whose mean is not the plain mean of its
elements (a weighted mean) overrides ``_emit`` instead.

``LossFn`` is closed: the losses are written against onnxgrad's private graph
writer (``_graph.GraphWriter``), which is not a public API, so only onnxgrad
itself defines losses. A custom loss belongs in the model: export the network
with the loss as its output and differentiate that network directly.
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper

from onnxgrad import _versions
from onnxgrad._graph import GraphWriter, TensorInfo, default_opset
from onnxgrad._network import Network, load
from onnxgrad.errors import InputError

__all__ = ["LossFn", "attach_loss", "WithLossCell", "log_softmax", "LABEL", "LOSS_OUTPUT"]

#: Names of the label input and loss output a loss attaches (made unique if taken).
LABEL = "label"
LOSS_OUTPUT = "loss"

_REDUCTIONS = ("none", "mean", "sum")


class LossFn(abc.ABC):
    """Base of the losses in ``onnxgrad.nn``; closed to subclasses outside onnxgrad.

    Use it to recognise a loss (``isinstance(fn, onnxgrad.nn.LossFn)``). A loss of
    your own belongs in the model: export the network with the loss as its
    output, then differentiate it with ``ForwardValueAndGrad``.

    Args:
        reduction: ``'none'``, ``'mean'`` or ``'sum'`` over all loss elements.

    Raises:
        InputError: a class outside onnxgrad subclasses it.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The emitting hooks take onnxgrad's private graph writer, which may change without notice:
        # a subclass elsewhere would break silently (an override of a renamed hook is never called).
        if not cls.__module__.startswith("onnxgrad."):
            raise InputError(
                f"{cls.__qualname__} subclasses onnxgrad.nn.LossFn, which is closed: losses are written against "
                "onnxgrad's private graph writer. Make the loss part of the model instead (export the network with "
                "the loss as its output and pass that to ForwardValueAndGrad), or use one of onnxgrad.nn's losses."
            )

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in _REDUCTIONS:
            raise InputError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
        self.reduction = reduction

    def label_dtypes(self) -> tuple[np.dtype, ...]:
        """Label dtypes the loss takes; the first is the default."""
        return (np.dtype(np.float32),)

    def label_shape(self, logits: TensorInfo, label_dtype: np.dtype | None = None) -> tuple | None:
        """The label's shape for logits of this shape (default: the same).

        Args:
            logits: the backbone's output.
            label_dtype: the label's dtype, for losses whose labels are either
                class indices or per-class targets; None means the default.
        """
        return logits.shape

    def loss_shape(self, logits: TensorInfo) -> tuple | None:
        """The unreduced loss's shape for logits of this shape (default: the same)."""
        return logits.shape

    def class_axis(self) -> int | None:
        """The logits' class axis when the labels are class indices (checked per call), else None."""
        return None

    def allowed_label(self) -> int | None:
        """A label value outside ``[0, classes)`` that is allowed (``ignore_index``), or None."""
        return None

    def output_shape(self, logits: TensorInfo) -> tuple | None:
        """The shape of the loss after reduction."""
        return self.loss_shape(logits) if self.reduction == "none" else ()

    @abc.abstractmethod
    def _build(self, gw: GraphWriter, logits: str, label: str, logits_info: TensorInfo, label_dtype: np.dtype) -> str:
        """Emits the unreduced loss; returns its tensor name."""

    def _reduce(self, gw: GraphWriter, loss: str) -> str:
        """Applies the reduction (MindSpore's ``LossBase.get_loss``)."""
        if self.reduction == "mean":
            return gw.reduce("ReduceMean", loss, None, keepdims=False)
        if self.reduction == "sum":
            return gw.reduce("ReduceSum", loss, None, keepdims=False)
        return loss

    def _emit(self, gw: GraphWriter, logits: str, label: str, logits_info: TensorInfo, label_dtype: np.dtype) -> str:
        """Emits the loss as the cell outputs it; returns its tensor name.

        By default ``_build`` then ``_reduce``; a loss whose mean divides
        by something other than the number of elements overrides this.
        """
        return self._reduce(gw, self._build(gw, logits, label, logits_info, label_dtype))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


def log_softmax(gw: GraphWriter, x: str, axis: int) -> str:
    """Emits ``x - logsumexp(x, axis)``, MindSpore's log-softmax inside its losses.

    Not ONNX's LogSoftmax: ONNX Runtime's LogSoftmaxGrad is float32-only, and
    before opset 13 LogSoftmax normalises over all trailing axes.
    """
    return gw.op("Sub", x, gw.reduce("ReduceLogSumExp", x, [axis], keepdims=True))


def float_array(value: Any, message: str, ndim: int | None = None) -> np.ndarray | None:
    """A loss's optional float argument (array-like or MindSpore Tensor) as numpy; None stays None.

    Raises:
        InputError: it does not hold floats, or has not ``ndim`` dimensions;
            ``message`` is formatted with the value's ``dtype`` and ``shape``.
    """
    if value is None:
        return None
    if hasattr(value, "asnumpy"):  # a MindSpore Tensor
        value = value.asnumpy()
    array = np.asarray(value)
    if array.dtype.kind != "f" or (ndim is not None and array.ndim != ndim):
        raise InputError(message.format(dtype=array.dtype, shape=list(array.shape)))
    return array


def attach_loss(model: onnx.ModelProto, loss_fn: LossFn, label_dtype: Any = None) -> onnx.ModelProto:
    """Appends a loss to a one-output model.

    Args:
        model: the backbone (not modified); its single output is the logits.
        loss_fn: the loss.
        label_dtype: the label's dtype (default: the loss's first).

    Returns:
        A new model taking the backbone's inputs then the label, with the loss
        as its only output.

    Raises:
        InputError: the backbone has several outputs, or the loss does not take
            labels of ``label_dtype``.
    """
    if len(model.graph.output) != 1:
        raise InputError(
            f"A loss needs a backbone with one output, this one has {len(model.graph.output)}: "
            "export a backbone that returns only the logits."
        )
    allowed = loss_fn.label_dtypes()
    dtype = np.dtype(label_dtype) if label_dtype is not None else allowed[0]
    if dtype not in allowed:
        raise InputError(
            f"{type(loss_fn).__name__} takes labels of dtype {[str(d) for d in allowed]}, got {dtype}: "
            "convert the labels."
        )
    result = onnx.ModelProto()
    result.CopyFrom(model)
    # The loss is written at the opset gradients are built at, so no converter touches its functions.
    result = _versions.normalize(result)
    graph = result.graph
    gw = GraphWriter(graph, default_opset(result), model=result)
    logits_info = TensorInfo.from_value_info(graph.output[0])
    label = gw.claim(LABEL)
    label_shape = loss_fn.label_shape(logits_info, dtype)
    graph.input.insert(
        _user_input_count(graph), helper.make_tensor_value_info(label, helper.np_dtype_to_tensor_dtype(dtype), label_shape)
    )
    loss = loss_fn._emit(gw, graph.output[0].name, label, logits_info, dtype)
    name = gw.claim(LOSS_OUTPUT)
    gw.node("Identity", [loss], [name])
    del graph.output[:]
    shape = loss_fn.output_shape(logits_info)
    # onnx.checker wants a shape on graph outputs; an unknown one is a list of unnamed dims.
    dims = shape if shape is not None else [None] * len(logits_info.shape or ())
    graph.output.append(helper.make_tensor_value_info(name, logits_info.elem_type, dims))
    return result


def _user_input_count(graph: onnx.GraphProto) -> int:
    # The label goes after the user inputs: before any input that is an initializer
    # (old IR) or, for a loaded Network's graph, before the parameters, which trail.
    initializers = {i.name for i in graph.initializer}
    for i, value in enumerate(graph.input):
        if value.name in initializers:
            return i
    return len(graph.input)


class WithLossCell(Network):
    """A backbone followed by a loss: MindSpore's ``nn.WithLossCell``.

    Called as ``cell(*backbone_inputs, label)``; its output is the loss. It
    shares the backbone's :class:`~onnxgrad.Parameter` objects. Labels of
    another dtype the loss takes (int64 class indices for a cell made for
    int32) are accepted too: a gradient call builds the cell for them once.

    Args:
        backbone: a :class:`~onnxgrad.Network` (or a path or ModelProto) with one output.
        loss_fn: a loss from ``onnxgrad.nn``.
        label_dtype: the label input's dtype (default: the loss's first, see
            :meth:`LossFn.label_dtypes`).

    Raises:
        InputError: the backbone has several outputs, ``loss_fn`` is not a loss,
            or the loss does not take labels of ``label_dtype``.

    Example:
        >>> net = onnxgrad.nn.WithLossCell(onnxgrad.load("models/seed_net.onnx"),
        ...                                onnxgrad.nn.SoftmaxCrossEntropyWithLogits())
    """

    def __init__(self, backbone: Network | Any, loss_fn: LossFn, label_dtype: Any = None) -> None:
        if not isinstance(backbone, Network):
            backbone = load(backbone)
        if not isinstance(loss_fn, LossFn):
            raise InputError(
                f"loss_fn must be a loss from onnxgrad.nn, got {type(loss_fn).__name__}: "
                "e.g. onnxgrad.nn.SoftmaxCrossEntropyWithLogits()."
            )
        self.backbone = backbone
        self.loss_fn = loss_fn
        model = attach_loss(backbone.model, loss_fn, label_dtype)
        super().__init__(model, backbone.trainable_params(), list(backbone.buffers_dict().values()))
        self._variants: dict[np.dtype, WithLossCell] = {self.inputs[-1].dtype: self}
        axis = loss_fn.class_axis()
        logits_shape = backbone.outputs[0].shape if backbone.outputs else None
        self._classes: int | None = None
        if axis is not None and logits_shape:
            size = logits_shape[min(axis, len(logits_shape) - 1)]  # unbatched logits [C]: the only axis
            if isinstance(size, int):
                self._classes = size
        if self._classes is not None and self.inputs[-1].dtype.kind in "iu":
            self._value_check = self._check_labels

    def _check_labels(self, arrays: Sequence[np.ndarray]) -> None:
        """Class-index labels must name a class (or be ignore_index): a wrong one would index
        another row or class silently."""
        labels, classes = arrays[-1], self._classes
        if not isinstance(labels, np.ndarray) or labels.size == 0 or classes is None:
            return
        low, high = int(labels.min()), int(labels.max())
        if low >= 0 and high < classes:
            return
        allowed = self.loss_fn.allowed_label()
        bad = labels[(labels < 0) | (labels >= classes)]
        if allowed is not None:
            bad = bad[bad != allowed]
        if bad.size:
            extra = f" or {allowed} (ignore_index)" if allowed is not None else ""
            raise InputError(
                f"Label {int(bad.flat[0])} is not a class: the labels of {type(self.loss_fn).__name__} must be in "
                f"[0, {classes}){extra} for logits with {classes} classes."
            )

    def _for_dtypes(self, dtypes: Sequence[np.dtype | None]) -> Network:
        """The cell for the arguments' label dtype (built once per dtype the loss takes)."""
        dtype = np.dtype(dtypes[-1])
        if dtype not in self._variants:
            if dtype not in self.loss_fn.label_dtypes():
                return self  # argument checking reports the dtype mismatch
            self._variants[dtype] = WithLossCell(self.backbone, self.loss_fn, label_dtype=dtype)
        return self._variants[dtype]
