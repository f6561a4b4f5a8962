"""What ``onnxgrad inspect`` reports, as data: the rows, the statuses and :class:`InspectReport`.

``_inspect`` finds these values (the analysis), ``_inspect_text`` formats them for people and
:meth:`InspectReport.to_dict` gives them as JSON (:meth:`InspectReport.from_dict` reads them back
from the isolated analysis's child process). This module only holds them, so the text formatting
depends on the report's shape, not on the analysis.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

__all__ = [
    "InspectReport", "TensorRow", "WeightRow", "OpRow", "SourceRow", "BlockingNode",
    "YES", "NO", "NOT_NEEDED", "UNKNOWN", "OK", "BLOCKED", "PARTLY_BLOCKED", "NO_PATH", "NOT_FLOAT",
]

# Gradient column of the op histogram.
YES, NO, NOT_NEEDED, UNKNOWN = "yes", "no", "-", "?"
# Status of an input or weight.
OK = "ok"
BLOCKED = "blocked"
PARTLY_BLOCKED = "partly blocked"
NO_PATH = "no path"
NOT_FLOAT = "not float"


@dataclasses.dataclass
class TensorRow:
    """A graph input or output: name, shape (ints, size names, None) and dtype."""

    name: str
    shape: list | None
    dtype: str


@dataclasses.dataclass
class WeightRow:
    """An initializer: trainable weights first, then constants."""

    name: str
    shape: list[int]
    dtype: str
    elements: int
    bytes: int
    trainable: bool


@dataclasses.dataclass
class OpRow:
    """One op type: how many nodes use it and whether onnxgrad differentiates it.

    ``gradient`` is ``yes``, ``no`` (it blocks a gradient), ``-`` (no gradient
    flows through these nodes, so none is needed) or ``?`` (unknown: the
    gradient build failed for another reason).
    """

    op_type: str
    domain: str
    count: int
    gradient: str


@dataclasses.dataclass
class SourceRow:
    """An input or trainable weight and whether a gradient reaches it.

    ``status``: ``ok`` (the outputs depend on it and nothing blocks the
    gradient), ``blocked`` (only through blocking nodes), ``partly blocked``
    (also through blocking nodes: the build fails until they are replaced),
    ``no path`` (no output depends on it: its gradient is zero) or ``not
    float`` (an int/bool input that enters no float math).
    """

    name: str
    kind: str
    dtype: str
    status: str


@dataclasses.dataclass
class BlockingNode:
    """A node on a gradient path whose op has no gradient, and the inputs/weights it blocks.

    ``index`` is the node's position in the graph (unnamed nodes are shown by it).
    """

    index: int
    name: str
    op_type: str
    domain: str
    blocks: list[str]


@dataclasses.dataclass
class InspectReport:
    """Everything ``onnxgrad inspect`` shows.

    Attributes:
        path: the model file.
        ir_version: the file's IR version.
        opsets: ``{domain: version}`` as imported by the file (``ai.onnx`` for the default domain).
        producer: producer name and version.
        graph_name: the graph's name.
        inputs: the inputs the caller feeds (initializers excluded).
        outputs: the outputs.
        weights: every initializer, trainable weights first.
        ops: the op histogram, most used first.
        differentiable: whether the gradient of every output with respect to
            every input and weight builds.
        sources: each input and trainable weight with its gradient status.
        blocking: the nodes that block a gradient.
        error: why the gradient build failed, when not (only) for blocking ops.
        notes: what the check assumed (symbolic sizes set to 1, conversions).
    """

    path: str
    ir_version: int
    opsets: dict[str, int]
    producer: str
    graph_name: str
    inputs: list[TensorRow]
    outputs: list[TensorRow]
    weights: list[WeightRow]
    ops: list[OpRow]
    differentiable: bool
    sources: list[SourceRow]
    blocking: list[BlockingNode]
    error: str | None
    notes: list[str]

    @property
    def trainable(self) -> list[WeightRow]:
        """The trainable weights."""
        return [w for w in self.weights if w.trainable]

    def totals(self) -> dict[str, int]:
        """Counts, elements and bytes of trainable weights and constants."""
        constants = [w for w in self.weights if not w.trainable]
        return {
            "trainable_count": len(self.trainable),
            "trainable_elements": sum(w.elements for w in self.trainable),
            "trainable_bytes": sum(w.bytes for w in self.trainable),
            "constant_count": len(constants),
            "constant_elements": sum(w.elements for w in constants),
            "constant_bytes": sum(w.bytes for w in constants),
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``--json`` output)."""
        data = dataclasses.asdict(self)
        data["totals"] = self.totals()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InspectReport:
        """The report :meth:`to_dict` gave (its derived ``totals`` are recomputed)."""
        rows = {"inputs": TensorRow, "outputs": TensorRow, "weights": WeightRow, "ops": OpRow, "sources": SourceRow,
                "blocking": BlockingNode}
        values = {f.name: data[f.name] for f in dataclasses.fields(cls)}
        for key, row in rows.items():
            values[key] = [row(**item) for item in values[key]]
        return cls(**values)
