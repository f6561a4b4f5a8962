"""Graph preparation: from a network's graph to the model the builder gets.

The graph contract (the only place it is written down):

- **Inputs**: the network's inputs in order, then its trainable parameters
  (by initializer name), then, with caller-given sensitivities, one input
  ``SENS_PREFIX + str(k)`` for each floating-point output ``k`` that
  contributes to the gradient, shaped like that output.
- **Outputs**: the network's outputs in order, then ``LOSS`` (the scalar the
  builder differentiates), then ``grad_name(x)`` for each differentiated
  tensor ``x`` (see ``_gradient``).
- ``LOSS = sum_k ReduceSum(output_k * sens_k)`` over the contributing outputs,
  cast to float32 (the builder seeds its gradient with a float32 1.0);
  without caller-given sensitivities ``sens_k`` is ones, which is
  ``ReduceSum(output_k)``: MindSpore's ``ones_like(outputs)`` seeding.
- Gradients of int tensors (MindSpore's int semantics): an int input or
  Parameter whose gradient is wanted gets a float64 shadow
  ``INT_SHADOW_PREFIX + name``; the int math the gradient flows through is
  computed again on the shadows, Casts between int and float become onnxgrad
  functions with MindSpore's cast-back gradients, and an int output that has
  a shadow is seeded through it. The gradient of the shadow is the int
  gradient, in float64 (see "Int math" below).

Preparation also fixes what the builder cannot take: input shapes are made
concrete for the call's signature (ORT's Mul and AveragePool gradients break
on symbolic batch sizes), ops without (correct) gradients are rewritten,
optional outputs are declared, and a tensor fed twice to one node gets an
Identity.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

import numpy as np
import onnx
from onnx import helper

from onnxgrad import _lower, _validate
from onnxgrad._flow import gradient_sources, node_outer_reads, stopped_inputs
from onnxgrad._fold import fold_static_shapes
from onnxgrad._graph import (
    FLOAT_TYPES,
    GraphWriter,
    TypeTable,
    concretize_inputs,
    constant_value,
    default_opset,
    infer_types,
    is_default_domain,
)
from onnxgrad._int_math import (
    INT_SHADOW_PREFIX,
    INT_TYPES,
    int_shadow_name,
    refuse_unfollowed_int_math,
    shadow_int_math,
)
from onnxgrad._rewrites import apply_rewrites, explain_kept
from onnxgrad.errors import UnsupportedGradientError

if TYPE_CHECKING:
    from onnxgrad._spec import GradSpec

__all__ = [
    "LOSS", "SENS_PREFIX", "Layout", "Prepared", "prepare",
    # defined in _flow and _int_math, kept here for callers
    "gradient_sources", "stopped_inputs", "INT_SHADOW_PREFIX", "int_shadow_name",
]

LOSS = "onnxgrad/loss"
SENS_PREFIX = "onnxgrad/sens_"

# Optional outputs the builder needs declared: (op type, number of outputs).
_OPTIONAL_OUTPUTS = {"LayerNormalization": 3, "SoftmaxCrossEntropyLoss": 2, "Dropout": 2}


@dataclasses.dataclass
class Layout:
    """How to feed a prepared graph and read its gradients (JSON-serializable).

    Attributes:
        xs: the tensors to differentiate, in order.
        input_targets: for each requested input position, the tensors whose
            gradients sum up to its gradient (empty: zeros).
        weight_targets: requested weights that reach the loss.
        sens_inputs: ``{output index: sens input name}``.
        output_types: ``(elem_type, shape or None)`` for each network output.
        x_types: ``(elem_type, shape or None)`` of each tensor in ``xs``.
    """

    xs: list[str]
    input_targets: dict[int, list[str]]
    weight_targets: list[str]
    sens_inputs: dict[int, str]
    output_types: list[tuple[int, tuple | None]]
    x_types: dict[str, tuple[int, tuple | None]]

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Layout:
        """Reads :meth:`to_json`'s output back."""

        def typ(t):
            return (t[0], None if t[1] is None else tuple(t[1]))

        return cls(
            xs=list(data["xs"]),
            input_targets={int(k): list(v) for k, v in data["input_targets"].items()},
            weight_targets=list(data["weight_targets"]),
            sens_inputs={int(k): v for k, v in data["sens_inputs"].items()},
            output_types=[typ(t) for t in data["output_types"]],
            x_types={k: typ(t) for k, t in data["x_types"].items()},
        )


