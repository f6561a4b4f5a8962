"""The README's gradient coverage table, generated from the ONNX node test corpus.

Runs every float case of ``onnx.backend.test.case.node`` through
``tests/node_corpus.py`` (gradients against central differences) and prints
one row per op: where its gradient comes from, how many cases are correct,
refused or excluded, and why.

Usage::

    python scripts/gradient_coverage.py            # markdown table
    python scripts/gradient_coverage.py --json F   # every case's outcome as well
    python scripts/gradient_coverage.py --rewrites # the README's list of rewritten ops
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import node_corpus  # noqa: E402
from onnxgrad import _rewrites  # noqa: E402


def _op_of(case) -> str:
    ops = [node.op_type for node in case.model.graph.node]
    return ops[0] if len(set(ops)) == 1 else case.name.removeprefix("test_").split("_")[0]


def outcomes() -> dict[str, tuple[str, object]]:
    """``{case name: (op, Outcome or exclusion reason)}``."""
    result = {}
    for name, case in node_corpus.float_cases().items():
        op = _op_of(case)
        if name.endswith("_expanded") or "_expanded_ver" in name:
            op = f"{op} (function-expanded)"
        reason = node_corpus.exclusion(case)
        result[name] = (op, reason if reason is not None else node_corpus.run(case))
    return result


#: Ops the opset conversion on load replaces: the op they become.
_CONVERTED = {"Upsample": "Resize"}


def _source(op: str, counts: collections.Counter) -> str:
    base = op.split(" ")[0]
    if "(function-expanded)" in op:
        return "its body's ops"
    if not counts["ok"]:
        return "none (refused)" if counts["refused"] else "not checked"
    if base in _CONVERTED and _CONVERTED[base] in _rewrites.REWRITES:
        return f"converted to {_CONVERTED[base]} on load, then an onnxgrad rewrite"
    if base in _rewrites.REWRITES:
        return "onnxgrad rewrite into ops with gradients"
    return "ORT's builder (lowered to standard ops)"


def table(results: dict[str, tuple[str, object]]) -> str:
    by_op: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    notes: dict[str, set[str]] = collections.defaultdict(set)
    dtypes: dict[str, set[str]] = collections.defaultdict(set)
    for name, (op, outcome) in results.items():
        if isinstance(outcome, str):
            by_op[op]["excluded"] += 1
            notes[op].add(f"excluded: {outcome}")
            continue
        by_op[op][outcome.kind] += 1
        if outcome.kind == "ok":
            dtypes[op].add(outcome.dtype)
        elif outcome.kind == "refused":
            notes[op].add("refused: " + outcome.detail.split(":")[0][:90])
        if node_corpus.resampled(name):
            notes[op].add("checked on random inputs: " + node_corpus.resampled(name))
    lines = [
        "| op | gradient from | checked (central differences) | correct | refused | excluded | notes |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for op in sorted(by_op):
        counts = by_op[op]
        checked = ", ".join(sorted(dtypes[op])) or "–"
        note = "; ".join(sorted(notes[op]))[:200].replace("|", "/")
        lines.append(
            f"| {op} | {_source(op, counts)} | {checked} | {counts['ok']} | {counts['refused']} | "
            f"{counts['excluded']} | {note} |"
        )
    total = collections.Counter()
    for counts in by_op.values():
        total.update(counts)
    lines.append(
        f"\n{sum(total.values())} float cases: {total['ok']} correct, {total['refused']} refused, "
        f"{total['excluded']} excluded, {total['wrong']} wrong, {total['error']} other errors."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="PATH", help="write every case's outcome as JSON")
    parser.add_argument("--rewrites", action="store_true", help="print the rewritten ops from the registry, only")
    args = parser.parse_args(argv)
    if args.rewrites:
        print(_rewrites.listing())
        return 0
    results = outcomes()
    print(table(results))
    if args.json:
        data = {name: {"op": op, **({"excluded": o} if isinstance(o, str) else vars(o))}
                for name, (op, o) in results.items()}
        pathlib.Path(args.json).write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
