"""Losses as their formulas: NegativeLogLikelihoodLoss, and SoftmaxCrossEntropyLoss where the builder's
gradient is wrong."""

from __future__ import annotations

import numpy as np
import onnx

from onnxgrad._graph import GraphWriter
from onnxgrad._rewrites._common import attr, constant, is_float, read_names
from onnxgrad._rewrites._registry import NO_GRADIENT, WRONG_GRADIENT, register


def _negative_log_likelihood(node: onnx.NodeProto, w: GraphWriter, log_prob: str, elem: int) -> str:
    """The loss of a NegativeLogLikelihoodLoss or SoftmaxCrossEntropyLoss node (labels, optional
    class weights, ignore_index, reduction) on ``log_prob``, by its formula: the class weights get
    gradients too."""
    labels = w.op("Cast", node.input[1], to=onnx.TensorProto.INT64)
    weights = node.input[2] if len(node.input) > 2 and node.input[2] else None
    ignore = attr(node, "ignore_index")
    mask = None
    if ignore is not None:
        mask = w.op("Not", w.op("Equal", labels, w.constant(np.array(ignore, np.int64))))
        labels = w.op("Where", mask, labels, w.constant(np.array(0, np.int64)))
    picked = w.squeeze(w.op("GatherElements", log_prob, w.unsqueeze(labels, [1]), axis=1), [1])
    loss = w.op("Neg", picked)
    scale = w.op("Gather", weights, labels) if weights is not None else None
    if mask is not None:
        as_float = w.op("Cast", mask, to=elem)
        scale = as_float if scale is None else w.op("Mul", scale, as_float)
    if scale is not None:
        loss = w.op("Mul", loss, scale)
    reduction = attr(node, "reduction", "mean")
    if reduction == "sum":
        loss = w.reduce("ReduceSum", loss, None, False)
    elif reduction == "mean":
        total = w.reduce("ReduceSum", loss, None, False)
        count = w.reduce("ReduceSum", scale, None, False) if scale is not None else None
        loss = w.op("Div", total, count) if count is not None else w.reduce("ReduceMean", loss, None, False)
    return loss


@register(
    "SoftmaxCrossEntropyLoss", why=WRONG_GRADIENT,
    note="ignores the gradient of log_prob and gives tensor weights none",
)
def _softmax_cross_entropy(node, w, types) -> bool:
    """SoftmaxCrossEntropyLoss as its formula when its log_prob output is read or its class weights
    are a tensor: ORT's gradient ignores log_prob's incoming gradient and gives weights none."""
    read = read_names(w)
    log_prob_read = len(node.output) > 1 and node.output[1] in read
    weights = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if not log_prob_read and (weights is None or constant(w, weights) is not None):
        return False
    x = node.input[0]
    if not is_float(types, x):
        return False
    log_prob = w.op("LogSoftmax", x, axis=1)
    w.node("Identity", [_negative_log_likelihood(node, w, log_prob, types[x][0])], [node.output[0]])
    if log_prob_read:
        w.node("Identity", [log_prob], [node.output[1]])
    return True


@register("NegativeLogLikelihoodLoss", why=NO_GRADIENT)
def _nll_loss(node, w, types) -> bool:
    """NegativeLogLikelihoodLoss by its formula: no gradient in the builder."""
    x = node.input[0]
    if not is_float(types, x):
        return False
    w.node("Identity", [_negative_log_likelihood(node, w, x, types[x][0])], node.output[:1])
    return True
