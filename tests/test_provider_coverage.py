"""``python -m scripts.provider_coverage``: the paper check of the CANN provider's kernels."""

from __future__ import annotations

import onnx

from scripts import provider_coverage as coverage


def _model(op: str, opset: int, elem: int = onnx.TensorProto.FLOAT) -> onnx.ModelProto:
    h = onnx.helper
    graph = h.make_graph(
        [h.make_node(op, ["x"], ["y"])], "g", [h.make_tensor_value_info("x", elem, [2, 3])],
        [h.make_tensor_value_info("y", elem, [2, 3])],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=8)


def test_matching_uses_the_op_version_at_the_model_opset_and_the_type():
    kernels = coverage.load_kernels()["kernels"]
    assert coverage.node_support(_model("Relu", 17), kernels)[0]["supported"]  # Relu-14 kernel, float
    assert not coverage.node_support(_model("Exp", 17), kernels)[0]["supported"]  # Exp: float16 only
    assert coverage.node_support(_model("Exp", 17, onnx.TensorProto.FLOAT16), kernels)[0]["supported"]
    assert not coverage.node_support(_model("Softmax", 17), kernels)[0]["supported"]  # no kernel at all


def test_report_on_lenet_routes_gemm_to_matmul_and_names_the_fallbacks():
    table = coverage.load_kernels()
    entry = coverage.report(["lenet"], table)["lenet"]
    assert entry["nodes"] == len(entry["rows"]) and 0 < entry["on_provider"] < entry["nodes"]
    assert not any(op.startswith("Gemm") for op in entry["cpu_fallback"])
    assert "ScatterElements(float)" in entry["cpu_fallback"]  # MaxPool's gradient
    assert {r["op"] for r in entry["rows"] if r["supported"]} >= {"MatMul", "Conv", "Relu"}
