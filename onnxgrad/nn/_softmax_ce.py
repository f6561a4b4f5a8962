"""``SoftmaxCrossEntropyWithLogits`` with MindSpore's gradients."""

from __future__ import annotations

import numpy as np
from onnx import helper

from onnxgrad import _custom_gradients as cg
from onnxgrad._graph import GraphWriter, TensorInfo
from onnxgrad.nn._loss import LossFn

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


def _dense_function(opset: int):
    body = GraphWriter(helper.make_graph([], "body", [], []), opset, prefix="sce", inline_constants=True)
    log_probs = body.op("LogSoftmax", "logits", axis=-1)
    picked = body.reduce("ReduceSum", body.op("Mul", log_probs, "labels"), [-1], keepdims=True)
    body.node("Neg", [picked], ["loss"])
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

    def label_shape(self, logits: TensorInfo) -> tuple | None:
        if self.sparse and logits.shape is not None:
            return logits.shape[:-1]
        return logits.shape

    def loss_shape(self, logits: TensorInfo) -> tuple | None:
        return None if logits.shape is None else logits.shape[:-1]

    def build(self, w: GraphWriter, logits: str, label: str, logits_info: TensorInfo, label_dtype: np.dtype) -> str:
        if self.sparse:
            index = w.unsqueeze(w.cast(label, np.int64), [-1])
            picked = w.op("GatherElements", w.op("LogSoftmax", logits, axis=-1), index, axis=-1)
            return w.squeeze(w.op("Neg", picked), [-1])
        if label_dtype != logits_info.dtype:
            label = w.cast(label, logits_info.dtype)
        w.add_function(_dense_function(w.opset))
        per_row = w.op(_DENSE.op_type, logits, label, domain=cg.DOMAIN)
        return w.squeeze(per_row, [-1])
