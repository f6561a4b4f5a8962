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

from onnxgrad import _custom_gradients, _lower
from onnxgrad._graph import FLOAT_TYPES, GraphWriter, default_opset, infer_types
from onnxgrad._rewrites import _constant, apply_rewrites
from onnxgrad.errors import UnsupportedGradientError

if TYPE_CHECKING:
    from onnxgrad._spec import GradSpec

__all__ = ["LOSS", "SENS_PREFIX", "Layout", "Prepared", "prepare", "gradient_sources", "stopped_inputs"]

LOSS = "onnxgrad/loss"
SENS_PREFIX = "onnxgrad/sens_"

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
    types: dict[str, tuple[int, tuple | None]] = dataclasses.field(default_factory=dict)


def _concretize(graph: onnx.GraphProto, shapes: dict[str, Sequence[int]]) -> None:
    for value in graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for size in shapes[value.name]:
                dims.add().dim_value = int(size)
    # Old declarations may disagree with the concrete shapes; inference recomputes them.
    del graph.value_info[:]
    for value in graph.output:
        value.type.tensor_type.ClearField("shape")


def _declare_optional_outputs(graph: onnx.GraphProto, w: GraphWriter) -> None:
    for node in graph.node:
        wanted = _OPTIONAL_OUTPUTS.get(node.op_type)
        if wanted and node.domain in ("", "ai.onnx"):
            while len(node.output) < wanted:
                node.output.append("")
            for i in range(1, wanted):
                if not node.output[i]:
                    node.output[i] = w.fresh(f"{node.op_type}_out{i}")


def _split_duplicate_inputs(graph: onnx.GraphProto, w: GraphWriter) -> None:
    # The builder refuses a tensor feeding one node twice (Mul(x, x)).
    new_nodes = []
    for node in graph.node:
        seen = set()
        for i, name in enumerate(node.input):
            if not name:
                continue
            if name in seen:
                copy = w.fresh("dup")
                new_nodes.append(helper.make_node("Identity", [name], [copy], name=w.fresh("Identity")))
                node.input[i] = copy
            seen.add(name)
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)


def stopped_inputs(node: onnx.NodeProto) -> frozenset[int]:
    """Input indices of ``node`` that no gradient flows back through."""
    if node.domain == _custom_gradients.DOMAIN:
        return _custom_gradients.stop_edges(node.op_type)
    return _STOP_EDGES.get(node.op_type, frozenset())


def gradient_sources(graph: onnx.GraphProto, targets: set[str], types: dict, any_dtype: bool = False) -> set[str]:
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
        outer = sorted(_node_outer_reads(node))
        for i, name in enumerate([*node.input, *outer]):
            elem = types.get(name, (onnx.TensorProto.FLOAT, None))[0]
            if name and i not in stopped and name not in found and (any_dtype or elem in FLOAT_TYPES or elem == 0):
                found.add(name)
                stack.append(name)
    return found


def _node_outer_reads(node: onnx.NodeProto) -> set[str]:
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