@dataclasses.dataclass
class Prepared:
    """A model ready for the gradient builder, and its :class:`Layout`.

    Attributes:
        model: the model (outputs: network outputs, then ``LOSS`` if there is anything to differentiate).
        layout: how to feed it and read it.
        types: ``(elem_type, shape or None)`` of every typed tensor of ``model``.
    """

    model: onnx.ModelProto
    layout: Layout
    types: TypeTable = dataclasses.field(default_factory=TypeTable)


def _declare_optional_outputs(graph: onnx.GraphProto, gw: GraphWriter) -> None:
    for node in graph.node:
        wanted = _OPTIONAL_OUTPUTS.get(node.op_type)
        if wanted and is_default_domain(node.domain):
            while len(node.output) < wanted:
                node.output.append("")
            for i in range(1, wanted):
                if not node.output[i]:
                    node.output[i] = gw.fresh(f"{node.op_type}_out{i}")


def _split_duplicate_inputs(graph: onnx.GraphProto, gw: GraphWriter) -> None:
    # The builder refuses a tensor feeding one node twice (Mul(x, x)).
    new_nodes = []
    for node in graph.node:
        seen = set()
        for i, name in enumerate(node.input):
            if not name:
                continue
            if name in seen:
                copy = gw.fresh("dup")
                new_nodes.append(helper.make_node("Identity", [name], [copy], name=gw.fresh("Identity")))
                node.input[i] = copy
            seen.add(name)
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)


def _refuse_outer_scope_gradients(graph: onnx.GraphProto, sources: set[str], wanted: set[str], types: TypeTable) -> None:
    """The builder does not differentiate what an If/Loop/Scan body reads from the outer scope:
    it would give zeros. Refused when a wanted tensor reaches the outputs that way."""
    for node in graph.node:
        if not any(out in sources for out in node.output):
            continue
        reads = node_outer_reads(node)
        if not reads:
            continue
        reached = gradient_sources(graph, reads, types) & wanted
        if reached:
            kept = explain_kept(node, graph, types)  # why onnxgrad's inlining/unrolling did not apply
            raise UnsupportedGradientError(
                f"The {node.op_type} node {node.name or node.output[0]!r} reads {sorted(reached)[:3]} (or tensors "
                "computed from them) inside its body, from the outer scope, and ONNX Runtime's gradient builder "
                "does not differentiate such reads: the gradient would silently be zero"
                + (f"; onnxgrad rewrites {node.op_type} into straight-line ops, but not this node: {kept}" if kept
                   else "")
                + ". Compute what the body needs outside it (for an If: both branches, then pick one with Where), "
                "or ask for gradients that do not depend on them.",
                op_type=node.op_type,
                node=node.name,
            )


def _hidden_gradient(node: onnx.NodeProto, constant) -> list[tuple[int, str]]:
    """(input index, what it is) of the inputs whose real gradient onnxruntime-training does not
    compute: stop edges that are not constant in truth, and Scatter reductions it ignores."""
    op = node.op_type
    if op == "Range":
        return [(0, "the start"), (2, "the step")]
    if op == "Dropout" and len(node.input) > 1 and node.input[1]:
        training = constant(node.input[2]) if len(node.input) > 2 and node.input[2] else np.array(False)
        if training is None or bool(np.asarray(training).reshape(-1)[0]):
            return [(1, "the ratio (in training mode)")]
    if op in ("ScatterElements", "ScatterND"):
        for attr in node.attribute:
            if attr.name == "reduction" and attr.s and attr.s != b"none":
                return [(0, f"reduction={attr.s.decode()}'s data"), (2, f"reduction={attr.s.decode()}'s updates")]
    return []


