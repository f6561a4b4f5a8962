"""Int math, differentiated as MindSpore 2.10 does.

MindSpore differentiates int tensors in their own dtype: the gradient of int32 ``x * 3`` is int32 3s, and
a Cast's gradient is the incoming gradient cast back to the Cast's source dtype (truncation toward zero
for float to int). ONNX Runtime's builder differentiates float tensors only, so each int tensor the
gradient flows through gets a float64 copy (its "shadow", computed by the same op in float64), the Casts
between int and float become onnxgrad functions whose gradients do MindSpore's cast back, and the int
gradient read off the shadow is cast to the int dtype at the end. float64 holds every int up to 2**53
exactly, and Add/Sub/Mul/Neg/ReduceSum/MatMul on exact ints give exact ints, so the shadow's gradient
is MindSpore's int gradient while magnitudes stay below 2**53.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnxgrad import _custom_gradients
from onnxgrad._flow import gradient_sources, stopped_inputs
from onnxgrad._graph import FLOAT_TYPES, GraphWriter, TypeTable, cast_to, is_default_domain
from onnxgrad.errors import UnsupportedGradientError

__all__ = ["INT_SHADOW_PREFIX", "INT_TYPES", "int_shadow_name", "shadow_int_math", "refuse_unfollowed_int_math"]

#: Prefix of the float64 shadow of an int input or int Parameter whose gradient is wanted.
INT_SHADOW_PREFIX = "onnxgrad/int_as_double/"

INT_TYPES = frozenset({
    onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
    onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64,
    onnx.TensorProto.BOOL,
})
_NUMBER_INT_TYPES = INT_TYPES - {onnx.TensorProto.BOOL}
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


def _int_boundary_function(gw: GraphWriter, src: int, dst: int) -> str:
    """``Cast`` from an int tensor's float64 shadow to float ``dst``; gradient: cast to ``src``, as MindSpore."""
    name = f"IntToFloat_{src}_{dst}"
    _cast_function(gw, name, [helper.make_node("Cast", ["x"], ["y"], to=dst)], (
        _custom_gradients.GradNode("Cast", ("GO(0)",), ("g_int",), {"to": src}),
        _custom_gradients.GradNode("Cast", ("g_int",), ("GI(0)",), {"to": _DOUBLE}),
    ))
    return name


def _float_to_int_function(gw: GraphWriter, src: int, dst: int) -> str:
    """``Cast`` from float ``src`` to int ``dst``, as a float64 shadow; gradient: cast back to ``src``."""
    name = f"FloatToInt_{src}_{dst}"
    body = [helper.make_node("Cast", ["x"], ["i"], to=dst), helper.make_node("Cast", ["i"], ["y"], to=_DOUBLE)]
    _cast_function(gw, name, body, (
        # Through int64 into the int dtype: MindSpore's int gradient wraps around there.
        _custom_gradients.GradNode("Cast", ("GO(0)",), ("g64",), {"to": onnx.TensorProto.INT64}),
        _custom_gradients.GradNode("Cast", ("g64",), ("g_int",), {"to": dst}),
        _custom_gradients.GradNode("Cast", ("g_int",), ("GI(0)",), {"to": src}),
    ))
    return name


def _cast_function(gw: GraphWriter, name: str, body: list, gradient: tuple) -> None:
    opsets = [helper.make_opsetid("", gw.opset)]
    function = helper.make_function(_custom_gradients.DOMAIN, name, ["x"], ["y"], body, opsets)
    gw.add_function(function)
    _custom_gradients.register(_custom_gradients.CustomGradient(name, gradient))


def shadow_int_math(
    graph: onnx.GraphProto, gw: GraphWriter, types: TypeTable, sources: set[str], from_float: bool
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
    elem = types.elem
    shadow: dict[str, str] = {}
    blocked: list[onnx.NodeProto] = []
    nodes = list(graph.node)
    new_nodes: list[onnx.NodeProto] = []
    gw.nodes = new_nodes
    for name in sorted(sources):
        shadow[name] = gw.node("Cast", [name], [int_shadow_name(name)], to=_DOUBLE)[0]
    for node in nodes:
        stopped = stopped_inputs(node)
        data = [(i, x) for i, x in enumerate(node.input) if x and i not in stopped and _carries_data(node, i, gw.opset)]
        shadowed = [x for _, x in data if x in shadow]
        to = cast_to(node, types)
        if from_float and node.op_type == "Cast" and elem(node.input[0]) in FLOAT_TYPES and to in _NUMBER_INT_TYPES:
            name = _float_to_int_function(gw, elem(node.input[0]), to)
            shadow[node.output[0]] = gw.node(name, [node.input[0]], 1, domain=_custom_gradients.DOMAIN)[0]
        elif not shadowed:
            pass
        elif node.op_type in ("Cast", "CastLike") and to in FLOAT_TYPES:
            name = _int_boundary_function(gw, elem(node.input[0]), to)
            gw.node(name, [shadow[node.input[0]]], list(node.output), domain=_custom_gradients.DOMAIN)
            continue  # the original Cast goes: its output now comes from the shadow
        elif node.op_type == "Cast" and to in _NUMBER_INT_TYPES:
            shadow[node.output[0]] = gw.op("Identity", shadow[node.input[0]])
        elif is_default_domain(node.domain) and node.op_type in _EXACT_INT_OPS and all(elem(o) in INT_TYPES for o in node.output):
            inputs = list(node.input)
            for i, x in data:
                inputs[i] = shadow[x] if x in shadow else gw.cast(x, np.dtype(np.float64))
            outs = gw.node(node.op_type, inputs, len(node.output))
            gw.nodes[-1].attribute.extend(node.attribute)
            shadow.update(zip(node.output, outs))
        elif node.op_type not in _ZERO_GRADIENT_OPS:
            blocked.append(node)
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    gw.nodes = graph.node
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


def refuse_unfollowed_int_math(graph: onnx.GraphProto, blocked: list, shadow: dict, target: str) -> None:
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
