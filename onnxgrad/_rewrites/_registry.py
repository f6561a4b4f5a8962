"""The one registry of rewrites: which op each rewrite replaces, and why.

Family modules register their rewrites with :func:`register`; the package's
docstring and the README's list of rewritten ops are both :func:`listing`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import onnx

from onnxgrad._graph import GraphWriter, TypeTable

#: Why an op is rewritten (the groups of :func:`listing`).
NO_GRADIENT = "no gradient in ORT's builder"
NO_KERNEL = "a gradient in ORT's builder but no CPU kernel for it"
WRONG_GRADIENT = "a wrong gradient in ORT's builder"
OUTER_SCOPE = "control flow: ORT's builder gives what a body reads from the outer scope no gradient"
REASONS = (NO_GRADIENT, NO_KERNEL, WRONG_GRADIENT, OUTER_SCOPE)

#: ``rewrite(node, w, types)`` appends the replacement nodes to ``w`` and returns True, or returns
#: False to keep the node (a shape, size or attribute it needs is not known or not covered).
RewriteFn = Callable[[onnx.NodeProto, GraphWriter, TypeTable], bool]
#: ``explain(node, graph, types)``: what keeps a node of ``graph`` from being rewritten (an attribute
#: and its value, an unknown shape), or None.
ExplainFn = Callable[[onnx.NodeProto, onnx.GraphProto, TypeTable], "str | None"]


@dataclasses.dataclass(frozen=True)
class Rewrite:
    """One registered rewrite.

    Attributes:
        op_type: the default-domain op it replaces.
        apply: the rewrite.
        why: one of :data:`REASONS`.
        note: what the rewrite covers or how, for the lists (may be empty).
        explain: says why a node was kept, for the refusal that follows (may be None).
    """

    op_type: str
    apply: RewriteFn
    why: str
    note: str = ""
    explain: ExplainFn | None = None


#: ``{op_type: Rewrite}``, in registration order. Tests delete entries to show a rewrite is needed.
REWRITES: dict[str, Rewrite] = {}


def register(
    *op_types: str, why: str, note: str = "", explain: ExplainFn | None = None
) -> Callable[[RewriteFn], RewriteFn]:
    """Registers the decorated function as the rewrite of ``op_types``.

    Args:
        op_types: the default-domain ops it replaces.
        why: one of :data:`REASONS`.
        note: what it covers, for the lists.
        explain: what keeps a node from being rewritten, for the refusal.

    Returns:
        The decorator, which returns the function unchanged.
    """
    if why not in REASONS:
        raise ValueError(f"why must be one of {REASONS}, not {why!r}")

    def decorate(apply: RewriteFn) -> RewriteFn:
        for op_type in op_types:
            if op_type in REWRITES:
                raise ValueError(f"a rewrite of {op_type} is registered twice")
            REWRITES[op_type] = Rewrite(op_type, apply, why, note, explain)
        return apply

    return decorate


def listing() -> str:
    """The rewritten ops grouped by why, one ``- why: ops.`` line per group, in alphabetical order;
    ops sharing a rewrite and note are listed together with the note once."""
    lines = []
    for why in REASONS:
        groups: dict[tuple[RewriteFn, str], list[str]] = {}
        for op_type, rewrite in REWRITES.items():
            if rewrite.why == why:
                groups.setdefault((rewrite.apply, rewrite.note), []).append(op_type)
        if groups:
            items = sorted(", ".join(ops) + (f" ({note})" if note else "") for (_, note), ops in groups.items())
            lines.append(f"- {why}: " + "; ".join(items) + ".")
    return "\n".join(lines)
