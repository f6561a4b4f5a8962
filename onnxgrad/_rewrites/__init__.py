"""Rewrites of ops whose gradient onnxruntime-training lacks or gets wrong.

Each rewrite replaces one node of the main graph by standard ops (or
onnxgrad functions with their own gradients) with the same forward values and
correct gradients. A rewrite returns False to keep the node unchanged; those
that need static shapes or constant axes and sizes give up without them, and
the node is then refused when a gradient must pass through it.

Family modules register their rewrites with
:func:`onnxgrad._rewrites._registry.register`; the list below, and the
README's, are generated from that registry (``_registry.listing``):

"""

from __future__ import annotations

import onnx

from onnxgrad._graph import GraphWriter, TypeTable, is_default_domain
from onnxgrad._rewrites import (  # noqa: F401 (each module registers its rewrites)
    activations,
    control_flow,
    convolution,
    elementwise,
    layout,
    linalg,
    losses,
    normalization,
    recurrent,
    reductions,
    sampling,
    signal,
)
from onnxgrad._rewrites._common import constant
from onnxgrad._rewrites._registry import REWRITES, listing
from onnxgrad._rewrites.sampling import RESIZE_COORDINATES, RESIZE_MODES, resize_refusal

__all__ = [
    "REWRITES", "RESIZE_COORDINATES", "RESIZE_MODES", "apply_rewrites", "explain_kept", "listing", "resize_refusal",
]

__doc__ += listing() + "\n"

# The name _prepare imports.
_constant = constant


def apply_rewrites(model: onnx.ModelProto, gw: GraphWriter, types: TypeTable) -> None:
    """Rewrites, in place, every node of the main graph that needs it.

    Args:
        model: the (onnxgrad-owned) model.
        gw: a writer on its graph.
        types: the type table (:func:`onnxgrad._graph.infer_types`) of the graph.
    """
    graph = model.graph
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        rewrite = REWRITES.get(node.op_type) if is_default_domain(node.domain) else None
        gw.nodes = []
        if rewrite is not None and rewrite.apply(node, gw, types):
            new_nodes.extend(gw.nodes)
        else:
            new_nodes.append(node)
    gw.nodes = graph.node
    del graph.node[:]
    graph.node.extend(new_nodes)


def explain_kept(node: onnx.NodeProto, graph: onnx.GraphProto, types: TypeTable) -> str | None:
    """Why onnxgrad kept ``node`` of ``graph`` instead of rewriting it (an attribute and its value,
    a shape that is not static), or None when its op has no rewrite or no explanation.

    Args:
        node: a node of ``graph`` after the rewrites.
        graph: the prepared graph.
        types: the type table (:func:`onnxgrad._graph.infer_types`) of ``graph``.
    """
    rewrite = REWRITES.get(node.op_type) if is_default_domain(node.domain) else None
    if rewrite is None or rewrite.explain is None:
        return None
    return rewrite.explain(node, graph, types)
