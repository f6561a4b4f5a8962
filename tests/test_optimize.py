"""Gradient-graph optimizations keep every result equal to the builder's graph."""

from __future__ import annotations

import numpy as np
import onnx.parser

import onnxgrad
from onnxgrad import _engine, _gradient, _optimize, _prepare
from onnxgrad._ort import ort

# Relu after Conv then MaxPool (the builder hands ReluGrad the Relu's input) and
# after Gemm (it hands over the Relu's output).
MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2, 1, 6, 6] x) => (float[2, 3] y)
<float[2, 1, 3, 3] cw = {0.3, -0.2, 0.5, 0.1, -0.4, 0.2, 0.6, -0.1, 0.3, -0.5, 0.4, 0.1, 0.2, -0.3, 0.5, 0.3, -0.2, 0.1},
 float[3, 8] fw = {0.1, -0.3, 0.2, 0.5, -0.1, 0.4, -0.2, 0.3, 0.2, 0.1, -0.4, 0.3, 0.5, -0.2, 0.1, -0.3,
                   -0.1, 0.4, 0.3, -0.2, 0.2, 0.1, -0.5, 0.2}>
{
  c = Conv <pads = [1, 1, 1, 1]> (x, cw)
  r = Relu(c)
  p = MaxPool <kernel_shape = [3, 3], strides = [3, 3]> (r)
  f = Flatten(p)
  h = Gemm <transB = 1> (f, fw)
  y = Relu(h)
}
"""


def _graphs():
    net = onnxgrad.load(onnx.parser.parse_model(MODEL))
    spec = _engine.make_spec((0,), tuple(net.parameters_dict()))
    shapes = {"x": (2, 1, 6, 6), **{n: p.shape for n, p in net.parameters_dict().items()}}
    prepared = _prepare.prepare(net.model, ["x"], shapes, spec.inputs, spec.weights, True, None)
    raw = _gradient.build_gradient_graph(prepared.model, _prepare.LOSS, prepared.layout.xs)
    optimized = onnx.ModelProto()
    optimized.CopyFrom(raw)
    _optimize.optimize(optimized, prepared.types)
    outputs = ["y"] + [_gradient.grad_name(x) for x in prepared.layout.xs]
    feeds = {
        "x": np.random.default_rng(0).normal(size=(2, 1, 6, 6)).astype(np.float32),
        _prepare.SENS_PREFIX + "0": np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32),
        **{n: p.value for n, p in net.parameters_dict().items()},
    }
    return raw, optimized, outputs, feeds


def test_relu_grad_becomes_a_mask_product_with_equal_results():
    raw, optimized, outputs, feeds = _graphs()
    assert sum(n.op_type == "ReluGrad" for n in raw.graph.node) == 2
    assert not any(n.op_type == "ReluGrad" for n in optimized.graph.node)
    expected = ort.InferenceSession(raw.SerializeToString()).run(outputs, feeds)
    actual = ort.InferenceSession(optimized.SerializeToString()).run(outputs, feeds)
    for name, a, e in zip(outputs, actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7, err_msg=name)


def test_relu_grad_of_an_untyped_tensor_is_left_alone():
    # Without the saved tensor's dtype there is no zero to compare with: ORT's kernel stays.
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("ReluGrad", ["dy", "t"], ["dx"], domain="com.microsoft")], "g",
        [onnx.helper.make_tensor_value_info(n, 1, [2]) for n in ("dy", "t")],
        [onnx.helper.make_tensor_value_info("dx", 1, [2])],
    )
    model = onnx.helper.make_model(graph)
    _optimize.optimize(model, {})
    assert [n.op_type for n in model.graph.node] == ["ReluGrad"]
