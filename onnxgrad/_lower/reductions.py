"""Reductions: ReduceSum over axes found at run time, made right on tensors with no elements
(a pass after the lowerings)."""

from __future__ import annotations

import numpy as np
import onnx

from onnxgrad._graph import GraphWriter, default_opset, is_default_domain
from onnxgrad._graph import attrs as node_attrs


def reduce_sums_safe_when_empty(model: onnx.ModelProto) -> None:
    """Rewrites each ReduceSum over axes known only at run time, with ``noop_with_empty_axes``, in place.

    The builder sums a broadcast gradient over axes it finds at run time. On a
    tensor with no elements ONNX Runtime's ReduceSum gets such a sum wrong: empty
    axes give a shape of ones instead of the input (a gradient of shape [1] for a
    slice that came out empty), and a negative axis is not reduced. Here X gets a
    leading axis of size 1 that is always reduced, so the axes are never empty,
    and negative axes are made positive first.
    """
    static = {init.name for init in model.graph.initializer}

    def affected(node: onnx.NodeProto) -> bool:
        return (
            node.op_type == "ReduceSum" and is_default_domain(node.domain) and len(node.input) > 1
            and node.input[1] not in ("", *static) and bool(node_attrs(node).get("noop_with_empty_axes", 0))
        )

    if not any(affected(node) for node in model.graph.node):
        return
    writer = GraphWriter(model.graph, default_opset(model), prefix="onnxgrad/lower")
    nodes: list[onnx.NodeProto] = []
    writer.nodes = nodes
    lead, zero, one = writer.constant([0], np.int64), writer.constant(0, np.int64), writer.constant(1, np.int64)
    for node in list(model.graph.node):
        if not affected(node):
            nodes.append(node)
            continue
        x, axes = node.input[:2]
        rank = writer.op("Size", writer.op("Shape", x))
        positive = writer.op("Where", writer.op("Less", axes, zero), writer.op("Add", axes, rank), axes)
        shifted = writer.op("Add", positive, one)
        all_axes = writer.op("Concat", lead, shifted, axis=0)
        keepdims = node_attrs(node).get("keepdims", 1)
        outputs = 1 if keepdims else list(node.output)  # without keepdims the leading axis goes with the sum
        summed = writer.node("ReduceSum", [writer.op("Unsqueeze", x, lead), all_axes], outputs, keepdims=keepdims)[0]
        if keepdims:
            writer.node("Squeeze", [summed, lead], list(node.output))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
