"""Control flow: the subgraphs Loop, Scan and If hold, their checks at load, and the trip-count guard at run time.

A Loop whose inputs do not match its body aborts the gradient builder, a Loop with a constant
trip count of 2**40 grows memory until the process is killed, and a Loop with neither a trip
count nor a changing condition never ends: :func:`check_loop`, :func:`check_scan` and
:func:`check_if` refuse these before native code sees the model (``_validate.validate`` calls
them for each such node).

A trip count computed at run time (a graph input, or arithmetic on one) cannot be read at
load: :func:`guard_trip_counts` puts a check in front of each such Loop in the graph that
onnxgrad runs, and :func:`trip_count_failure` turns its failure into an :class:`InputError`
naming the Loop, before the first iteration allocates anything.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
from onnx import helper

from onnxgrad._graph import is_default_domain
from onnxgrad.errors import InputError, ModelError

__all__ = [
    "MAX_TRIP_COUNT", "TRIP_GUARD_PREFIX", "subgraphs", "all_graphs", "walk_nodes", "check_loop", "check_scan",
    "check_if", "constant_array", "guard_trip_counts", "trip_count_failure",
]

#: The largest Loop trip count accepted, constant (checked at load) or computed (checked at run
#: time, before the Loop starts): a Loop's scan outputs grow with every iteration, so a larger one
#: exhausts memory rather than computing.
MAX_TRIP_COUNT = 1 << 20
#: Name prefix of the run-time trip-count check's failing node; the Loop's name follows.
TRIP_GUARD_PREFIX = "onnxgrad/trip_count_guard/"


def subgraphs(node: onnx.NodeProto):
    """The graphs held in a node's attributes (a Loop's body, an If's branches)."""
    for attr in node.attribute:
        yield from [attr.g] if attr.HasField("g") else attr.graphs


def all_graphs(graph: onnx.GraphProto):
    """``graph`` and every graph nested in its nodes, outermost first."""
    yield graph
    for node in graph.node:
        for sub in subgraphs(node):
            yield from all_graphs(sub)


def walk_nodes(nodes):
    """Nodes and the nodes of their subgraphs."""
    for node in nodes:
        yield node
        for graph in subgraphs(node):
            yield from walk_nodes(graph.node)


def _body(node: onnx.NodeProto, name: str) -> onnx.GraphProto | None:
    for attr in node.attribute:
        if attr.name == name and attr.HasField("g"):
            return attr.g
    return None


def check_loop(node: onnx.NodeProto, label: str, constants: dict[str, onnx.TensorProto]) -> None:
    """A Loop's inputs and outputs match its body, a constant trip count is within ``MAX_TRIP_COUNT``,
    and a Loop without one does not pass its condition through unchanged (it would never end).

    ``label`` names the node in the error; ``constants`` maps tensor names to the constants in scope.
    """
    body = _body(node, "body")
    if body is None:
        return  # the checker reports the missing body
    carried = len(body.input) - 2
    if len(node.input) != len(body.input) or carried < 0:
        raise ModelError(
            f"{label} has {len(node.input)} inputs but its body takes {len(body.input)} (trip count, condition, "
            f"then {max(carried, 0)} loop-carried values): give the Loop one input per body input."
        )
    if len(body.output) != 1 + len(node.output) or len(body.output) < 1 + carried:
        raise ModelError(
            f"{label} has {len(node.output)} outputs but its body returns {len(body.output)} (the condition, "
            f"{carried} loop-carried values, then scan outputs): the Loop needs one output per body output after "
            "the condition."
        )
    trip = node.input[0]
    if trip and trip in constants:
        value = _scalar(constants[trip])
        if value is not None and value > MAX_TRIP_COUNT:
            raise ModelError(
                f"{label} runs {value} iterations (constant trip count {trip!r}); onnxgrad accepts at most "
                f"{MAX_TRIP_COUNT}: differentiating a Loop keeps every iteration's state. Lower the trip count."
            )
    cond = node.input[1] if len(node.input) > 1 else ""
    if not trip and (not cond or _scalar(constants.get(cond)) not in (None, 0)) and _passes_condition(body):
        raise ModelError(
            f"{label} has no trip count and its body returns its condition unchanged, so it never ends: "
            "give the Loop a trip count or compute the condition in the body."
        )


def _passes_condition(body: onnx.GraphProto) -> bool:
    """Whether the body's condition output is its condition input, directly or through Identity."""
    if len(body.input) < 2 or not body.output:
        return False
    producers = {out: n for n in body.node for out in n.output}
    name = body.output[0].name
    while name in producers and producers[name].op_type == "Identity" and producers[name].input:
        name = producers[name].input[0]
    return name == body.input[1].name


def _scalar(tensor: onnx.TensorProto | None) -> int | None:
    array = constant_array(tensor)
    if array is None or array.size != 1 or not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        return None
    return int(array.reshape(()))


