"""Matrix products: FusedMatMul lowered to Gemm or MatMul, and Gemm routed around a provider
that lacks it (:func:`for_provider`)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnxgrad._graph import GraphWriter, default_opset, infer_types, is_default_domain
from onnxgrad._graph import attrs as node_attrs
from onnxgrad._lower._lowerer import Lowerer
from onnxgrad._lower._registry import lowers


@lowers("com.microsoft::FusedMatMul")
def _fused_matmul(lw: Lowerer, node: onnx.NodeProto) -> None:
    attrs = node_attrs(node)
    if attrs.get("transBatchA", 0) or attrs.get("transBatchB", 0):
        raise lw.fail(node, "transBatchA/transBatchB are not supported")
    alpha = float(attrs.get("alpha", 1.0))
    a, b = node.input[:2]
    shape_a, shape_b = lw.type_of(a)[1], lw.type_of(b)[1]
    if shape_a is not None and shape_b is not None and len(shape_a) == len(shape_b) == 2:
        # Gemm transposes inside its kernel: no transposed copy of an operand (weight gradients).
        lw.emit("Gemm", [a, b], node.output[0], alpha=alpha, transA=int(attrs.get("transA", 0)),
                transB=int(attrs.get("transB", 0)))
        return
    operands = []
    for name, flag in zip(node.input[:2], ("transA", "transB")):
        if attrs.get(flag, 0):
            rank = lw.rank(name, node)
            perm = list(range(rank - 2)) + [rank - 1, rank - 2]
            name = lw.w.op("Transpose", name, perm=perm)
        operands.append(name)
    if alpha == 1.0:
        lw.emit("MatMul", operands, node.output[0])
    else:
        lw.emit("Mul", [lw.w.op("MatMul", *operands), lw.scalar(alpha, node.input[0])], node.output[0])


def for_provider(model: onnx.ModelProto, device_kind: str) -> onnx.ModelProto:
    """A copy of a standard graph rewritten around one provider's kernel gaps (the model itself if none).

    ONNX Runtime's CANN provider registers Gemm for float16 only, and MatMul for
    float32 too, so on ``"cann"`` every Gemm becomes MatMul (+ Mul, + Add) and
    the matrix products stay on the NPU instead of falling back to the CPU
    (``scripts/provider_coverage.py``).
    """
    if device_kind != "cann" or not any(n.op_type == "Gemm" and is_default_domain(n.domain) for n in model.graph.node):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    types = infer_types(copy)
    writer = GraphWriter(graph, default_opset(copy), prefix="onnxgrad_cann")
    nodes: list[onnx.NodeProto] = []
    writer.nodes = nodes
    for node in list(graph.node):
        if node.op_type != "Gemm" or not is_default_domain(node.domain):
            nodes.append(node)
            continue
        attrs = node_attrs(node)
        a, b = node.input[0], node.input[1]
        if attrs.get("transA", 0):
            a = writer.op("Transpose", a, perm=[1, 0])
        if attrs.get("transB", 0):
            b = writer.op("Transpose", b, perm=[1, 0])
        product = writer.op("MatMul", a, b)
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        out = node.output[0]
        elem = types.elem(node.input[0])
        dtype = helper.tensor_dtype_to_np_dtype(elem) if elem else np.float32
        steps = []
        if alpha != 1.0:
            steps.append(("Mul", lambda y, k=writer.constant(np.array(alpha, dtype)): [y, k]))
        if bias is not None and beta != 0.0:
            c = bias if beta == 1.0 else writer.op("Mul", bias, writer.constant(np.array(beta, dtype)))
            steps.append(("Add", lambda y, c=c: [y, c]))
        if not steps:
            writer.node("Identity", [product], [out])
        for k, (op, operands) in enumerate(steps):
            target = [out] if k == len(steps) - 1 else 1
            product = writer.node(op, operands(product), target)[0]
    del graph.node[:]
    graph.node.extend(nodes)
    return copy
