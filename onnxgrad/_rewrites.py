"""Rewrites of ops whose gradient onnxruntime-training lacks or gets wrong.

Each rewrite replaces one node by standard ops with the same forward values
and correct built-in gradients:

- ReduceSumSquare, Sum, Elu, Softplus, PRelu and inference-mode
  BatchNormalization have no gradient in the builder;
- inference-mode Dropout back-propagates twice the gradient;
- opset-20 Gelu uses the erf gradient even with ``approximate='tanh'``.

A rewrite returns False to keep the node unchanged.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import onnx
from onnx import helper

from onnxgrad._graph import GraphWriter

__all__ = ["apply_rewrites"]

Rewrite = Callable[[onnx.NodeProto, GraphWriter, dict], bool]


def _attr(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _const_like(w: GraphWriter, value: float, ref: str, types: dict) -> str:
    # A scalar constant in the dtype of tensor `ref` (float32 when unknown).
    elem = types.get(ref, (onnx.TensorProto.FLOAT, None))[0]
    return w.constant(value, helper.tensor_dtype_to_np_dtype(elem))


def _reduce_sum_square(node, w, types) -> bool:
    x = node.input[0]
    square = w.op("Mul", x, w.op("Identity", x))
    keepdims = _attr(node, "keepdims", 1)
    axes = _attr(node, "axes")
    if len(node.input) > 1 and node.input[1]:  # opset 18: axes as an input
        w.node("ReduceSum", [square, node.input[1]], node.output, keepdims=keepdims,
               noop_with_empty_axes=_attr(node, "noop_with_empty_axes", 0))
    elif axes is not None:
        out = w.reduce("ReduceSum", square, axes, bool(keepdims))
        w.node("Identity", [out], node.output)
    else:
        w.node("ReduceSum", [square], node.output, keepdims=keepdims)
    return True


def _sum(node, w, types) -> bool:
    inputs = list(node.input)
    acc = inputs[0]
    for other in inputs[1:-1]:
        acc = w.op("Add", acc, other)
    if len(inputs) == 1:
        w.node("Identity", [acc], node.output)
    else:
        w.node("Add", [acc, inputs[-1]], node.output)
    return True


def _batch_norm(node, w, types) -> bool:
    training = _attr(node, "training_mode", 0)
    if training or len([o for o in node.output if o]) > 1:
        return False
    x, scale, bias, mean, var = node.input[:5]
    rank = len(types.get(x, (None, None))[1] or ())
    if rank < 2:
        return False
    eps = w.constant(_attr(node, "epsilon", 1e-5), helper.tensor_dtype_to_np_dtype(types[x][0]))
    inv_std = w.op("Reciprocal", w.op("Sqrt", w.op("Add", var, eps)))
    factor = w.op("Mul", scale, inv_std)
    shift = w.op("Sub", bias, w.op("Mul", mean, factor))
    # Per-channel vectors [C] broadcast against [N, C, d1, ...] as [C, 1, ...].
    channel_shape = w.constant([-1] + [1] * (rank - 2), np.int64)
    factor = w.op("Reshape", factor, channel_shape)
    shift = w.op("Reshape", shift, channel_shape)
    w.node("Add", [w.op("Mul", x, factor), shift], node.output[:1])
    return True


def _dropout(node, w, types) -> bool:
    training = node.input[2] if len(node.input) > 2 and node.input[2] else ""
    mask_used = len(node.output) > 1 and node.output[1]
    if training or mask_used:
        return False
    w.node("Identity", [node.input[0]], node.output[:1])
    return True


def _gelu(node, w, types) -> bool:
    x = node.input[0]
    half = _const_like(w, 0.5, x, types)
    one = _const_like(w, 1.0, x, types)
    if _attr(node, "approximate", "none") == "tanh":
        cube = w.op("Mul", w.op("Mul", x, w.op("Identity", x)), w.op("Identity", x))
        inner = w.op("Add", x, w.op("Mul", cube, _const_like(w, 0.044715, x, types)))
        core = w.op("Tanh", w.op("Mul", inner, _const_like(w, math.sqrt(2.0 / math.pi), x, types)))
    else:
        core = w.op("Erf", w.op("Mul", x, _const_like(w, 1.0 / math.sqrt(2.0), x, types)))
    w.node("Mul", [w.op("Mul", x, half), w.op("Add", core, one)], node.output)
    return True


def _elu(node, w, types) -> bool:
    # Elu(x) = Relu(x) + alpha * (exp(-Relu(-x)) - 1)
    x = node.input[0]
    negative_part = w.op("Neg", w.op("Relu", w.op("Neg", x)))
    expm1 = w.op("Sub", w.op("Exp", negative_part), _const_like(w, 1.0, x, types))
    scaled = w.op("Mul", expm1, _const_like(w, _attr(node, "alpha", 1.0), x, types))
    w.node("Add", [w.op("Relu", x), scaled], node.output)
    return True


def _softplus(node, w, types) -> bool:
    # Softplus(x) = Relu(x) + log(1 + exp(-|x|)), stable for large |x|.
    x = node.input[0]
    abs_x = w.op("Add", w.op("Relu", x), w.op("Relu", w.op("Neg", x)))
    log_term = w.op("Log", w.op("Add", w.op("Exp", w.op("Neg", abs_x)), _const_like(w, 1.0, x, types)))
    w.node("Add", [w.op("Relu", x), log_term], node.output)
    return True


def _prelu(node, w, types) -> bool:
    # PRelu(x, slope) = Relu(x) - slope * Relu(-x)
    x, slope = node.input[:2]
    w.node("Sub", [w.op("Relu", x), w.op("Mul", slope, w.op("Relu", w.op("Neg", x)))], node.output)
    return True


_REWRITES: dict[str, Rewrite] = {
    "ReduceSumSquare": _reduce_sum_square,
    "Sum": _sum,
    "BatchNormalization": _batch_norm,
    "Dropout": _dropout,
    "Gelu": _gelu,
    "Elu": _elu,
    "Softplus": _softplus,
    "PRelu": _prelu,
}


def apply_rewrites(model: onnx.ModelProto, w: GraphWriter, types: dict) -> None:
    """Rewrites, in place, every node of the main graph that needs it.

    Args:
        model: the (onnxgrad-owned) model.
        w: a writer on its graph.
        types: ``{tensor: (elem_type, shape)}`` from shape inference.
    """
    graph = model.graph
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        rewrite = _REWRITES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        w.nodes = []
        if rewrite is not None and rewrite(node, w, types):
            new_nodes.extend(w.nodes)
        else:
            new_nodes.append(node)
    w.nodes = graph.node
    del graph.node[:]
    graph.node.extend(new_nodes)
