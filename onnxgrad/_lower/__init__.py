"""Lowering: the builder's gradient graph rewritten into standard ONNX ops.

ORT's gradient builder emits training kernels (``com.microsoft`` ReluGrad,
ConvGrad, GatherGrad, ...) and ORT-only default-domain ops (MaxPoolGrad,
AveragePoolGrad) that only onnxruntime-training implements. :func:`lower`
replaces each with standard ops that compute the same thing from the node's
inputs and attributes (and, where the gradient node lacks them, the forward
node's), so a gradient graph runs on any ONNX Runtime build or provider and on
``onnx.reference.ReferenceEvaluator``. A node with no lowering is refused with
an error naming it; nothing non-standard is passed through.

Preparation makes every input shape concrete, so lowerings read static shapes
of forward tensors where the math needs them (pool windows, broadcast axes);
a shape that is still unknown is an error, never a guess.

Family modules (activations, elementwise, matmul, normalization, indexing,
convolution, pooling, sampling) register their lowerings, and refusals that say
more than an op's name, in :mod:`onnxgrad._lower._registry`; this module holds
the pass, which ends with :mod:`onnxgrad._lower.reductions`' ReduceSum fix.
"""

from __future__ import annotations

from typing import Collection

import onnx

from onnxgrad._graph import infer_types
from onnxgrad._lower import (  # noqa: F401 (each module registers its lowerings)
    activations,
    convolution,
    elementwise,
    indexing,
    matmul,
    normalization,
    pooling,
    sampling,
)
from onnxgrad._lower._lowerer import STANDARD_DOMAINS, Lowerer, NotStatic
from onnxgrad._lower._registry import LOWERINGS, REFUSALS
from onnxgrad._lower.matmul import for_provider
from onnxgrad._lower.reductions import reduce_sums_safe_when_empty
from onnxgrad.errors import UnsupportedGradientError

__all__ = ["lower", "nonstandard_nodes", "is_standard", "declare_output_shapes", "for_provider"]

# The registry under the name tests read.
_LOWERINGS = LOWERINGS


def is_standard(node: onnx.NodeProto, functions: Collection[tuple[str, str]] = frozenset()) -> bool:
    """Whether ``node`` is a standard ONNX op or a call of one of ``functions`` (domain, name)."""
    if (node.domain, node.op_type) in functions:
        return True
    return node.domain in STANDARD_DOMAINS and onnx.defs.has(node.op_type, node.domain)


def nonstandard_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Every node of ``model`` (graph, subgraphs and function bodies) that is not standard ONNX."""
    functions = {(f.domain, f.name) for f in model.functions}
    found = []

    def walk(nodes):
        for node in nodes:
            if not is_standard(node, functions):
                found.append(node)
            for attr in node.attribute:
                for graph in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    walk(graph.node)

    walk(model.graph.node)
    for function in model.functions:
        walk(function.node)
    return found


def _prune(graph: onnx.GraphProto) -> None:
    """Drops nodes whose outputs nothing reads (the builder's shape plumbing for lowered kernels)."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(out and out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
            for attr in node.attribute:  # outer-scope names a subgraph reads
                for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    needed.update(name for n in sub.node for name in n.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    used = needed | {i.name for i in graph.input}
    inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def declare_output_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Gives graph outputs declared without a shape their inferred one, in place.

    onnx's full check refuses an output whose declared type has no shape
    while inference finds one.
    """
    missing = [o for o in model.graph.output if not o.type.tensor_type.HasField("shape")]
    if missing:
        types = infer_types(model)
        for output in missing:
            shape = types.shape(output.name)
            if shape is not None:
                dims = output.type.tensor_type.shape
                dims.SetInParent()
                for d in shape:
                    dim = dims.dim.add()
                    if d is not None:
                        dim.dim_value = d
    return model


def _merge_types(inferred: dict, forward: dict) -> dict:
    """Preparation's types, completed by inference on the built graph where they lack a shape."""
    merged = dict(inferred)
    for name, (elem, shape) in forward.items():
        known = merged.get(name)
        if known is None or shape is not None and None not in shape or known[1] is None:
            merged[name] = (elem or (known or (0,))[0], shape)
    return merged


def lower(model: onnx.ModelProto, types: dict) -> onnx.ModelProto:
    """Rewrites every non-standard node of a built gradient graph into standard ops, in place.

    Args:
        model: the builder's forward+backward graph.
        types: ``{tensor: (elem_type, shape)}`` of the prepared forward graph.

    Returns:
        ``model``, holding standard ONNX ops and model-local functions only.

    Raises:
        UnsupportedGradientError: a node has no standard-op lowering.
        GradientBuildError: a lowering lacks a static shape it needs.
    """
    functions = {(f.domain, f.name) for f in model.functions}
    # Shapes of the builder's own tensors become known as the kernels before them are lowered,
    # so lowering runs in passes, re-inferring types, until every node is standard.
    while any(not is_standard(node, functions) for node in model.graph.node):
        lw = Lowerer(model, _merge_types(infer_types(model), types))
        lowered: list[onnx.NodeProto] = []
        waiting: NotStatic | None = None
        progress = False
        for node in model.graph.node:
            if is_standard(node, functions):
                lowered.append(node)
                continue
            lowering = LOWERINGS.get((node.domain, node.op_type))
            if lowering is None and (node.domain, node.op_type) in REFUSALS:
                raise REFUSALS[node.domain, node.op_type](lw, node)
            if lowering is None:
                raise UnsupportedGradientError(
                    f"The graph or its gradient uses {node.domain or 'ai.onnx'}::{node.op_type} (node {node.name!r}), "
                    "which only onnxruntime implements and onnxgrad cannot yet express in standard ONNX ops. "
                    "Replace that op (or the forward op it differentiates) in the model, or ask for gradients "
                    "that do not pass through it.",
                    op_type=node.op_type, node=node.name,
                )
            emitted: list[onnx.NodeProto] = []
            lw.w.nodes = emitted
            try:
                lowering(lw, node)
            except NotStatic as err:
                waiting = err
                lowered.append(node)
                continue
            lowered.extend(emitted)
            progress = True
        del model.graph.node[:]
        model.graph.node.extend(lowered)
        if not progress and waiting is not None:
            raise waiting
    reduce_sums_safe_when_empty(model)
    _prune(model.graph)
    left = {o.domain for o in model.opset_import} - {n.domain for n in model.graph.node} - {"", "ai.onnx"}
    left -= {f.domain for f in model.functions}
    kept = [o for o in model.opset_import if o.domain not in left]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    left_over = nonstandard_nodes(model)
    if left_over:  # e.g. inside a subgraph or function body, which the passes above do not visit
        raise Lowerer(model, types).fail(left_over[0], "it is still there after lowering")
    return model
