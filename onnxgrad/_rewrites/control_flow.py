"""If, Loop and Scan as straight-line code, so that what their bodies read from the outer scope
gets its gradient.

ONNX Runtime's builder differentiates none of them through a body's outer-scope reads (an If
whose branches read ``x`` and ``W`` gave zeros). So an If inlines both branches into the main
graph and picks each output with ``Where`` on the condition (only the taken branch when the
condition is a constant), and a Loop or Scan with a constant trip count or sequence length of at
most :data:`MAX_UNROLL` is unrolled, one inlined copy of the body per iteration. Nodes these
rewrites keep are refused (``_prepare``) when a wanted gradient passes through them; ``explain``
says why one was kept.

With a non-constant condition both branches run. Their forward values are unaffected, but a branch
not taken whose gradient is infinite where it is evaluated (``Log`` of 0, ``Sqrt`` of a negative
number) turns the gradients it reaches into NaN, as ``jnp.where`` does in JAX.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxgrad._graph import GraphWriter, TypeTable
from onnxgrad._rewrites._common import attr, constant
from onnxgrad._rewrites._registry import OUTER_SCOPE, register
from onnxgrad._validate import TRIP_GUARD_PREFIX

#: The most iterations a Loop or Scan is unrolled into: the graph grows by one body per iteration.
MAX_UNROLL = 64

# Ops that draw random numbers: with a non-constant condition both If branches run, so one of these
# in a branch not taken would still advance or draw (refused rather than changed).
_RANDOM_OPS = frozenset({
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout",
})


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    return [g for a in node.attribute for g in ([a.g] if a.HasField("g") else list(a.graphs))]


def _nodes_deep(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for sub in _subgraphs(node):
            yield from _nodes_deep(sub)


def _rename_reads(graph: onnx.GraphProto, renamed: dict[str, str]) -> None:
    """Renames, in a nested body, its reads of names the inlining renamed (ONNX names are unique
    across scopes, so a nested body never redefines them)."""
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = renamed[name]
        for sub in _subgraphs(node):
            _rename_reads(sub, renamed)
    for value in graph.output:
        if value.name in renamed:
            # A nested body's output that is an outer name: read it through an Identity, as renamed.
            source = renamed[value.name]
            graph.node.append(helper.make_node("Identity", [source], [value.name + "/inlined"]))
            value.name = value.name + "/inlined"


def _inline(body: onnx.GraphProto, gw: GraphWriter, bound: dict[str, str]) -> list[str]:
    """Appends a copy of ``body``'s nodes to ``gw`` with its inputs read from ``bound[input]``, its
    initializers as Constants and every name it defines renamed; returns its outputs' new names."""
    renamed = dict(bound)
    for init in body.initializer:
        renamed[init.name] = gw.fresh("inlined")
        gw.node("Constant", [], [renamed[init.name]], value=numpy_helper.from_array(numpy_helper.to_array(init)))
    for original in body.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        for k, name in enumerate(node.input):
            node.input[k] = renamed.get(name, name)
        for k, name in enumerate(node.output):
            if name:
                renamed[name] = node.output[k] = gw.fresh("inlined")
        for sub in _subgraphs(node):
            _rename_reads(sub, renamed)
        node.name = gw.fresh(node.op_type)
        gw.nodes.append(node)
    return [renamed.get(value.name, value.name) for value in body.output]


def _scalar_like(value: onnx.ValueInfoProto, number, dtype) -> np.ndarray:
    """``number`` shaped as a body input declares it (a scalar, or one element of rank 1)."""
    rank = len(value.type.tensor_type.shape.dim) if value.type.tensor_type.HasField("shape") else 0
    return np.full([1] * rank, number, dtype)


