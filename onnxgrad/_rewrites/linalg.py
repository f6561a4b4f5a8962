"""Einsum (as an onnxgrad function) and Det (as the Leibniz sum)."""

from __future__ import annotations

import itertools

import numpy as np

from onnxgrad import _custom_gradients as cg
from onnxgrad._graph import GraphWriter
from onnxgrad._rewrites._common import attr, call_function, is_float, static_shape
from onnxgrad._rewrites._registry import NO_GRADIENT, register
from onnxgrad._standard_gradients import ones_like


def _einsum_explicit(equation: str, shapes: list[tuple[int, ...]]) -> tuple[list[str], str] | None:
    """``(operand labels, output labels)`` of an equation with its ellipses spelled out as letters
    (the same letter for the same broadcast axis) and its implicit output made explicit; None when
    an ellipsis axis broadcasts (size 1 against more), which the Einsum gradients cannot reduce."""
    lhs, arrow, out = equation.partition("->")
    operands = lhs.split(",")
    free = [c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba" if c not in equation]
    widths = [len(shape) - len(op.replace("...", "")) for op, shape in zip(operands, shapes)]
    ellipsis = "".join(free[: max([wd for op, wd in zip(operands, widths) if "..." in op], default=0)][::-1])
    sizes: dict[str, int] = {}
    for k, (op, width) in enumerate(zip(operands, widths)):
        operands[k] = op.replace("...", ellipsis[len(ellipsis) - width:] if width else "")
        for letter, size in zip(operands[k], shapes[k]):
            if letter in ellipsis and sizes.setdefault(letter, size) != size:
                return None
    if not arrow:
        letters = "".join(operands)
        out = ellipsis + "".join(sorted(c for c in set(letters) - set(ellipsis) if letters.count(c) == 1))
    return operands, out.replace("...", ellipsis)


def _einsum_diagonal(gw: GraphWriter, x: str, labels: str, shape: tuple[int, ...]) -> tuple[str, str]:
    """An operand with an index repeated (``ii``) as its diagonal, a Gather on the pair's flattened
    axes: ``(tensor, labels)`` with each index once."""
    while len(set(labels)) != len(labels):
        letter = next(c for c in labels if labels.count(c) > 1)
        first = labels.index(letter)
        second = labels.index(letter, first + 1)
        others = [k for k in range(len(labels)) if k not in (first, second)]
        size = shape[first]
        moved = gw.op("Transpose", x, perm=others + [first, second])
        flat = gw.op("Reshape", moved, gw.constant([0] * len(others) + [size * size], np.int64))
        x = gw.op("Gather", flat, gw.constant(np.arange(size, dtype=np.int64) * (size + 1)), axis=len(others))
        labels = "".join(labels[k] for k in others) + letter
        shape = tuple(shape[k] for k in others) + (size,)
    return x, labels


@register("Einsum", why=NO_GRADIENT, note="an onnxgrad function")
def _einsum(node, gw, types) -> bool:
    """Einsum as an onnxgrad function per equation, its gradients Einsums too: the gradient of an
    operand contracts dY with the other operands (and ones shaped like the operand, for its indices
    that appear nowhere else). Ellipses become letters (static ranks; no broadcast of size-1 ellipsis
    axes); an operand with a repeated index becomes its diagonal first (static sizes)."""
    equation = attr(node, "equation").replace(" ", "")
    if not all(is_float(types, x) for x in node.input):
        return False
    shapes = [types.shape(x) for x in node.input]
    if "." in equation or any(len(set(op)) != len(op) for op in equation.partition("->")[0].split(",")):
        if any(shape is None or None in shape for shape in shapes):
            return False
    explicit = _einsum_explicit(equation, shapes) if "." in equation else None
    if "." in equation and explicit is None:
        return False
    explicit = explicit or _einsum_explicit(equation, [()] * len(node.input))
    assert explicit is not None  # without ellipses nothing broadcasts
    operands, out = explicit
    tensors = list(node.input)
    for k, op in enumerate(operands):
        if len(set(op)) != len(op):
            tensors[k], operands[k] = _einsum_diagonal(gw, tensors[k], op, tuple(shapes[k]))
    name = "Einsum_" + "".join(c if c.isalnum() else "_" for c in f"{','.join(operands)}_{out}")
    grads: list[cg.GradNode] = []
    for k, op in enumerate(operands):
        others = [(operands[j], f"I({j})") for j in range(len(operands)) if j != k]
        labels, inputs = [out], ["GO(0)"]
        for label, ref in others:
            labels.append(label)
            inputs.append(ref)
        if set(op) - set(out) - {c for label, _ in others for c in label}:
            grads += ones_like(f"ones{k}", f"I({k})")
            labels.append(op)
            inputs.append(f"ones{k}")
        grads.append(cg.GradNode("Einsum", tuple(inputs), (f"GI({k})",), {"equation": f"{','.join(labels)}->{op}"}))
    cg.register(cg.CustomGradient(name, tuple(grads)))
    call_function(gw, name, "Einsum", tensors, node.output, equation=f"{','.join(operands)}->{out}")
    return True


@register("Det", why=NO_GRADIENT, note="up to 4 x 4")
def _det(node, gw, types) -> bool:
    """Det of matrices up to 4 x 4 as its Leibniz sum (products of entries, one per permutation):
    exact gradients, singular matrices included. No gradient in the builder."""
    x = node.input[0]
    shape = static_shape(types, x)
    if (shape is None or len(shape) < 2 or shape[-1] != shape[-2] or not 1 <= shape[-1] <= 4
            or not is_float(types, x)):
        return False
    size = shape[-1]
    flat = gw.op("Reshape", x, gw.constant([*shape[:-2], size * size], np.int64))
    total = None
    for permutation in itertools.permutations(range(size)):
        sign = np.linalg.det(np.eye(size)[list(permutation)])
        factors = [gw.op("Gather", flat, gw.constant(np.array(row * size + col, np.int64)), axis=-1)
                   for row, col in enumerate(permutation)]
        term = factors[0]
        for factor in factors[1:]:
            term = gw.op("Mul", term, factor)
        if total is None:
            total = term if sign > 0 else gw.op("Neg", term)
        else:
            total = gw.op("Add" if sign > 0 else "Sub", total, term)
    gw.node("Identity", [total], node.output)
    return True