def constant_array(tensor: onnx.TensorProto | None) -> np.ndarray | None:
    """The constant's value, or None when there is none, it is external or it does not decode."""
    if tensor is None or tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None
    try:
        return onnx.numpy_helper.to_array(tensor)
    except Exception:  # an undecodable value: _check_tensor reports the tensor itself
        return None


def check_scan(node: onnx.NodeProto, label: str) -> None:
    """A Scan's inputs, ``num_scan_inputs`` and outputs match its body."""
    body = _body(node, "body")
    scans = next((a.i for a in node.attribute if a.name == "num_scan_inputs"), None)
    if body is None or scans is None:
        return
    if not 0 < scans <= len(node.input) or len(node.input) != len(body.input):
        raise ModelError(
            f"{label} has {len(node.input)} inputs, num_scan_inputs={scans}, and its body takes {len(body.input)}: "
            "give the Scan one input per body input, the last num_scan_inputs of them scanned."
        )
    if len(node.output) != len(body.output):
        raise ModelError(
            f"{label} has {len(node.output)} outputs but its body returns {len(body.output)}: "
            "give the Scan one output per body output."
        )


def check_if(node: onnx.NodeProto, label: str) -> None:
    """Each branch of an If takes no inputs and returns one value per output."""
    for name in ("then_branch", "else_branch"):
        branch = _body(node, name)
        if branch is not None and (len(branch.output) != len(node.output) or len(branch.input)):
            raise ModelError(
                f"{label}'s {name} returns {len(branch.output)} values for {len(node.output)} outputs "
                f"(and takes {len(branch.input)} inputs): a branch takes no inputs and returns one value per output."
            )


def guard_trip_counts(model: onnx.ModelProto) -> None:
    """Puts a run-time check of ``MAX_TRIP_COUNT`` in front of every Loop whose trip count is not a constant.

    The check feeds the trip count on unchanged when it is within the cap; past it, a Reshape
    named ``TRIP_GUARD_PREFIX + <Loop name>`` fails before the Loop runs (ONNX has no assert op),
    which :func:`trip_count_failure` recognises. Modifies ``model`` (onnxgrad's prepared copy).
    """
    for graph in all_graphs(model.graph):
        constant = {init.name for init in graph.initializer}
        constant |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
        nodes = []
        for node in graph.node:
            trip = node.input[0] if node.op_type == "Loop" and is_default_domain(node.domain) and node.input else ""
            if trip and trip not in constant:
                guarded, checks = _trip_guard(node, trip)
                nodes += checks
                node.input[0] = guarded
            nodes.append(node)
        if len(nodes) != len(graph.node):
            del graph.node[:]
            graph.node.extend(nodes)


def _trip_guard(loop: onnx.NodeProto, trip: str) -> tuple[str, list[onnx.NodeProto]]:
    """The nodes that check ``trip`` against the cap, and the name of the trip count they pass on."""
    loop_name = loop.name or loop.output[0]
    prefix = f"{TRIP_GUARD_PREFIX}{loop_name}/"

    def const(name: str, value: np.ndarray) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [prefix + name], value=onnx.numpy_helper.from_array(value))

    nodes = [
        const("cap", np.array(MAX_TRIP_COUNT, np.int64)),
        const("zero", np.array(0, np.int64)),
        const("fits", np.array([1], np.int64)),
        const("does_not_fit", np.array([2], np.int64)),
        helper.make_node("Greater", [trip, prefix + "cap"], [prefix + "over"]),
        helper.make_node("Where", [prefix + "over", prefix + "does_not_fit", prefix + "fits"], [prefix + "shape"]),
        # Fails past the cap: one element cannot take the shape [2].
        helper.make_node("Reshape", [prefix + "zero", prefix + "shape"], [prefix + "probe"],
                         name=TRIP_GUARD_PREFIX + loop_name),
        helper.make_node("ReduceMax", [prefix + "probe"], [prefix + "no_change"], keepdims=0),
        helper.make_node("Add", [trip, prefix + "no_change"], [prefix + "trip"]),
    ]
    return prefix + "trip", nodes


def trip_count_failure(message: str) -> InputError | None:
    """The error to raise for an ONNX Runtime failure of a :func:`guard_trip_counts` check, else None."""
    match = re.search(re.escape(TRIP_GUARD_PREFIX) + r"([^']*)'", message)
    if match is None:
        return None
    return InputError(
        f"Loop node {match.group(1)!r} was asked for more than {MAX_TRIP_COUNT} iterations by a trip count computed "
        f"at run time; onnxgrad refuses more (onnxgrad._validate.MAX_TRIP_COUNT), since a Loop's scan outputs grow "
        "with every iteration until memory runs out. Pass inputs that give a smaller trip count."
    )
