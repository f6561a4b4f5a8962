"""Normalisation and losses: LayerNormalizationGrad, SoftmaxCrossEntropyLossGrad."""

from __future__ import annotations

import numpy as np
import onnx

from onnxgrad._graph import attrs as node_attrs
from onnxgrad._lower._lowerer import Lowerer
from onnxgrad._lower._registry import lowers


@lowers("com.microsoft::LayerNormalizationGrad")
def _layer_norm_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, x, scale, mean, inv_std = node.input[:5]
    x_shape = lw.shape(x, node)
    rank = len(x_shape)
    axis = node_attrs(node).get("axis", -1)
    axis = axis + rank if axis < 0 else axis
    norm_axes = list(range(axis, rank))
    outputs = list(node.output) + [""] * (3 - len(node.output))
    # Mean and InvStdDev are stashed in stash_type (float32 by default), whatever X is.
    mean, inv_std = lw.w.op("CastLike", mean, x), lw.w.op("CastLike", inv_std, x)
    xhat = lw.w.op("Mul", lw.w.op("Sub", x, mean), inv_std)
    if outputs[2]:
        lw.reduce_to(dy, x_shape, lw.shape(scale, node), out=outputs[2])
    if outputs[1]:
        lw.reduce_to(lw.w.op("Mul", dy, xhat), x_shape, lw.shape(scale, node), out=outputs[1])
    if outputs[0]:
        g = lw.w.op("Mul", dy, scale)
        mean_g = lw.w.reduce("ReduceMean", g, norm_axes, keepdims=True)
        mean_gx = lw.w.reduce("ReduceMean", lw.w.op("Mul", g, xhat), norm_axes, keepdims=True)
        centered = lw.w.op("Sub", lw.w.op("Sub", g, mean_g), lw.w.op("Mul", xhat, mean_gx))
        lw.emit("Mul", [inv_std, centered], outputs[0])


@lowers("com.microsoft::SoftmaxCrossEntropyLossGrad")
def _softmax_ce_loss_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, log_prob, label = node.input[:3]
    weight = node.input[3] if len(node.input) > 3 and node.input[3] else ""
    attrs = node_attrs(node)
    reduction = attrs.get("reduction", b"mean")
    reduction = reduction.decode() if isinstance(reduction, bytes) else reduction
    classes = lw.shape(log_prob, node)[1]
    label64 = lw.w.op("Cast", label, to=onnx.TensorProto.INT64)
    valid = None
    if "ignore_index" in attrs:
        valid = lw.w.op("Not", lw.w.op("Equal", label64, lw.ints([attrs["ignore_index"]])))
        label64 = lw.w.op("Where", valid, label64, lw.w.constant(np.array(0, np.int64)))
    on_off = lw.w.op("CastLike", lw.w.constant(np.array([0.0, 1.0], np.float32)), log_prob)
    one_hot = lw.w.op("OneHot", label64, lw.w.constant(np.array(classes, np.int64)), on_off, axis=1)
    per_label = None  # each label's class weight, 0 where ignored
    if weight:
        per_label = lw.w.op("Gather", weight, label64, axis=0)
    if valid is not None:
        mask = lw.w.op("CastLike", valid, log_prob)
        per_label = mask if per_label is None else lw.w.op("Mul", per_label, mask)
    diff = lw.w.op("Sub", lw.w.op("Exp", log_prob), one_hot)
    if per_label is None:  # dY is per label ("none") or a scalar
        coeff = dy
        if reduction == "mean":
            coeff = lw.w.op("Div", dy, lw.scalar(float(np.prod(lw.shape(label, node))), log_prob))
        if reduction == "none":
            coeff = lw.w.unsqueeze(coeff, [1])
        lw.emit("Mul", [diff, coeff], node.output[0])
        return
    coeff = lw.w.op("Mul", dy, per_label)
    if reduction == "mean":
        coeff = lw.w.op("Div", coeff, lw.w.reduce("ReduceSum", per_label, None, keepdims=False))
    lw.emit("Mul", [diff, lw.w.unsqueeze(coeff, [1])], node.output[0])