def _explain_if(node: onnx.NodeProto, graph: onnx.GraphProto, types: TypeTable) -> str | None:
    """Why an If is kept, or None."""
    branches = [attr(node, "then_branch"), attr(node, "else_branch")]
    if any(b is None or len(b.output) != len(node.output) for b in branches):
        return "its branches do not match its outputs"  # the checks on load refuse such a model first
    for out in node.output:
        elem, shape = types.type_of(out)
        if out and (not elem or shape is None or None in shape):
            # Shape inference merges the branches' shapes: unknown unless both are static and equal.
            return (f"its output {out!r} has no static shape: its branches give outputs of different or unknown "
                    "shapes (onnxgrad inlines an If whose branches give outputs of one static shape)")
    if constant(graph, node.input[0]) is not None:
        return None
    for branch in ("then_branch", "else_branch"):
        random = sorted({n.op_type for n in _nodes_deep(attr(node, branch)) if n.op_type in _RANDOM_OPS})
        if random:
            return (f"its condition is not a constant and its {branch} holds {random[0]}, which draws random "
                    "numbers: both branches would run")
    return None


@register("If", why=OUTER_SCOPE, note="outputs of one static shape: both branches inlined, each output picked "
          "with Where (a constant condition: its branch only)", explain=_explain_if)
def _if(node, gw, types) -> bool:
    if _explain_if(node, gw.graph, types) is not None:
        return False
    value = constant(gw, node.input[0])
    if value is not None:
        chosen = attr(node, "then_branch" if bool(np.asarray(value).reshape(-1)[0]) else "else_branch")
        for out, source in zip(node.output, _inline(chosen, gw, {})):
            if out:
                gw.node("Identity", [source], [out])
        return True
    condition = gw.op("Reshape", node.input[0], gw.constant(np.zeros(0, np.int64)))  # one element, as a scalar
    then_outputs = _inline(attr(node, "then_branch"), gw, {})
    else_outputs = _inline(attr(node, "else_branch"), gw, {})
    for out, picked, other in zip(node.output, then_outputs, else_outputs):
        if out:
            gw.node("Where", [condition, picked, other], [out])
    return True


def _always_true(body: onnx.GraphProto) -> bool:
    """Whether a Loop body's condition output is always true: its condition input passed through
    (directly or by an Identity), or a constant true."""
    cond_in, cond_out = body.input[1].name, body.output[0].name
    if cond_out == cond_in:
        return True
    for init in body.initializer:
        if init.name == cond_out:
            return bool(numpy_helper.to_array(init).all())
    for node in body.node:
        if cond_out in node.output:
            if node.op_type == "Identity":
                return node.input[0] == cond_in
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                return bool(numpy_helper.to_array(node.attribute[0].t).all())
            return False
    return False


def _trip_count(node: onnx.NodeProto, graph: onnx.GraphProto) -> tuple[int | None, str | None]:
    """A Loop's constant trip count, or None and why it cannot be unrolled."""
    body = attr(node, "body")
    if body is None or len(body.input) != len(node.input) or len(body.output) < len(node.input) - 1:
        return None, "its body does not match its inputs"  # the checks on load refuse such a model first
    trip = node.input[0] if node.input else ""
    value = constant(graph, trip) if trip else None
    if value is None:
        if trip.startswith(TRIP_GUARD_PREFIX):  # the run-time cap's check (after the rewrites): name the input
            trip = next((n.input[0] for n in graph.node if trip in n.output), trip)
        return None, (f"its trip count {trip!r} is not a constant" if trip else "it has no trip count")
    count = int(np.asarray(value).reshape(-1)[0])
    if not 1 <= count <= MAX_UNROLL:
        return None, f"its trip count is {count}, not 1 to {MAX_UNROLL}"
    cond = node.input[1] if len(node.input) > 1 else ""
    if cond:
        first = constant(graph, cond)
        if first is None or not bool(np.asarray(first).reshape(-1)[0]):
            return None, f"its condition input {cond!r} is not a constant true"
        if not _always_true(body):
            return None, "its body's condition output can stop it early (not its condition input or a constant true)"
    return count, None


@register("Loop", why=OUTER_SCOPE, note=f"unrolled: a constant trip count of at most {MAX_UNROLL}, no early exit",
          explain=lambda node, graph, types: _trip_count(node, graph)[1])
