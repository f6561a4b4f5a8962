"""Outputs whose shape depends on input values, not only input shapes (a Loop's scan output over a
trip count given or computed at run time, a Slice to a computed end): every call of one compiled
signature returns what a fresh ONNX Runtime session returns for it, as the sizes grow, shrink to 0
and grow again (issue 11: a later call failed with "OrtValue shape verification failed")."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

import onnxgrad
from onnxgrad import _device, _engine, _lower
from onnxgrad.testing import check_grads

# head: the first n entries of y (0 to 3 of them); steps: 0, 1, ..., trips - 1 with trips = n or 2n.
MODEL = """<ir_version: 8, opset_import: ["": 17]>
g (float[3] x, int64 n) => (float[3] y, float[M] head, float[N] steps) <float[3] w = {{0.5, -2.0, 3.0}}> {{
    y = Mul(x, w)
    zero = Constant <value = int64[1] {{0}}> ()
    one = Constant <value = int64[1] {{1}}> ()
    end = Reshape(n, one)
    head = Slice(y, zero, end)
    c = Constant <value = bool {{1}}> ()
    trips = {trips}
    steps = Loop(trips, c) <body = body (int64 i, bool cin) => (bool cout, float s) {{
        cout = Identity(cin)
        s = Cast <to = 1> (i)
    }}>
}}"""
TRIPS = {"graph_input": "Identity(n)", "computed": "Add(n, n)"}
SIZES = [4, 0, 2, 0, 1, 5]  # grows, shrinks to 0, grows again
X = np.array([1.0, -0.5, 2.0], np.float32)


def _fresh_run(model: onnx.ModelProto, outputs: list[str], feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(outputs, feeds)


@pytest.fixture(params=[False, True], ids=["host", "device-path"])
def resident(request, monkeypatch):
    monkeypatch.setattr(_device, "RESIDENT_ON_CPU", request.param)
    return request.param


@pytest.mark.parametrize("trips", list(TRIPS.values()), ids=list(TRIPS))
def test_forward_outputs_of_data_dependent_shape_match_a_fresh_session_on_every_call(trips, resident):
    model = onnx.parser.parse_model(MODEL.format(trips=trips))
    net = onnxgrad.load(model)
    for size in SIZES:
        n = np.array(size, np.int64)
        got = net(X, n)
        want = _fresh_run(model, ["y", "head", "steps"], {"x": X, "n": n})
        assert len(want[2]) == size * (2 if trips.startswith("Add") else 1)
        for name, g, w in zip(["y", "head", "steps"], got, want, strict=True):
            assert g.shape == w.shape and g.dtype == w.dtype, (size, name, g.shape, w.shape)
            np.testing.assert_array_equal(g, w, err_msg=f"{name} with n={size}")


@pytest.mark.parametrize("trips", list(TRIPS.values()), ids=list(TRIPS))
def test_gradients_beside_outputs_of_data_dependent_shape_on_every_call(trips, resident):
    net = onnxgrad.load(onnx.parser.parse_model(MODEL.format(trips=trips)))
    fvg = onnxgrad.ForwardValueAndGrad(net, net.trainable_params(), get_all=True, get_by_list=True, sens_param=True)
    spec = _engine.GradSpec(inputs=(0, 1), weights=("w",), sens=True)
    built = _engine.gradient_model(net, spec, [X.shape, ()])
    rng = np.random.default_rng(0)
    for size in SIZES:
        n = np.array(size, np.int64)
        values = net(X, n)
        sens = tuple(rng.standard_normal(v.shape).astype(np.float32) for v in values)
        got_values, (input_grads, weight_grads) = fvg(X, n, sens)
        feeds = {"x": X, "n": n, "w": net.parameters_dict()["w"].value}
        feeds.update({built.layout.sens_inputs[k]: s for k, s in enumerate(sens)})
        want = _fresh_run(built.model, built.outputs, feeds)
        got = [*got_values, input_grads[0], weight_grads[0]]  # n is an int input: no gradient in the graph
        for name, g, w in zip(built.outputs, got, want, strict=True):
            assert g.shape == w.shape and g.dtype == w.dtype, (size, name, g.shape, w.shape)
            np.testing.assert_array_equal(g, w, err_msg=f"{name} with n={size}")
        if not resident:  # check_grads perturbs a weight's buffer held across calls: seen by host sessions only
            check_grads(net, [X, n], sens=sens)  # every gradient against finite differences, at this call's sizes


def test_outputs_of_data_dependent_shape_from_many_threads_match_serial_calls():
    net = onnxgrad.load(onnx.parser.parse_model(MODEL.format(trips=TRIPS["computed"])))
    sizes = [int(s) for s in np.random.default_rng(0).integers(0, 6, 200)]
    expected = [net(X, np.array(s, np.int64)) for s in sizes]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda s: net(X, np.array(s, np.int64)), sizes))
    for size, g, e in zip(sizes, got, expected, strict=True):
        for a, b in zip(g, e, strict=True):
            assert a.shape == b.shape, (size, a.shape, b.shape)
            np.testing.assert_array_equal(a, b, err_msg=f"n={size}")


REDUCE = """<ir_version: 8, opset_import: ["": 17]>
g (float[A, B] x, int64[K] axes) => (float[P, Q] kept, float[R] dropped) {
    kept = ReduceSum <noop_with_empty_axes = 1, keepdims = 1> (x, axes)
    dropped = ReduceSum <noop_with_empty_axes = 1, keepdims = 0> (x, axes)
}"""


@pytest.mark.parametrize("shape", [(0, 3), (2, 0), (2, 3)], ids=str)
@pytest.mark.parametrize("axes", [[], [0], [1], [-1], [-2], [0, 1]], ids=str)
def test_a_sum_over_run_time_axes_is_right_on_empty_tensors(shape, axes):
    # ONNX Runtime's ReduceSum gave a tensor of ones' shape for empty axes on an empty input (the gradient
    # of a slice that came out empty had shape [1]) and left negative axes unreduced; lowering rewrites it.
    model = onnx.parser.parse_model(REDUCE)
    lowered = onnx.ModelProto()
    lowered.CopyFrom(model)
    _lower.lower(lowered, {})
    assert any(n.op_type == "Unsqueeze" for n in lowered.graph.node)
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    feeds = {"x": x, "axes": np.array(axes, np.int64)}
    want = ReferenceEvaluator(model).run(None, feeds)
    for name, got, expected in zip(["kept", "dropped"], _fresh_run(lowered, ["kept", "dropped"], feeds), want):
        assert got.shape == expected.shape, (name, got.shape, expected.shape)
        np.testing.assert_array_equal(got, expected, err_msg=name)


@pytest.mark.parametrize("trips", list(TRIPS.values()), ids=list(TRIPS))
def test_results_kept_as_ortvalues_are_not_overwritten_by_later_calls(trips, resident):
    # onnxruntime 1.19's IOBinding.get_outputs gave views of the binding's slots: on a device, the
    # OrtValues of one call turned into the next call's results when the outputs were bound again.
    net = onnxgrad.load(onnx.parser.parse_model(MODEL.format(trips=trips)))
    fvg = onnxgrad.ForwardValueAndGrad(net, net.trainable_params(), get_all=True, get_by_list=True)
    calls = [(X, 3), (X * 10, 1), (X - 1, 0), (X * 2, 4)]
    kept, expected = [], []
    for x, size in calls:
        n = np.array(size, np.int64)
        values, (input_grads, weight_grads) = fvg(_device.wrap(x.copy()), _device.wrap(n.copy()))
        results = [*values, *input_grads, *weight_grads]
        assert all(_device.is_ortvalue(r) for r in results)
        kept.append(results)
        want_values, (want_inputs, want_weights) = fvg(x, n)  # numpy in, numpy out: the reference
        expected.append([*want_values, *want_inputs, *want_weights])
    for (_, size), results, want in zip(calls, kept, expected, strict=True):
        for k, (got, w) in enumerate(zip(results, want, strict=True)):
            np.testing.assert_array_equal(_device.to_host(got), w, err_msg=f"result {k} of the call with n={size}")
