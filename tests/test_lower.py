"""The lowering pass: built gradient graphs hold standard ONNX ops only and
compute what the training kernels they replace compute.

Every op-suite case is built twice, with the builder's kernels left in and
lowered; the lowered graph runs on ORT and on onnx's reference evaluator, and
where onnxruntime-training is installed (marker ``training_kernels``) both
graphs run on it and must agree. (Gradients themselves are checked
against finite differences in test_ops_fd.py; conftest.py checks every graph
any test builds for non-standard nodes.)
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxgrad
import onnxgrad.testing
from _support.op_cases import CASES, network_and_args
from _support.reference_ops import reference as _reference
from onnxgrad import _engine, _gradient, _lower, _prepare
from onnxgrad._ort import ort
from onnxgrad.errors import UnsupportedGradientError

# Cases whose builder graph has no kernel to compare with on this CPU build (or a wrong one).
_NO_KERNEL = {
    "averagepool_3d": "ORT's AveragePoolGrad is wrong in 3-D (finite differences agree with the lowering)",
    "averagepool_dilations": "ORT's AveragePoolGrad ignores dilations",
}


def _graphs(case):
    _, network, args = network_and_args(case)
    weights = tuple(network.parameters_dict())
    floats = tuple(k for k, info in enumerate(network.inputs) if info.is_float)
    shapes = {info.name: a.shape for info, a in zip(network.inputs, args)}
    shapes.update({n: p.shape for n, p in network.parameters_dict().items()})
    spec = _engine.GradSpec(inputs=floats, weights=weights, sens=True)
    prepared = _prepare.prepare(network.model, input_names=[i.name for i in network.inputs], shapes=shapes, spec=spec)
    if not prepared.layout.xs:
        pytest.skip("nothing to differentiate")  # shape-only cases
    raw = _gradient.build_gradient_graph(prepared.model, _prepare.LOSS, prepared.layout.xs)
    lowered = onnx.ModelProto()
    lowered.CopyFrom(raw)
    _lower.lower(lowered, prepared.types)
    rng = np.random.default_rng(0)
    feeds = {info.name: a for info, a in zip(network.inputs, args)}
    feeds.update({n: p.value for n, p in network.parameters_dict().items()})
    for k, name in prepared.layout.sens_inputs.items():
        elem, shape = prepared.layout.output_types[k]
        feeds[name] = rng.standard_normal(shape).astype(onnx.helper.tensor_dtype_to_np_dtype(elem))
    outputs = [o.name for o in network.outputs] + [_gradient.grad_name(x) for x in prepared.layout.xs]
    return raw, lowered, outputs, feeds


# ORT stashes LayerNormalization's mean and 1/std in float32 even for double inputs.
_FLOAT32_STASH = {"layernorm", "layernorm_no_bias"}


def _assert_close(actual, expected, outputs, what, tight=True):
    for name, a, e in zip(outputs, actual, expected, strict=True):
        double = np.asarray(e).dtype == np.float64 and tight
        np.testing.assert_allclose(a, e, rtol=1e-7 if double else 2e-5, atol=1e-9 if double else 2e-6,
                                   err_msg=f"{name} ({what})")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_lowered_graph_is_standard_and_runs_on_the_reference_evaluator(case):
    _, lowered, outputs, feeds = _graphs(case)
    assert _lower.nonstandard_nodes(lowered) == []
    onnx.checker.check_model(lowered, full_check=True)
    actual = ort.InferenceSession(lowered.SerializeToString()).run(outputs, feeds)
    reference = _reference(lowered).run(outputs, feeds)
    _assert_close(reference, actual, outputs, "reference evaluator vs ORT", tight=case.name not in _FLOAT32_STASH)


@pytest.mark.training_kernels
@pytest.mark.parametrize("case", [c for c in CASES if c.name not in _NO_KERNEL], ids=lambda case: case.name)
def test_lowered_graph_matches_the_training_kernels(case):
    raw, lowered, outputs, feeds = _graphs(case)
    actual = ort.InferenceSession(lowered.SerializeToString()).run(outputs, feeds)
    try:
        kernels = ort.InferenceSession(raw.SerializeToString())
    except Exception as err:  # no double kernel for ReluGrad and the like: finite differences decide
        assert "NOT_IMPLEMENTED" in str(err)
        return
    _assert_close(actual, kernels.run(outputs, feeds), outputs, "lowered vs training kernels",
                  tight=case.name not in _FLOAT32_STASH)


def test_cases_cover_every_lowering_the_builder_emitted():
    # Each lowering must be exercised by some case above; a new lowering needs a case.
    seen = set()
    for case in CASES:
        try:
            raw, _, _, _ = _graphs(case)
        except pytest.skip.Exception:
            continue
        seen.update((n.domain, n.op_type) for n in _lower.nonstandard_nodes(raw))
    untested = set(_lower._LOWERINGS) - seen - _NOT_EMITTED_BY_THE_OP_SUITE
    assert not untested, f"lowerings no op-suite case reaches: {sorted(untested)}"


# Kernels the builder emits only for fused or training-mode ops the op suite has no case for.
_NOT_EMITTED_BY_THE_OP_SUITE = {
    # contrib forward ops: test_contrib_activations below
    ("com.microsoft", "Gelu"), ("com.microsoft", "BiasGelu"), ("com.microsoft", "FastGelu"), ("com.microsoft", "GeluGrad"), ("com.microsoft", "BiasGeluGrad_dX"), ("com.microsoft", "FastGeluGrad"),
    ("com.microsoft", "BiasFastGeluGrad_dX"),
    # opset < 13 Softmax/LogSoftmax and training-mode Dropout: load() converts to opset >= 16, and
    # training-mode Dropout is refused by the front-ends; kept for graphs built by other callers.
    ("com.microsoft", "SoftmaxGrad"), ("com.microsoft", "LogSoftmaxGrad"), ("com.microsoft", "DropoutGrad"),
}


_CONTRIB = {
    "Gelu": ("Gelu", ["x"]),
    "FastGelu": ("FastGelu", ["x"]),
    "BiasGelu": ("BiasGelu", ["x", "b"]),
    "FastGelu_bias": ("FastGelu", ["x", "b"]),
}


@pytest.mark.parametrize("name", sorted(_CONTRIB))
def test_contrib_activations_lower_and_match_finite_differences(name):
    op, inputs = _CONTRIB[name]
    rng = np.random.default_rng(3)
    inits = [onnx.numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")] if "b" in inputs else []
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node(op, inputs, ["y"], domain="com.microsoft")], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3, 4])], inits,
    )
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("com.microsoft", 1)]
    )
    network = onnxgrad.load(model)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    onnxgrad.testing.check_grads(network, [x])
    spec = _engine.GradSpec(inputs=(0,), weights=tuple(network.parameters_dict()))
    built = _engine.gradient_model(network, spec, [x.shape])
    assert _lower.nonstandard_nodes(built.model) == []


def test_a_kernel_without_lowering_is_refused_naming_it():
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("InPlaceAccumulator", ["a", "b"], ["c"], name="acc", domain="com.microsoft")], "g",
        [onnx.helper.make_tensor_value_info(n, 1, [2]) for n in ("a", "b")],
        [onnx.helper.make_tensor_value_info("c", 1, [2])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedGradientError, match="InPlaceAccumulator.*'acc'"):
        _lower.lower(model, {})


def test_relu_grad_becomes_a_mask_product():
    case = next(c for c in CASES if c.name == "relu")
    raw, lowered, _, _ = _graphs(case)
    assert any(n.op_type == "ReluGrad" for n in raw.graph.node)
    assert {"Greater", "Cast", "Mul"} <= {n.op_type for n in lowered.graph.node}


@pytest.mark.parametrize(("name", "taps"), [("averagepool_wider_than_input", [3, 3]),
                                            ("averagepool_into_end_padding", [5, 5])])
def test_average_pool_gradient_spreads_only_taps_that_reach_the_input(name, taps):
    # A kernel of 1280 over a 2x2 input (EfficientNet's pooler) spread as a 1280x1280 ConvTranspose
    # dominated the whole backward; a window's taps past the input's end (begin padding included) are dropped.
    case = next(c for c in CASES if c.name == name)
    _, lowered, _, _ = _graphs(case)
    kernels = [list(a.ints) for n in lowered.graph.node if n.op_type == "ConvTranspose"
               for a in n.attribute if a.name == "kernel_shape"]
    assert kernels == [taps]


_GROUP_1_CONVS = [c.name for c in CASES if c.name.startswith("conv") and "group" not in c.name
                  and "depthwise" not in c.name and not c.name.startswith("convtranspose")]


@pytest.mark.parametrize("name", _GROUP_1_CONVS)
def test_both_conv_weight_gradients_agree(name, monkeypatch):
    # Small unfolded inputs take one Gemm (what test_ops_fd checks); larger ones a correlating Conv.
    case = next(c for c in CASES if c.name == name)
    _, unfolded, outputs, feeds = _graphs(case)
    monkeypatch.setattr(_lower.convolution, "_MAX_UNFOLDED_ELEMENTS", 0)
    _, correlated, _, _ = _graphs(case)
    assert "Gemm" in {n.op_type for n in unfolded.graph.node} - {n.op_type for n in correlated.graph.node}
    expected = ort.InferenceSession(unfolded.SerializeToString()).run(outputs, feeds)
    _assert_close(ort.InferenceSession(correlated.SerializeToString()).run(outputs, feeds), expected, outputs,
                  "correlating Conv vs unfolded Gemm")


def test_api_graphs_run_on_the_reference_evaluator():
    # The graph behind ForwardValueAndGrad, not just the lowering: same values on both runtimes.
    case = next(c for c in CASES if c.name == "conv_groups")
    _, network, args = network_and_args(case)
    grad_fn = onnxgrad.ForwardValueAndGrad(network, weights=network.trainable_params(), get_all=True, get_by_list=True)
    value, (input_grads, weight_grads) = grad_fn(*args)
    spec = _engine.GradSpec(inputs=(0,), weights=tuple(network.parameters_dict()))
    built = _engine.gradient_model(network, spec, [a.shape for a in args])
    feeds = {network.inputs[0].name: args[0], **{n: p.value for n, p in network.parameters_dict().items()}}
    reference = _reference(built.model).run(built.outputs, feeds)
    for got, want in zip(reference, [value, *input_grads, *weight_grads], strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def _gemm_model(trans_a: int, trans_b: int, alpha: float, beta: float, bias: list[int] | None) -> onnx.ModelProto:
    h = onnx.helper
    a_shape = [4, 3] if trans_a else [3, 4]
    b_shape = [5, 4] if trans_b else [4, 5]
    inputs = [h.make_tensor_value_info("a", onnx.TensorProto.FLOAT, a_shape),
              h.make_tensor_value_info("b", onnx.TensorProto.FLOAT, b_shape)]
    names = ["a", "b"]
    if bias is not None:
        inputs.append(h.make_tensor_value_info("c", onnx.TensorProto.FLOAT, bias))
        names.append("c")
    node = h.make_node("Gemm", names, ["y"], transA=trans_a, transB=trans_b, alpha=alpha, beta=beta)
    graph = h.make_graph([node], "gemm", inputs, [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3, 5])])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize(("alpha", "beta", "bias"), [(1.0, 1.0, None), (1.0, 1.0, [5]), (0.5, 2.0, [3, 5]),
                                                      (2.0, 0.0, [1, 5]), (1.0, -1.5, [3, 1])])
def test_cann_route_replaces_gemm_by_matmul_with_equal_results(trans_a, trans_b, alpha, beta, bias):
    model = _gemm_model(trans_a, trans_b, alpha, beta, bias)
    original = model.SerializeToString()
    routed = _lower.for_provider(model, "cann")
    assert model.SerializeToString() == original, "the input model was modified"
    assert "Gemm" not in {n.op_type for n in routed.graph.node}
    onnx.checker.check_model(routed, full_check=True)
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.normal(size=[d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in model.graph.input}
    want = ort.InferenceSession(original, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = ort.InferenceSession(routed.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_other_providers_keep_the_graph():
    model = _gemm_model(0, 1, 1.0, 1.0, [5])
    for kind in ("cpu", "cuda"):
        assert _lower.for_provider(model, kind) is model


def test_a_training_kernel_left_inside_a_subgraph_is_an_onnxgrad_error_naming_it():
    # The lowering passes walk the main graph; a kernel left in a branch must still be reported, not crash.
    from onnx import TensorProto, helper

    from onnxgrad.errors import GradientBuildError

    branch = helper.make_graph([helper.make_node("ReluGrad", ["x", "x"], ["z"], domain="com.microsoft")], "b", [],
                               [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)], "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []), helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    with pytest.raises(GradientBuildError, match="com.microsoft::ReluGrad"):
        _lower.lower(model, {})