def _refuse_outer_scope_gradients(graph: onnx.GraphProto, sources: set[str], wanted: set[str], types: dict) -> None:
    """The builder does not differentiate what an If/Loop/Scan body reads from the outer scope:
    it would give zeros. Refused when a wanted tensor reaches the outputs that way."""
    for node in graph.node:
        if not any(out in sources for out in node.output):
            continue
        reads = _node_outer_reads(node)
        if not reads:
            continue
        reached = gradient_sources(graph, reads, types) & wanted
        if reached:
            raise UnsupportedGradientError(
                f"The {node.op_type} node {node.name or node.output[0]!r} reads {sorted(reached)[:3]} (or tensors "
                "computed from them) inside its body, from the outer scope, and ONNX Runtime's gradient builder "
                "does not differentiate such reads: the gradient would silently be zero. Compute what the body "
                "needs outside it (for an If: both branches, then pick one with Where), or ask for gradients "
                "that do not depend on them.",
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


def _refuse_hidden_gradients(graph, sources: set[str], wanted: set[str], types: dict, w: GraphWriter) -> None:
    """Refuses where onnxruntime-training would silently give a zero or a wrong gradient to a
    wanted tensor: inputs it treats as constant that are not, and Scatter reductions."""
    for node in graph.node:
        if not any(out in sources for out in node.output):
            continue
        for index, what in _hidden_gradient(node, lambda name: _constant(w, name)):
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


def _refuse_empty_tensors(graph: onnx.GraphProto, sources: set[str], types: dict, original: onnx.GraphProto) -> None:
    """ONNX Runtime's gradient kernels fail on zero-size tensors (a Reshape or ReduceSum of nothing).

    ``original``: the model as given, whose declared shapes can say what inference cannot (a
    Slice with input starts).
    """
    declared = {
        v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        for v in [*original.output, *original.value_info] if v.type.tensor_type.HasField("shape")
    }
    inputs = {v.name for v in graph.input}
    for node in graph.node:
        for name in [*node.input, *node.output]:
            shape = types.get(name, (0, None))[1]
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


def _refuse_crashing_kernels(graph: onnx.GraphProto, sources: set[str], types: dict) -> None:
    for node in graph.node:
        x = node.input[0] if node.input else ""
        elem = types.get(x, (0, None))[0]
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
    w = GraphWriter(graph, default_opset(prepared), model=prepared)
    _concretize(graph, shapes)
    # Contrib ops in the model itself (com.microsoft Gelu, ...) become standard ops first, so
    # shape inference types everything after them.
    _lower.lower(prepared, infer_types(prepared))
    types = infer_types(prepared)
    apply_rewrites(prepared, w, types)
    _declare_optional_outputs(graph, w)
    _split_duplicate_inputs(graph, w)
    types = infer_types(prepared)

    outputs = [o.name for o in graph.output]
    output_types = [types.get(name, (o.type.tensor_type.elem_type, None)) for name, o in zip(outputs, graph.output)]
    int_sources = {input_names[pos] for pos in grad_inputs} | set(grad_weights)
    int_sources = {name for name in int_sources if types.get(name, (0,))[0] in _INT_TYPES}
    # PyTorch's autograd passes no gradient through a cast to an int type; MindSpore does.
    shadow, blocked = _shadow_int_math(graph, w, types, int_sources, from_float=model.producer_name != "pytorch")
    indices = range(len(outputs)) if contributing is None else contributing
    differentiable = [k for k in indices if output_types[k][0] in FLOAT_TYPES or outputs[k] in shadow]

    # Which tensors to differentiate: float inputs themselves, int inputs and Parameters through their shadows.
    input_candidates: dict[int, list[str]] = {}
    for pos in grad_inputs:
        name = input_names[pos]
        wanted_x = name in shadow or types.get(name, (0,))[0] in FLOAT_TYPES
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
            out = w.op("Mul", out, w.cast(sens_name, np.dtype(np.float64)) if outputs[k] in shadow else sens_name)
        term = w.reduce("ReduceSum", out, None, keepdims=False)
        if output_types[k][0] != onnx.TensorProto.FLOAT:
            # The builder seeds d(LOSS) with a float32 1.0, whatever the graph's dtype;
            # casting each term also lets outputs of different float dtypes add up.
            term = w.cast(term, np.dtype(np.float32))
        terms.append(term)

    xs: list[str] = []
    input_targets: dict[int, list[str]] = {pos: [] for pos in grad_inputs}
    weight_targets: list[str] = []
    if terms:
        loss = terms[0]
        for term in terms[1:]:
            loss = w.op("Add", loss, term)
        w.node("Identity", [loss], [LOSS])
        graph.output.append(helper.make_tensor_value_info(LOSS, onnx.TensorProto.FLOAT, []))
        if shadow:
            types = infer_types(prepared)
            _refuse_unfollowed_int_math(graph, blocked, shadow, LOSS)
        sources = gradient_sources(graph, {shadow.get(outputs[k], outputs[k]) for k in differentiable}, types)
        _refuse_crashing_kernels(graph, sources, types)
        requested = {n for names in input_candidates.values() for n in names} | set(weight_xs)
        _refuse_outer_scope_gradients(graph, sources, requested, types)
        _refuse_empty_tensors(graph, sources, types, model.graph)
        _refuse_hidden_gradients(graph, sources, requested, types, w)
        for pos, names in input_candidates.items():
            input_targets[pos] = [n for n in names if n in sources]
        weight_targets = [name for name in weight_xs if name in sources]
        # dict.fromkeys: de-duplicated, in a stable order.
        wanted = [n for names in input_targets.values() for n in names] + weight_targets
        xs = list(dict.fromkeys(wanted))
    x_types = {x: types.get(x, (0, None)) for x in xs}
    return Prepared(prepared, Layout(xs, input_targets, weight_targets, sens_inputs, output_types, x_types), types)


# --- Int math, differentiated as MindSpore 2.10 does --------------------------------------------
#
# MindSpore differentiates int tensors in their own dtype: the gradient of int32 ``x * 3`` is int32 3s, and
# a Cast's gradient is the incoming gradient cast back to the Cast's source dtype (truncation toward zero
# for float to int). ONNX Runtime's builder differentiates float tensors only, so each int tensor the
# gradient flows through gets a float64 copy (its "shadow", computed by the same op in float64), the Casts
# between int and float become onnxgrad functions whose gradients do MindSpore's cast back, and the int
# gradient read off the shadow is cast to the int dtype at the end. float64 holds every int up to 2**53
# exactly, and Add/Sub/Mul/Neg/ReduceSum/MatMul on exact ints give exact ints, so the shadow's gradient
# is MindSpore's int gradient while magnitudes stay below 2**53.

#: Prefix of the float64 shadow of an int input or int Parameter whose gradient is wanted.
INT_SHADOW_PREFIX = "onnxgrad/int_as_double/"

_INT_TYPES = frozenset({
    onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
    onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64,
    onnx.TensorProto.BOOL,
})
_NUMBER_INT_TYPES = _INT_TYPES - {onnx.TensorProto.BOOL}
# Ops whose int result is their float64 result on exact ints (ring ops and data movement).
_EXACT_INT_OPS = frozenset({
    "Add", "Sub", "Mul", "Neg", "Sum", "MatMul", "ReduceSum", "Identity", "Reshape", "Transpose", "Squeeze",
    "Unsqueeze", "Flatten", "Concat", "Slice", "Gather", "Expand", "Tile", "Where",
})
# Ops with no gradient in MindSpore (comparisons, index results): an int input there gets nothing back.
_ZERO_GRADIENT_OPS = frozenset({
    "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor", "ArgMax", "ArgMin",
    "Shape", "Size", "NonZero", "OneHot", "ConstantOfShape", "Range",
})
# Ops whose int input is data of another type than their result: not followed (refused on the way to the loss).
_INT_DATA_TO_FLOAT_OPS = frozenset({"DequantizeLinear"})
_DOUBLE = onnx.TensorProto.DOUBLE


def int_shadow_name(name: str) -> str:
    """The graph name of the float64 shadow of the int input or Parameter ``name``."""
    return INT_SHADOW_PREFIX + name


def _int_boundary_function(w: GraphWriter, src: int, dst: int) -> str:
    """``Cast`` from an int tensor's float64 shadow to float ``dst``; gradient: cast to ``src``, as MindSpore."""
    name = f"IntToFloat_{src}_{dst}"
    _cast_function(w, name, [helper.make_node("Cast", ["x"], ["y"], to=dst)], (
        _custom_gradients.GradNode("Cast", ("GO(0)",), ("g_int",), {"to": src}),
        _custom_gradients.GradNode("Cast", ("g_int",), ("GI(0)",), {"to": _DOUBLE}),
    ))
    return name


def _float_to_int_function(w: GraphWriter, src: int, dst: int) -> str:
    """``Cast`` from float ``src`` to int ``dst``, as a float64 shadow; gradient: cast back to ``src``."""
    name = f"FloatToInt_{src}_{dst}"
    body = [helper.make_node("Cast", ["x"], ["i"], to=dst), helper.make_node("Cast", ["i"], ["y"], to=_DOUBLE)]
    _cast_function(w, name, body, (
        # Through int64 into the int dtype: MindSpore's int gradient wraps around there.
        _custom_gradients.GradNode("Cast", ("GO(0)",), ("g64",), {"to": onnx.TensorProto.INT64}),
        _custom_gradients.GradNode("Cast", ("g64",), ("g_int",), {"to": dst}),
        _custom_gradients.GradNode("Cast", ("g_int",), ("GI(0)",), {"to": src}),
    ))
    return name


def _cast_function(w: GraphWriter, name: str, body: list, gradient: tuple) -> None:
    opsets = [helper.make_opsetid("", w.opset)]
    function = helper.make_function(_custom_gradients.DOMAIN, name, ["x"], ["y"], body, opsets)
    w.add_function(function)
    _custom_gradients.register(_custom_gradients.CustomGradient(name, gradient))


def _shadow_int_math(
    graph: onnx.GraphProto, w: GraphWriter, types: dict, sources: set[str], from_float: bool
) -> tuple[dict[str, str], list]:
    """Gives the int math the gradient flows through a float64 shadow (see above).

    Args:
        graph: the graph, changed in place.
        w: its writer.
        types: the graph's tensor types.
        sources: the int inputs and Parameters whose gradients are wanted.
        from_float: whether Casts from float to int start shadows too (MindSpore passes the gradient
            back through them).

    Returns:
        ``{int tensor: its shadow}``, and the nodes that consume a shadowed tensor where onnxgrad
        cannot follow MindSpore (refused later if their results reach the loss).
    """
    def elem(name):
        return types.get(name, (0, None))[0]

    shadow: dict[str, str] = {}
    blocked: list[onnx.NodeProto] = []
    nodes = list(graph.node)
    new_nodes: list[onnx.NodeProto] = []
    w.nodes = new_nodes
    for name in sorted(sources):
        shadow[name] = w.node("Cast", [name], [int_shadow_name(name)], to=_DOUBLE)[0]
    for node in nodes:
        stopped = stopped_inputs(node)
        data = [(i, x) for i, x in enumerate(node.input) if x and i not in stopped and _carries_data(node, i, w.opset)]
        shadowed = [x for _, x in data if x in shadow]
        to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
        if from_float and node.op_type == "Cast" and elem(node.input[0]) in FLOAT_TYPES and to in _NUMBER_INT_TYPES:
            name = _float_to_int_function(w, elem(node.input[0]), to)
            shadow[node.output[0]] = w.node(name, [node.input[0]], 1, domain=_custom_gradients.DOMAIN)[0]
        elif not shadowed:
            pass
        elif node.op_type in ("Cast", "CastLike") and (to or elem(node.output[0])) in FLOAT_TYPES:
            name = _int_boundary_function(w, elem(node.input[0]), to or elem(node.output[0]))
            w.node(name, [shadow[node.input[0]]], list(node.output), domain=_custom_gradients.DOMAIN)
            continue  # the original Cast goes: its output now comes from the shadow
        elif node.op_type == "Cast" and to in _NUMBER_INT_TYPES:
            shadow[node.output[0]] = w.op("Identity", shadow[node.input[0]])
        elif node.domain == "" and node.op_type in _EXACT_INT_OPS and all(elem(o) in _INT_TYPES for o in node.output):
            inputs = list(node.input)
            for i, x in data:
                inputs[i] = shadow[x] if x in shadow else w.cast(x, np.dtype(np.float64))
            outs = w.node(node.op_type, inputs, len(node.output))
            w.nodes[-1].attribute.extend(node.attribute)
            shadow.update(zip(node.output, outs))
        elif node.op_type not in _ZERO_GRADIENT_OPS:
            blocked.append(node)
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    w.nodes = graph.node
    return shadow, blocked


def _carries_data(node: onnx.NodeProto, index: int, opset: int) -> bool:
    """Whether input ``index`` of ``node`` is data flowing into its result: typed like an output in the op's
    schema (an index, a size, a condition or a trip count is typed otherwise and takes no gradient)."""
    if node.op_type in _INT_DATA_TO_FLOAT_OPS or node.op_type in ("Cast", "CastLike"):
        return index == 0
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return True  # not a standard op: assume data, so that it is refused rather than ignored
    if not schema.inputs:
        return False
    formal = schema.inputs[min(index, len(schema.inputs) - 1)].type_str
    variables = {c.type_param_str for c in schema.type_constraints}
    return formal in variables and formal in {o.type_str for o in schema.outputs}


def _refuse_unfollowed_int_math(graph: onnx.GraphProto, blocked: list, shadow: dict, target: str) -> None:
    """An int op onnxgrad cannot differentiate as MindSpore does, on the way to the loss, is refused."""
    reach = gradient_sources(graph, {target}, {}, any_dtype=True)
    for node in blocked:
        if any(out in reach for out in node.output):
            int_inputs = [x for x in node.input if x in shadow]
            raise UnsupportedGradientError(
                f"The {node.op_type} node {node.name or node.output[0]!r} computes on the int tensor(s) "
                f"{int_inputs}, whose gradient MindSpore takes in int math, and onnxgrad follows int math only "
                f"through {', '.join(sorted(_EXACT_INT_OPS))} and Casts. Cast the int tensor to a float type "
                "before this op, or ask for no gradient of the int inputs and Parameters it depends on.",
                op_type=node.op_type,
                node=node.name,
            )
