"""Which edges a gradient flows along: the stop edges of each op, and the tensors a
gradient reaches back to from some targets (bodies of If/Loop/Scan included)."""

from __future__ import annotations

from typing import Mapping

import onnx
from onnx import helper

from onnxgrad import _custom_gradients
from onnxgrad._graph import FLOAT_TYPES

__all__ = ["stopped_inputs", "gradient_sources", "node_outer_reads"]

# Input edges no gradient flows through (besides non-float tensors), by op type.
_STOP_EDGES: dict[str, frozenset[int]] = {
    op: frozenset(idx)
    for op, idx in {
        "Shape": {0}, "Size": {0}, "Reshape": {1}, "Expand": {1}, "Tile": {1}, "Slice": {1, 2, 3, 4},
        "Gather": {1}, "GatherElements": {1}, "GatherND": {1}, "ScatterElements": {1}, "Where": {0},
        "TopK": {1}, "Resize": {1, 2, 3}, "Pad": {1, 2}, "Squeeze": {1}, "Unsqueeze": {1},
        "ReduceSum": {1}, "ReduceMean": {1}, "ReduceMax": {1}, "ReduceMin": {1}, "Split": {1},
        "Dropout": {1, 2}, "SoftmaxCrossEntropyLoss": {1, 2}, "ConstantOfShape": {0}, "Range": {0, 1, 2},
        "OneHot": {0, 1, 2}, "NonZero": {0}, "Clip": {1, 2},
    }.items()
}


def stopped_inputs(node: onnx.NodeProto) -> frozenset[int]:
    """Input indices of ``node`` that no gradient flows back through."""
    if node.domain == _custom_gradients.DOMAIN:
        return _custom_gradients.stop_edges(node.op_type)
    return _STOP_EDGES.get(node.op_type, frozenset())


def gradient_sources(
    graph: onnx.GraphProto, targets: set[str], types: Mapping[str, tuple], any_dtype: bool = False
) -> set[str]:
    """Tensors that a gradient flows back to from ``targets`` (through float edges only, unless ``any_dtype``)."""
    producer = {out: node for node in graph.node for out in node.output if out}
    found = set(targets)
    stack = list(targets)
    while stack:
        node = producer.get(stack.pop())
        if node is None:
            continue
        stopped = stopped_inputs(node)
        # What a body reads from the outer scope feeds the outputs too (if only to be refused).
        outer = sorted(node_outer_reads(node))
        for i, name in enumerate([*node.input, *outer]):
            elem = types.get(name, (onnx.TensorProto.FLOAT, None))[0]
            if name and i not in stopped and name not in found and (any_dtype or elem in FLOAT_TYPES or elem == 0):
                found.add(name)
                stack.append(name)
    return found


def node_outer_reads(node: onnx.NodeProto) -> set[str]:
    """What one node's bodies (If/Loop/Scan) read from the scope around the node."""
    if not any(attr.HasField("g") or len(attr.graphs) for attr in node.attribute):
        return set()
    return _outer_reads(helper.make_graph([node], "holder", [], []))


def _outer_reads(graph: onnx.GraphProto) -> set[str]:
    """Names the subgraphs of ``graph``'s nodes read from scopes outside them."""
    reads: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                defined = {v.name for v in [*sub.input, *sub.initializer]}
                defined |= {out for n in sub.node for out in n.output}
                used = {name for n in sub.node for name in n.input if name} | _outer_reads(sub)
                used |= {o.name for o in sub.output}
                reads |= used - defined
    return reads
