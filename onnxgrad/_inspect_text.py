"""``onnxgrad inspect``'s text: an :class:`~onnxgrad._inspect_report.InspectReport` formatted for people.

The analysis (``_inspect``) returns data; this module only formats it. ``shape_text``,
``size_text`` and ``table`` are also what the command line uses for its other listings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: the report is data this module formats
    from onnxgrad._inspect_report import InspectReport

__all__ = ["to_text", "shape_text", "size_text", "table"]


def shape_text(shape: list | None) -> str:
    """``[2, ?, N]``: ints, unknown sizes as ``?``, size names as they are; ``?`` for an unknown rank."""
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def size_text(n: int) -> str:
    """A byte count in B, KiB, MiB or GiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable


def table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Rows of cells as aligned text lines, each indented."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def to_text(report: InspectReport) -> str:
    """The report as people read it (what ``onnxgrad inspect`` prints)."""
    opsets = ", ".join(f"{domain} {version}" for domain, version in report.opsets.items())
    lines = [
        report.path,
        f"  IR version {report.ir_version}; opsets: {opsets}; producer: {report.producer or 'unknown'}; "
        f"graph: {report.graph_name or '(unnamed)'}",
        "",
        "Inputs",
    ]
    lines += table([[r.name, r.dtype, shape_text(r.shape)] for r in report.inputs] or [["(none)"]])
    lines += ["Outputs"]
    lines += table([[r.name, r.dtype, shape_text(r.shape)] for r in report.outputs] or [["(none)"]])

    totals = report.totals()
    lines += ["", f"Parameters ({totals['trainable_count']} trainable)"]
    rows = [["name", "shape", "dtype", "elements", "bytes"]]
    rows += [[w.name, shape_text(w.shape), w.dtype, f"{w.elements:,}", size_text(w.bytes)] for w in report.trainable]
    rows.append(["total", "", "", f"{totals['trainable_elements']:,}", size_text(totals["trainable_bytes"])])
    lines += table(rows)
    if totals["constant_count"]:
        lines.append(
            f"  + {totals['constant_count']} constant initializer(s): {totals['constant_elements']:,} elements, "
            f"{size_text(totals['constant_bytes'])}"
        )

    lines += ["", f"Ops ({sum(op.count for op in report.ops)} nodes)"]
    rows = [["op", "count", "gradient"]]
    rows += [[(f"{op.domain}::" if op.domain else "") + op.op_type, str(op.count), op.gradient] for op in report.ops]
    lines += table(rows)
    lines.append("  (gradient: yes / no = blocks a gradient / - = no gradient flows through it)")

    lines += ["", "Gradients"]
    rows = [["tensor", "kind", "dtype", "status"]]
    rows += [[s.name, s.kind, s.dtype, s.status] for s in report.sources]
    lines += table(rows)
    if report.blocking:
        lines += ["Blocking nodes (no gradient in onnxruntime-training)"]
        rows = [["node", "op", "blocks"]]
        rows += [
            [b.name or f"#{b.index} (unnamed)", (f"{b.domain}::" if b.domain else "") + b.op_type, ", ".join(b.blocks)]
            for b in report.blocking
        ]
        lines += table(rows)
    if report.differentiable:
        verdict = "differentiable: `onnxgrad grad` and ForwardValueAndGrad will build the gradient"
    elif report.blocking:
        types = sorted({b.op_type for b in report.blocking})
        verdict = (
            f"NOT differentiable: no gradient for {', '.join(types)}; replace those nodes, or differentiate only "
            "tensors marked ok"
        )
        if report.error:
            verdict += f" (also: {report.error})"
    else:
        verdict = f"NOT differentiable: {report.error}"
    lines += ["", verdict]
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