def _loop(node, gw, types) -> bool:
    count, _ = _trip_count(node, gw.graph)
    if count is None:
        return False
    body = attr(node, "body")
    carried = len(node.input) - 2
    state = list(node.input[2:])
    scans: list[list[str]] = [[] for _ in range(len(body.output) - 1 - carried)]
    true = gw.constant(_scalar_like(body.input[1], True, np.bool_))
    for i in range(count):
        bound = {body.input[0].name: gw.constant(_scalar_like(body.input[0], i, np.int64)), body.input[1].name: true}
        bound.update({value.name: name for value, name in zip(body.input[2:], state)})
        outputs = _inline(body, gw, bound)
        state = outputs[1:1 + carried]
        for collected, name in zip(scans, outputs[1 + carried:]):
            collected.append(gw.unsqueeze(name, [0]))
    for out, name in zip(node.output, state):
        if out:
            gw.node("Identity", [name], [out])
    for out, collected in zip(node.output[carried:], scans):
        if out:
            gw.node("Concat", collected, [out], axis=0)
    return True


def _sequence_length(node: onnx.NodeProto, types: TypeTable) -> tuple[int | None, str | None]:
    """A Scan's static sequence length (models are converted to opset 16 or later on load, so no
    opset-8 batch axis), or None and why it cannot be unrolled."""
    scan_inputs, body = attr(node, "num_scan_inputs"), attr(node, "body")
    if not scan_inputs or body is None or len(body.input) != len(node.input):
        return None, "its body does not match its inputs"  # the checks on load refuse such a model first
    carried = len(node.input) - scan_inputs
    axes = attr(node, "scan_input_axes") or [0] * scan_inputs
    lengths = set()
    for name, axis in zip(node.input[carried:], axes):
        shape = types.shape(name)
        if shape is None or not -len(shape) <= axis < len(shape) or shape[axis] is None:
            return None, f"the length of its scan input {name!r} is not static"
        lengths.add(shape[axis])
    length = lengths.pop() if len(lengths) == 1 else None
    if length is None or not 1 <= length <= MAX_UNROLL:
        return None, f"its sequence length is {length}, not 1 to {MAX_UNROLL}"
    return length, None


@register("Scan", why=OUTER_SCOPE, note=f"unrolled: a static sequence length of at most {MAX_UNROLL}",
          explain=lambda node, graph, types: _sequence_length(node, types)[1])
def _scan(node, gw, types) -> bool:
    length, _ = _sequence_length(node, types)
    if length is None:
        return False
    body = attr(node, "body")
    scan_inputs = attr(node, "num_scan_inputs")
    carried = len(node.input) - scan_inputs
    in_axes = attr(node, "scan_input_axes") or [0] * scan_inputs
    in_reversed = attr(node, "scan_input_directions") or [0] * scan_inputs
    scan_outputs = len(body.output) - carried
    out_axes = attr(node, "scan_output_axes") or [0] * scan_outputs
    out_reversed = attr(node, "scan_output_directions") or [0] * scan_outputs
    state = list(node.input[:carried])
    scans: list[list[str]] = [[] for _ in range(scan_outputs)]
    for t in range(length):
        bound = {value.name: name for value, name in zip(body.input, state)}
        for value, name, axis, backward in zip(body.input[carried:], node.input[carried:], in_axes, in_reversed):
            index = gw.constant(np.array(length - 1 - t if backward else t, np.int64))
            bound[value.name] = gw.op("Gather", name, index, axis=axis)
        outputs = _inline(body, gw, bound)
        state = outputs[:carried]
        for collected, name, axis in zip(scans, outputs[carried:], out_axes):
            collected.append(gw.unsqueeze(name, [axis]))
    for out, name in zip(node.output, state):
        if out:
            gw.node("Identity", [name], [out])
    for out, collected, axis, backward in zip(node.output[carried:], scans, out_axes, out_reversed):
        if out:
            gw.node("Concat", collected[::-1] if backward else collected, [out], axis=axis)
    return True
