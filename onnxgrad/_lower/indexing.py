"""Indexing: the gradients of Gather, GatherElements, GatherND and Slice as scatters into zeros."""

from __future__ import annotations

import numpy as np
import onnx

from onnxgrad._graph import attrs as node_attrs
from onnxgrad._lower._lowerer import Lowerer
from onnxgrad._lower._registry import lowers
from onnxgrad.errors import UnsupportedGradientError


def flat_scatter(lw: Lowerer, flat_index: str, dy: str, shape: str, out: str, accumulate: bool) -> None:
    """``out`` of shape ``shape``: zeros with ``dy``'s values added at flat positions ``flat_index``."""
    numel = lw.w.reduce("ReduceProd", shape, None, keepdims=True)
    zeros = lw.zeros(numel, dy)
    flat_dy = lw.w.op("Reshape", dy, lw.ints([-1]))
    flat_ix = lw.w.op("Reshape", flat_index, lw.ints([-1]))
    attrs = {"reduction": "add"} if accumulate else {}
    scattered = lw.w.op("ScatterElements", zeros, flat_ix, flat_dy, axis=0, **attrs)
    lw.emit("Reshape", [scattered, shape], out)


def _iota(lw: Lowerer, shape: str) -> str:
    """0, 1, 2, ... in ``shape``: each element's flat position."""
    numel = lw.w.reduce("ReduceProd", shape, None, keepdims=False)
    count = lw.w.op("Range", lw.w.constant(np.array(0, np.int64)), numel, lw.w.constant(np.array(1, np.int64)))
    return lw.w.op("Reshape", count, shape)


@lowers("com.microsoft::GatherGrad")
def _gather_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    shape, indices, dy = node.input[:3]
    axis = node_attrs(node).get("axis", 0)
    rank = len(lw.static_value(shape, node)) if axis < 0 else 0
    axis = axis + rank if axis < 0 else axis
    if axis == 0:  # embeddings: rows scattered by ScatterND, no per-element index tensor
        ix = lw.w.op("Cast", indices, to=onnx.TensorProto.INT64)
        rows = lw.w.op("Gather", shape, lw.w.constant(np.array(0, np.int64)), axis=0)
        negative = lw.w.op("Cast", lw.w.op("Less", ix, lw.w.constant(np.array(0, np.int64))), to=onnx.TensorProto.INT64)
        ix = lw.w.op("Add", ix, lw.w.op("Mul", negative, rows))
        lw.emit("ScatterND", [lw.zeros(shape, dy), lw.w.unsqueeze(ix, [-1]), dy], node.output[0], reduction="add")
        return
    flat = lw.w.op("Gather", _iota(lw, shape), indices, axis=axis)
    flat_scatter(lw, flat, dy, shape, node.output[0], accumulate=True)


@lowers("com.microsoft::GatherElementsGrad")
def _gather_elements_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, shape, indices = node.input[:3]
    axis = node_attrs(node).get("axis", 0)
    lw.emit("ScatterElements", [lw.zeros(shape, dy), indices, dy], node.output[0], axis=axis, reduction="add")


@lowers("com.microsoft::GatherNDGrad")
def _gather_nd_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    shape, indices, dy = node.input[:3]
    if node_attrs(node).get("batch_dims", 0):
        raise UnsupportedGradientError(
            f"The gradient of GatherND with batch_dims > 0 (node {node.name!r}) has no standard-op form yet: "
            "reshape the batch dimensions into the indices instead.",
            op_type="GatherND", node=node.name,
        )
    ix = lw.w.op("Cast", indices, to=onnx.TensorProto.INT64)
    lw.emit("ScatterND", [lw.zeros(shape, dy), ix, dy], node.output[0], reduction="add")


@lowers("com.microsoft::SliceGrad")
def _slice_grad(lw: Lowerer, node: onnx.NodeProto) -> None:
    dy, shape = node.input[:2]
    selected = lw.w.op("Slice", _iota(lw, shape), *node.input[2:])
    flat_scatter(lw, selected, dy, shape, node.output[0], accumulate=False)