def _refuse_hidden_gradients(graph: onnx.GraphProto, sources: set[str], wanted: set[str], types: TypeTable) -> None:
    """Refuses where onnxruntime-training would silently give a zero or a wrong gradient to a
    wanted tensor: inputs it treats as constant that are not, and Scatter reductions."""
    for node in graph.node:
        if not any(out in sources for out in node.output):
            continue
        for index, what in _hidden_gradient(node, lambda name: constant_value(graph, name)):
            if index >= len(node.input) or not node.input[index]:
                continue
            reached = gradient_sources(graph, {node.input[index]}, types) & wanted
            if reached:
                raise UnsupportedGradientError(
                    f"onnxruntime-training does not differentiate {what} of {node.op_type} node "
                    f"{node.name or node.output[0]!r}, which depends on {sorted(reached)[:3]}: the gradient would "
                    "be silently wrong. Make that input a constant, or ask for gradients that do not depend on it.",
                    op_type=node.op_type,
                    node=node.name,
                )


def _refuse_empty_tensors(graph: onnx.GraphProto, sources: set[str], types: TypeTable, original: onnx.GraphProto) -> None:
    """ONNX Runtime's gradient kernels fail on zero-size tensors (a Reshape or ReduceSum of nothing).

    ``original``: the model as given, whose declared shapes can say what inference cannot (a
    Slice with input starts).
    """
    declared = {
        v.name: tuple(d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim)
        for v in [*original.output, *original.value_info] if v.type.tensor_type.HasField("shape")
    }
    inputs = {v.name for v in graph.input}
    for node in graph.node:
        for name in [*node.input, *node.output]:
            shape = types.shape(name)
            if shape is None or 0 not in shape:
                shape = declared.get(name)
            if name in sources and shape is not None and 0 in shape:
                if name in inputs:
                    raise UnsupportedGradientError(
                        f"Input {name!r} has shape {list(shape)}, with no elements, and feeds the {node.op_type} "
                        f"node {node.name or node.output[0]!r}: a gradient of an empty batch is empty, and "
                        "onnxruntime's gradient kernels cannot take one. Pass at least one sample.",
                        op_type=node.op_type,
                        node=node.name,
                    )
                raise UnsupportedGradientError(
                    f"The {node.op_type} node {node.name or node.output[0]!r} has the zero-size tensor {name!r} "
                    f"(shape {list(shape)}) on the gradient's path, which onnxruntime's gradient kernels cannot "
                    "take: its gradient is empty anyway; ask for gradients that do not pass through it.",
                    op_type=node.op_type,
                    node=node.name,
                )


# Gradient kernels that crash onnxruntime-training 1.19's CPU build (segfault) for a dtype.
_CRASHING_GRADIENTS = {("MaxPool", onnx.TensorProto.FLOAT16), ("AveragePool", onnx.TensorProto.FLOAT16)}


def _refuse_crashing_kernels(graph: onnx.GraphProto, sources: set[str], types: TypeTable) -> None:
    for node in graph.node:
        x = node.input[0] if node.input else ""
        elem = types.elem(x)
        if (node.op_type, elem) in _CRASHING_GRADIENTS and x in sources:
            raise UnsupportedGradientError(
                f"The {node.op_type} gradient crashes ONNX Runtime for "
                f"{helper.tensor_dtype_to_np_dtype(elem)} (node {node.name or node.output[0]!r}): "
                "run the model in float32.",
                op_type=node.op_type,
                node=node.name,
            )


