"""``SoftmaxCrossEntropyWithLogits`` with MindSpore's gradients."""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnxgrad import _custom_gradients as cg
from onnxgrad._graph import GraphWriter, TensorInfo
from onnxgrad.errors import InputError
from onnxgrad.nn._loss import LossFn, log_softmax

__all__ = ["SoftmaxCrossEntropyWithLogits"]

# Dense form: loss = -sum(labels * log_softmax(logits), -1), kept as [N, 1].
# MindSpore back-propagates (softmax - labels) * sens whatever the label rows
# sum to (the true gradient is softmax * sum(labels) - labels), and gives the
# labels no gradient: hence a function op with its own gradient.
_DENSE = cg.register(
    cg.CustomGradient(
        op_type="SoftmaxCrossEntropyDense",
        nodes=(
            cg.GradNode("Softmax", ("I(0)",), ("probs",), {"axis": -1}),
            cg.GradNode("Sub", ("probs", "I(1)"), ("diff",)),
            cg.GradNode("Mul", ("diff", "GO(0)"), ("GI(0)",)),
        ),
        stop_inputs=frozenset({1}),
    )
)


def _dense_function(opset: int, rank: int):
    """The dense loss as a function: ``loss = -sum(labels * log_softmax(logits), -1)``, kept as [N, 1].

    The row's terms are padded with one +0.0 before the sum, as MindSpore's
    kernel starts its sum at +0.0: all-zero label rows (the seed example's) then
    give -0.0, which MindSpore prints as ``-0.00000000e+00``, where ONNX
    Runtime's sum of -0.0 terms alone would be -0.0 and the loss +0.0. Pad's
    fill value is typed like its input, so the function serves every float dtype.
    """
    body = GraphWriter(helper.make_graph([], "body", [], []), opset, prefix="sce", inline_constants=True)
    terms = body.op("Mul", body.op("LogSoftmax", "logits", axis=-1), "labels")
    pads = [0] * (2 * rank - 1) + [1]  # one element after the last axis
    if opset >= 11:
        padded = body.op("Pad", terms, body.constant(pads, np.int64))
    else:
        padded = body.op("Pad", terms, pads=pads)
    total = body.reduce("ReduceSum", padded, [-1], keepdims=True)
    body.node("Neg", [total], ["loss"])
    return helper.make_function(
        cg.DOMAIN, _DENSE.op_type, ["logits", "labels"], ["loss"], list(body.graph.node),
        [helper.make_opsetid("", opset)],
    )


class SoftmaxCrossEntropyWithLogits(LossFn):
    """Softmax cross-entropy between logits ``[N, C]`` and labels: MindSpore's loss.

    Args:
        sparse: labels are class indices ``[N]`` (int32 or int64) instead of
            per-class targets ``[N, C]``.
        reduction: ``'none'`` (the default: one loss per row), ``'mean'`` or ``'sum'``.

    Gradients follow MindSpore: the dense form back-propagates
    ``(softmax(logits) - labels) * sens`` even when label rows do not sum to 1,
    and the labels get a zero gradient.
    """

    def __init__(self, sparse: bool = False, reduction: str = "none") -> None:
        super().__init__(reduction)
        self.sparse = sparse

    def label_dtypes(self) -> tuple[np.dtype, ...]:
        if self.sparse:
            return (np.dtype(np.int32), np.dtype(np.int64))
        return (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16))

    def label_shape(self, logits: TensorInfo, label_dtype: np.dtype | None = None) -> tuple | None:
        if self.sparse and logits.shape is not None:
            return logits.shape[:-1]
        return logits.shape

    def loss_shape(self, logits: TensorInfo) -> tuple | None:
        return None if logits.shape is None else logits.shape[:-1]

    def class_axis(self) -> int | None:
        return -1 if self.sparse else None

    def _build(self, gw: GraphWriter, logits: str, label: str, logits_info: TensorInfo, label_dtype: np.dtype) -> str:
        if self.sparse:
            index = gw.unsqueeze(gw.cast(label, np.int64), [-1])
            picked = gw.op("GatherElements", log_softmax(gw, logits, -1), index, axis=-1)
            return gw.squeeze(gw.op("Neg", picked), [-1])
        if label_dtype != logits_info.dtype:
            label = gw.cast(label, logits_info.dtype)
        if logits_info.shape is None:
            raise InputError(
                "The dense SoftmaxCrossEntropyWithLogits needs logits of known rank, got any shape: "
                "export the backbone with a static output shape."
            )
        gw.add_function(_dense_function(gw.opset, len(logits_info.shape)))
        per_row = gw.op(_DENSE.op_type, logits, label, domain=cg.DOMAIN)
        return gw.squeeze(per_row, [-1])
