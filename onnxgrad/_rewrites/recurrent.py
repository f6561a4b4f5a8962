"""RNN, GRU and LSTM unrolled over a static sequence length."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnxgrad._graph import TypeTable
from onnxgrad._rewrites._common import attr, is_float, static_shape
from onnxgrad._rewrites._registry import NO_GRADIENT, register

#: Gates per step and default activations of the recurrent ops (ONNX's gate order).
_RECURRENT = {"RNN": (1, ("Tanh",)), "GRU": (3, ("Sigmoid", "Tanh")), "LSTM": (4, ("Sigmoid", "Tanh", "Tanh"))}


_ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu"}


def _activation_names(node: onnx.NodeProto) -> list[str]:
    """The node's activations, lower case, defaults filled in (one set per direction)."""
    names = [(a.decode() if isinstance(a, bytes) else a).lower() for a in (attr(node, "activations") or [])]
    directions = 2 if attr(node, "direction", "forward") == "bidirectional" else 1
    return names or [d.lower() for d in _RECURRENT[node.op_type][1]] * directions


def _kept(node: onnx.NodeProto, graph: onnx.GraphProto, types: TypeTable) -> str | None:
    """Why a recurrent node cannot be unrolled (an attribute or a shape), or None."""
    x, weight = node.input[:2]
    x_shape = types.shape(x)
    if not is_float(types, x):
        return f"its input X {x!r} is not a float tensor"
    if static_shape(types, weight) is None:
        return f"the shape of its W {weight!r} is not static"
    if x_shape is None or x_shape[0] is None:
        return f"its sequence length (axis 0 of X {x!r}) is not static"
    if attr(node, "layout", 0):
        return "its attribute layout=1 (batch-first), which onnxgrad does not unroll"
    if attr(node, "input_forget", 0):
        return "its attribute input_forget=1, which onnxgrad does not unroll"
    names = _activation_names(node)
    directions = 2 if attr(node, "direction", "forward") == "bidirectional" else 1
    per_direction = len(_RECURRENT[node.op_type][1])
    if len(names) != per_direction * directions or any(name not in _ACTIVATIONS for name in names):
        return (f"its attribute activations={names} with direction={attr(node, 'direction', 'forward')!r}: "
                f"onnxgrad unrolls {per_direction} per direction from Tanh, Sigmoid and Relu only")
    return None