def prepare(
    model: onnx.ModelProto, *, input_names: Sequence[str], shapes: dict[str, Sequence[int]], spec: GradSpec
) -> Prepared:
    """Builds the model the gradient builder gets, for one call signature.

    Args:
        model: the network's weight-free graph (not modified).
        input_names: the network's input names, in order.
        shapes: concrete shape of every graph input (network inputs and parameters).
        spec: what to differentiate: input positions and parameter names whose
            gradients are wanted, whether sensitivities are graph inputs (else
            ones), and the output indices that feed the loss (None: all).

    Returns:
        The prepared model and how to read its gradients.
    """
    grad_inputs, grad_weights, sens, contributing = spec.inputs, spec.weights, spec.sens, spec.contributing
    prepared = onnx.ModelProto()
    prepared.CopyFrom(model)
    graph = prepared.graph
    gw = GraphWriter(graph, default_opset(prepared), model=prepared)
    concretize_inputs(graph, shapes)
    if all(v.name in shapes for v in graph.input) and any(n.op_type in ("Shape", "Size") for n in graph.node):
        # A hand export computes shapes with ops (Shape, Gather, ..., Reshape); lowered gradients need them static.
        fold_static_shapes(prepared, set())
    # Contrib ops in the model itself (com.microsoft Gelu, ...) become standard ops first, so
    # shape inference types everything after them.
    _lower.lower(prepared, infer_types(prepared))
    types = infer_types(prepared)
    apply_rewrites(prepared, gw, types)
    _declare_optional_outputs(graph, gw)
    _split_duplicate_inputs(graph, gw)
    _validate.guard_trip_counts(prepared)
    types = infer_types(prepared)

    outputs = [o.name for o in graph.output]
    output_types = [types.get(name, (o.type.tensor_type.elem_type, None)) for name, o in zip(outputs, graph.output)]
    int_sources = {input_names[pos] for pos in grad_inputs} | set(grad_weights)
    int_sources = {name for name in int_sources if types.elem(name) in INT_TYPES}
    # PyTorch's autograd passes no gradient through a cast to an int type; MindSpore does.
    shadow, blocked = shadow_int_math(graph, gw, types, int_sources, from_float=model.producer_name != "pytorch")
    indices = range(len(outputs)) if contributing is None else contributing
    differentiable = [k for k in indices if output_types[k][0] in FLOAT_TYPES or outputs[k] in shadow]

    # Which tensors to differentiate: float inputs themselves, int inputs and Parameters through their shadows.
    input_candidates: dict[int, list[str]] = {}
    for pos in grad_inputs:
        name = input_names[pos]
        wanted_x = name in shadow or types.is_float(name)
        input_candidates[pos] = [shadow.get(name, name)] if wanted_x else []
    weight_xs = [shadow.get(name, name) for name in grad_weights]

    sens_inputs: dict[int, str] = {}
    terms = []
    for k in differentiable:
        out = shadow.get(outputs[k], outputs[k])  # an int output: its shadow, seeded like the output
        if sens:
            sens_name = SENS_PREFIX + str(k)
            elem, shape = output_types[k]
            graph.input.append(helper.make_tensor_value_info(sens_name, elem, shape))
            sens_inputs[k] = sens_name
            out = gw.op("Mul", out, gw.cast(sens_name, np.dtype(np.float64)) if outputs[k] in shadow else sens_name)
        term = gw.reduce("ReduceSum", out, None, keepdims=False)
        if output_types[k][0] != onnx.TensorProto.FLOAT:
            # The builder seeds d(LOSS) with a float32 1.0, whatever the graph's dtype;
            # casting each term also lets outputs of different float dtypes add up.
            term = gw.cast(term, np.dtype(np.float32))
        terms.append(term)

    xs: list[str] = []
    input_targets: dict[int, list[str]] = {pos: [] for pos in grad_inputs}
    weight_targets: list[str] = []
    if terms:
        loss = terms[0]
        for term in terms[1:]:
            loss = gw.op("Add", loss, term)
        gw.node("Identity", [loss], [LOSS])
        graph.output.append(helper.make_tensor_value_info(LOSS, onnx.TensorProto.FLOAT, []))
        if shadow:
            types = infer_types(prepared)
            refuse_unfollowed_int_math(graph, blocked, shadow, LOSS)
        sources = gradient_sources(graph, {shadow.get(outputs[k], outputs[k]) for k in differentiable}, types)
        _refuse_crashing_kernels(graph, sources, types)
        requested = {n for names in input_candidates.values() for n in names} | set(weight_xs)
        _refuse_outer_scope_gradients(graph, sources, requested, types)
        _refuse_empty_tensors(graph, sources, types, model.graph)
        _refuse_hidden_gradients(graph, sources, requested, types)
        for pos, names in input_candidates.items():
            input_targets[pos] = [n for n in names if n in sources]
        weight_targets = [name for name in weight_xs if name in sources]
        # dict.fromkeys: de-duplicated, in a stable order.
        wanted = [n for names in input_targets.values() for n in names] + weight_targets
        xs = list(dict.fromkeys(wanted))
    x_types: dict[str, tuple[int, tuple | None]] = {x: types.type_of(x) for x in xs}
    return Prepared(prepared, Layout(xs, input_targets, weight_targets, sens_inputs, output_types, x_types), types)
