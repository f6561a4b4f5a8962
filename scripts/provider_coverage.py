"""Which nodes of onnxgrad's gradient graphs an execution provider has kernels for.

No Ascend device is reachable from this project, so the CANN execution
provider is checked on paper: every node of the lowered forward+backward graph
of each benchmark model is matched against the kernels that ONNX Runtime's CANN
provider registers (``cann_kernels.json``, read from
``onnxruntime/core/providers/cann/cann_execution_provider.cc``): same op, a
kernel version range holding the op's version at the model's opset, and the
node's element type. ONNX Runtime runs every other node on the CPU provider,
copying tensors across at each boundary. Registration is necessary, not
sufficient: a provider may still refuse a node (its ``GetCapability``).

Usage::

    python -m scripts.provider_coverage                  # markdown table, CANN (from the repository root)
    python -m scripts.provider_coverage --json out.json  # per-node detail as well
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys
from typing import Any

import onnx
import onnx.inliner
from onnx import defs, helper

from scripts.benchmarks import models as bench_models

KERNELS = pathlib.Path(__file__).resolve().with_name("cann_kernels.json")
# Not executed: ONNX Runtime folds them into initializers when the session is created.
_FOLDED = {"Constant"}


def load_kernels(path: pathlib.Path = KERNELS) -> dict[str, Any]:
    """The kernel table: ``{"provider", "source", "kernels": [{"op", "since", "until", "types"}]}``."""
    return json.loads(path.read_text())


def _elem_types(model: onnx.ModelProto) -> dict[str, str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            types[value.name] = _type_name(value.type.tensor_type.elem_type)
    for init in graph.initializer:
        types[init.name] = _type_name(init.data_type)
    return types


def _type_name(elem: int) -> str:
    return helper.tensor_dtype_to_string(elem).split(".")[-1].lower()  # float, double, int64, ...


def node_support(model: onnx.ModelProto, kernels: list[dict]) -> list[dict[str, Any]]:
    """One entry per executed node: op, version, element type, and whether a kernel matches."""
    model = onnx.inliner.inline_local_functions(model)  # as ONNX Runtime does before placing nodes
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    by_op = collections.defaultdict(list)
    for kernel in kernels:
        by_op[kernel["op"]].append(kernel)
    types = _elem_types(model)
    rows = []
    for node in model.graph.node:
        if node.op_type in _FOLDED:
            continue
        version = defs.get_schema(node.op_type, opset, node.domain).since_version
        elem = next((types[name] for name in node.input if name in types), None)
        supported = any(
            k["since"] <= version and (k["until"] is None or version <= k["until"])
            and (not k["types"] or elem in k["types"])
            for k in by_op.get(node.op_type, [])
        )
        rows.append({"op": node.op_type, "version": version, "type": elem, "supported": supported})
    return rows


def gradient_graph(name: str, device_kind: str = "cann") -> onnx.ModelProto:
    """The forward+backward graph onnxgrad runs on ``device_kind`` for a benchmark model
    (loss, input and weight gradients; the provider's route applied)."""
    import onnxgrad
    from onnxgrad import _engine, _lower

    case = bench_models.build(name)
    loss = bench_models.onnx_loss(case)
    cell = onnxgrad.nn.WithLossCell(onnxgrad.load(case.backbone), loss, label_dtype=case.label.dtype)
    spec = _engine.GradSpec(inputs=(0,), weights=[p.name for p in cell.trainable_params()])
    built = _engine.gradient_model(cell, spec, [case.x.shape, case.label.shape]).model
    return _lower.for_provider(built, device_kind)


def report(models: list[str], table: dict[str, Any]) -> dict[str, Any]:
    """Per model: node counts, and the ops that fall back to the CPU with their counts."""
    out = {}
    for name in models:
        kind = {"CANNExecutionProvider": "cann", "CUDAExecutionProvider": "cuda"}.get(table["provider"], "cpu")
        rows = node_support(gradient_graph(name, kind), table["kernels"])
        fallback = collections.Counter(f"{r['op']}({r['type']})" for r in rows if not r["supported"])
        out[name] = {
            "nodes": len(rows),
            "on_provider": sum(r["supported"] for r in rows),
            "cpu_fallback": dict(fallback.most_common()),
            "rows": rows,
        }
    return out


def markdown(result: dict[str, Any], table: dict[str, Any]) -> str:
    lines = [
        f"{table['provider']}: nodes of onnxgrad's gradient graphs with a registered kernel",
        "",
        "| model | nodes | on the provider | falls back to the CPU (count) |",
        "|---|---:|---:|---|",
    ]
    for name, entry in result.items():
        fallback = ", ".join(f"{op} {n}" for op, n in entry["cpu_fallback"].items()) or "none"
        share = 100 * entry["on_provider"] / max(entry["nodes"], 1)
        lines.append(f"| {name} | {entry['nodes']} | {entry['on_provider']} ({share:.0f}%) | {fallback} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(bench_models.MODELS), help="comma-separated benchmark models")
    parser.add_argument("--kernels", default=str(KERNELS), help="the provider's kernel table (JSON)")
    parser.add_argument("--json", metavar="PATH", help="write the per-node detail as JSON")
    args = parser.parse_args(argv)
    table = load_kernels(pathlib.Path(args.kernels))
    result = report([m for m in args.models.split(",") if m], table)
    print(markdown(result, table))
    print(f"\n(kernel table: {table['source']})")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