@register("RNN", "GRU", "LSTM", why=NO_GRADIENT, note="unrolled", explain=_kept)
def _recurrent(node, gw, types) -> bool:
    """RNN, GRU and LSTM unrolled over their (static) sequence length into MatMul, Add, Mul and the
    activations, every output (Y, Y_h, Y_c) and direction; sequence_lens as masks, peepholes, clip.
    Not covered (the node is kept): layout=1, LSTM's input_forget, activations other than Tanh,
    Sigmoid and Relu."""
    gates, defaults = _RECURRENT[node.op_type]
    inputs = list(node.input) + [""] * (8 - len(node.input))
    x, weight, recurrence, bias, lengths, initial_h, initial_c, peepholes = inputs[:8]
    if _kept(node, gw.graph, types) is not None:
        return False
    shape = static_shape(types, weight)
    assert shape is not None  # _kept checked it
    x_shape = types[x][1]
    directions = 2 if attr(node, "direction", "forward") == "bidirectional" else 1
    activations = [_ACTIVATIONS[name] for name in _activation_names(node)]
    dtype = helper.tensor_dtype_to_np_dtype(types[x][0])
    steps, hidden = x_shape[0], shape[1] // gates
    clip = attr(node, "clip")
    reverse = [attr(node, "direction", "forward") == "reverse", True][:directions]

    def act(k: int, d: int, value: str) -> str:
        if clip is not None:
            value = gw.op("Clip", value, gw.constant(np.array(-clip, dtype)), gw.constant(np.array(clip, dtype)))
        return gw.op(activations[d * len(defaults) + k], value)

    def part(value: str, k: int, count: int = 1) -> str:  # gates k .. k+count-1 of the last axis
        return gw.op("Slice", value, gw.constant([k * hidden], np.int64), gw.constant([(k + count) * hidden], np.int64),
                    gw.constant([-1], np.int64))

    def pick(value: str, index: int) -> str:  # index of axis 0, dropped
        return gw.op("Gather", value, gw.constant(np.array(index, np.int64)), axis=0)

    def blend(mask: str | None, new: str, old: str | None) -> str:  # new where the step is in the sequence
        if mask is None:
            return new
        kept = gw.op("Mul", new, mask)
        return kept if old is None else gw.op("Add", kept, gw.op("Mul", old, gw.op("Sub", one, mask)))

    one = gw.constant(np.array(1.0, dtype))
    masks: list[str | None] = [None] * steps
    if lengths:
        lengths64 = gw.cast(lengths, np.int64)
        masks = [gw.unsqueeze(gw.cast(gw.op("Less", gw.constant(np.array(t, np.int64)), lengths64), dtype), [1])
                 for t in range(steps)]
    ys, finals_h, finals_c = [], [], []
    for d in range(directions):
        w_t = gw.op("Transpose", pick(weight, d), perm=[1, 0])
        r_t = gw.op("Transpose", pick(recurrence, d), perm=[1, 0])
        projected = gw.op("MatMul", x, w_t)  # [steps, batch, gates * hidden]
        recurrent_bias = zr_bias = None
        if bias:
            both = pick(bias, d)
            w_bias, r_bias = part(both, 0, gates), part(both, gates, gates)
            if node.op_type == "GRU" and attr(node, "linear_before_reset", 0):
                # The h gate's recurrent bias sits inside r * (...): added per step, as z's and r's.
                recurrent_bias, zr_bias = part(r_bias, 2), part(r_bias, 0, 2)
                projected = gw.op("Add", projected, w_bias)
            else:
                projected = gw.op("Add", projected, gw.op("Add", w_bias, r_bias))
        h = pick(initial_h, d) if initial_h else None
        c = pick(initial_c, d) if initial_c and node.op_type == "LSTM" else None
        p = pick(peepholes, d) if peepholes and node.op_type == "LSTM" else None
        outputs = [None] * steps
        for t in (range(steps - 1, -1, -1) if reverse[d] else range(steps)):
            step = pick(projected, t)
            mixed = step if h is None else gw.op("Add", step, gw.op("MatMul", h, r_t))
            if node.op_type == "RNN":
                new_h = act(0, d, mixed)
            elif node.op_type == "GRU":
                zr = part(mixed, 0, 2) if zr_bias is None else gw.op("Add", part(mixed, 0, 2), zr_bias)
                z, r = act(0, d, part(zr, 0)), act(0, d, part(zr, 1))
                if h is None:
                    candidate = part(step, 2)
                    if recurrent_bias is not None:
                        candidate = gw.op("Add", candidate, gw.op("Mul", r, recurrent_bias))
                elif attr(node, "linear_before_reset", 0):
                    inner = gw.op("MatMul", h, part(r_t, 2))
                    if recurrent_bias is not None:
                        inner = gw.op("Add", inner, recurrent_bias)
                    candidate = gw.op("Add", part(step, 2), gw.op("Mul", r, inner))
                else:
                    candidate = gw.op("Add", part(step, 2), gw.op("MatMul", gw.op("Mul", r, h), part(r_t, 2)))
                candidate = act(1, d, candidate)
                # (1 - z) * candidate + z * h
                new_h = gw.op("Mul", gw.op("Sub", one, z), candidate)
                if h is not None:
                    new_h = gw.op("Add", new_h, gw.op("Mul", z, h))
            else:  # LSTM: gates i, o, f, c; peepholes i, o, f
                pre_i, pre_o, pre_f = part(mixed, 0), part(mixed, 1), part(mixed, 2)
                if p is not None and c is not None:
                    pre_i = gw.op("Add", pre_i, gw.op("Mul", part(p, 0), c))
                    pre_f = gw.op("Add", pre_f, gw.op("Mul", part(p, 2), c))
                i, f, g = act(0, d, pre_i), act(0, d, pre_f), act(1, d, part(mixed, 3))
                new_c = gw.op("Mul", i, g)
                if c is not None:
                    new_c = gw.op("Add", gw.op("Mul", f, c), new_c)
                if p is not None:
                    pre_o = gw.op("Add", pre_o, gw.op("Mul", part(p, 1), new_c))
                new_h = gw.op("Mul", act(0, d, pre_o), act(2, d, new_c))
                c = blend(masks[t], new_c, c)
            outputs[t] = gw.unsqueeze(blend(masks[t], new_h, None), [0])
            h = blend(masks[t], new_h, h)
        ys.append(gw.unsqueeze(gw.op("Concat", *outputs, axis=0), [1]))
        finals_h.append(gw.unsqueeze(h, [0]))
        if node.op_type == "LSTM":
            finals_c.append(gw.unsqueeze(c, [0]))
    results = [ys, finals_h, finals_c]
    for out, parts in zip(node.output, results):
        if out:
            gw.node("Concat", parts, [out], axis=1 if parts is ys else 0)
    return True
