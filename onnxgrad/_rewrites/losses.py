"""Losses as their formulas: NegativeLogLikelihoodLoss, and SoftmaxCrossEntropyLoss where the builder's
gradient is wrong."""

from __future__ import annotations

import numpy as np
import onnx

from onnxgrad._graph import GraphWriter
from onnxgrad._rewrites._common import attr, constant, is_float, read_names
from onnxgrad._rewrites._registry import NO_GRADIENT, WRONG_GRADIENT, register


def _negative_log_likelihood(node: onnx.NodeProto, gw: GraphWriter, log_prob: str, elem: int) -> str:
    """The loss of a NegativeLogLikelihoodLoss or SoftmaxCrossEntropyLoss node (labels, optional
    class weights, ignore_index, reduction) on ``log_prob``, by its formula: the class weights get
    gradients too."""
    labels = gw.op("Cast", node.input[1], to=onnx.TensorProto.INT64)
    weights = node.input[2] if len(node.input) > 2 and node.input[2] else None
    ignore = attr(node, "ignore_index")
    mask = None
    if ignore is not None:
        mask = gw.op("Not", gw.op("Equal", labels, gw.constant(np.array(ignore, np.int64))))
        labels = gw.op("Where", mask, labels, gw.constant(np.array(0, np.int64)))
    picked = gw.squeeze(gw.op("GatherElements", log_prob, gw.unsqueeze(labels, [1]), axis=1), [1])
    loss = gw.op("Neg", picked)
    scale = gw.op("Gather", weights, labels) if weights is not None else None
    if mask is not None:
        as_float = gw.op("Cast", mask, to=elem)
        scale = as_float if scale is None else gw.op("Mul", scale, as_float)
    if scale is not None:
        loss = gw.op("Mul", loss, scale)
    reduction = attr(node, "reduction", "mean")
    if reduction == "sum":
        loss = gw.reduce("ReduceSum", loss, None, False)
    elif reduction == "mean":
        total = gw.reduce("ReduceSum", loss, None, False)
        count = gw.reduce("ReduceSum", scale, None, False) if scale is not None else None
        loss = gw.op("Div", total, count) if count is not None else gw.reduce("ReduceMean", loss, None, False)
    return loss


@register(
    "SoftmaxCrossEntropyLoss", why=WRONG_GRADIENT,
    note="ignores the gradient of log_prob and gives tensor weights none",
)
def _softmax_cross_entropy(node, gw, types) -> bool:
    """SoftmaxCrossEntropyLoss as its formula when its log_prob output is read or its class weights
    are a tensor: ORT's gradient ignores log_prob's incoming gradient and gives weights none."""
    read = read_names(gw)
    log_prob_read = len(node.output) > 1 and node.output[1] in read
    weights = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if not log_prob_read and (weights is None or constant(gw, weights) is not None):
        return False
    x = node.input[0]
    if not is_float(types, x):
        return False
    log_prob = gw.op("LogSoftmax", x, axis=1)
    gw.node("Identity", [_negative_log_likelihood(node, gw, log_prob, types[x][0])], [node.output[0]])
    if log_prob_read:
        gw.node("Identity", [log_prob], [node.output[1]])
    return True


@register("NegativeLogLikelihoodLoss", why=NO_GRADIENT)
def _nll_loss(node, gw, types) -> bool:
    """NegativeLogLikelihoodLoss by its formula: no gradient in the builder."""
    x = node.input[0]
    if not is_float(types, x):
        return False
    gw.node("Identity", [_negative_log_likelihood(node, gw, x, types[x][0])], node.output[:1])
    return True
