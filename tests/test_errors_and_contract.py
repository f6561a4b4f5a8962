"""Bad input gets onnxgrad errors that say how to fix it; the user's model is
never modified; graphs and sessions are built once and weights are live."""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
import onnx.parser
import pytest

import onnxgrad
import onnxgrad.testing
from _support.treecompare import assert_trees_close
from onnxgrad import _engine, _gradient, nn

MODELS = pathlib.Path(__file__).resolve().parents[1] / "models"


def _model(text: str) -> onnx.ModelProto:
    return onnx.parser.parse_model(text)


MLP = """
<ir_version: 8, opset_import: ["" : 17]>
mlp (float[N, 3] x) => (float[N, 2] y)
<float[3, 2] w = {1.0, -1.0, 0.5, 2.0, -0.5, 0.25}, float[2] b = {0.1, -0.2}, float[2] unused_w = {1.0, 2.0}>
{
  h = MatMul(x, w)
  z = Add(h, b)
  y = Tanh(z)
}
"""


@pytest.fixture
def mlp():
    return onnxgrad.load(_model(MLP))


X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], np.float32)


def test_wrong_argument_count_names_the_inputs(mlp):
    with pytest.raises(onnxgrad.InputError, match=r"takes 1 input\(s\) \['x'\], got 2"):
        onnxgrad.ForwardValueAndGrad(mlp)(X, X)


def test_wrong_dtype_names_input_and_fix(mlp):
    with pytest.raises(onnxgrad.InputError, match=r"Input 'x' expects dtype float32, got float64.*astype"):
        onnxgrad.ForwardValueAndGrad(mlp)(X.astype(np.float64))


def test_wrong_shape_names_input_and_expected_shape(mlp):
    with pytest.raises(onnxgrad.InputError, match=r"Input 'x' expects shape \[N, 3\], got \[2, 4\]"):
        onnxgrad.ForwardValueAndGrad(mlp)(np.zeros((2, 4), np.float32))


def test_python_lists_are_converted_to_the_input_dtype(mlp):
    value, grad = onnxgrad.ForwardValueAndGrad(mlp)(X.tolist())
    assert value.dtype == np.float32 and grad.dtype == np.float32


def test_sensitivity_shape_and_dtype_are_checked(mlp):
    fvg = onnxgrad.ForwardValueAndGrad(mlp, sens_param=True)
    with pytest.raises(onnxgrad.InputError, match=r"output 'y' must have the output's shape \[2, 2\].*got shape \[2\]"):
        fvg(X, np.ones(2, np.float32))
    with pytest.raises(onnxgrad.InputError, match=r"must have dtype float32.*got float64"):
        fvg(X, np.ones((2, 2), np.float64))
    with pytest.raises(onnxgrad.InputError, match=r"pass the network inputs, then the sensitivity"):
        fvg()


def test_get_by_list_needs_weights(mlp):
    with pytest.raises(onnxgrad.InputError, match="get_by_list=True needs weights"):
        onnxgrad.ForwardValueAndGrad(mlp, get_by_list=True)


def test_unknown_weight_lists_known_ones(mlp):
    fvg = onnxgrad.ForwardValueAndGrad(mlp, ["w", "nope"], get_by_list=True)
    with pytest.raises(onnxgrad.InputError, match=r"'nope' is not a trainable parameter.*\['b', 'unused_w', 'w'\]"):
        fvg(X)


def test_grad_position_out_of_range(mlp):
    with pytest.raises(onnxgrad.InputError, match="grad_position 3 is out of range"):
        onnxgrad.value_and_grad(mlp, grad_position=3)(X)
    with pytest.raises(onnxgrad.InputError, match="can not both be None"):
        onnxgrad.value_and_grad(mlp, grad_position=None)


def test_unavailable_provider_lists_available_ones(mlp):
    with pytest.raises(onnxgrad.InputError, match=r"'CUDAExecutionProvider' is not available.*CPUExecutionProvider"):
        onnxgrad.ForwardValueAndGrad(mlp, providers=["CUDAExecutionProvider"])


def test_providers_pass_through_with_options(mlp):
    fvg = onnxgrad.ForwardValueAndGrad(mlp, providers=[("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})])
    ref = onnxgrad.ForwardValueAndGrad(mlp)(X)
    assert_trees_close(fvg(X), ref)


def test_bad_files_give_model_errors(tmp_path):
    with pytest.raises(onnxgrad.ModelError, match="No model file"):
        onnxgrad.load(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07 this is not protobuf \xff\xff")
    with pytest.raises(onnxgrad.ModelError, match="not a readable ONNX model"):
        onnxgrad.load(junk)
    with pytest.raises(onnxgrad.ModelError, match="takes a path or an onnx.ModelProto"):
        onnxgrad.load(42)


def test_invalid_graph_gives_model_error():
    model = _model(MLP)
    model.graph.node[0].input[1] = "does_not_exist"
    with pytest.raises(onnxgrad.ModelError, match="not valid ONNX"):
        onnxgrad.load(model)


def test_op_without_gradient_names_the_problem():
    model = _model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4] x) => (float[1] y) <bool[4] keep = {1, 0, 0, 0}> { y = Compress<axis = 0>(x, keep) }
    """)
    model.graph.node[0].name = "summing"
    with pytest.raises(onnxgrad.UnsupportedGradientError, match=r"no gradient for op Compress \(node 'summing'\)") as info:
        onnxgrad.ForwardValueAndGrad(model)(np.ones(4, np.float32))
    assert info.value.__cause__ is not None  # ORT's own error stays attached


def test_users_proto_and_file_are_never_modified(tmp_path):
    model = _model(MLP)
    before = model.SerializeToString()
    path = tmp_path / "mlp.onnx"
    onnx.save(model, path)
    file_before = path.read_bytes()
    for source in (model, path):
        net = nn.WithLossCell(onnxgrad.load(source), nn.SoftmaxCrossEntropyWithLogits())
        fvg = onnxgrad.ForwardValueAndGrad(net, net.trainable_params(), get_all=True, get_by_list=True)
        fvg(X, np.zeros((2, 2), np.float32))
        net.trainable_params()[0].value[...] = 7.0
    assert model.SerializeToString() == before
    assert path.read_bytes() == file_before


def test_unused_weights_get_zeros(mlp):
    fvg = onnxgrad.ForwardValueAndGrad(mlp, ["unused_w", "b"], get_by_list=True)
    _, (unused, db) = fvg(X)
    np.testing.assert_array_equal(unused, np.zeros(2, np.float32))
    assert db.shape == (2,) and np.abs(db).sum() > 0


def test_gradient_graph_is_built_once_per_signature_and_weights_are_live(mlp, monkeypatch, fresh_cache):
    builds = []
    real = _gradient.build_gradient_graph
    monkeypatch.setattr(_gradient, "build_gradient_graph", lambda *a: builds.append(1) or real(*a))
    fvg = onnxgrad.ForwardValueAndGrad(mlp, mlp.trainable_params(), get_by_list=True)
    first = fvg(X)
    w = mlp.parameters_dict()["w"]
    w.value[...] = 0.0  # an in-place update, as an optimizer does
    _, grads = fvg(X)
    assert len(builds) == 1
    # With w = 0 the pre-activation is b, so dL/db = 1 - tanh(b)^2 per row.
    b = mlp.parameters_dict()["b"].value
    np.testing.assert_allclose(grads[1], 2 * (1 - np.tanh(b) ** 2), rtol=1e-6)
    assert not np.allclose(first[1][1], grads[1])
    fvg(np.zeros((5, 3), np.float32))  # a new batch size is a new signature
    assert len(builds) == 2
    w.value = np.ones((3, 2), np.float32)  # assignment copies into the bound buffer
    fvg(X)
    assert len(builds) == 2
    with pytest.raises(onnxgrad.InputError, match=r"has shape \[3, 2\], got a value of shape \[2\]"):
        w.value = np.ones(2, np.float32)


def test_input_used_twice_by_one_node_and_shape_only_input():
    model = _model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3] x, float[2, 3] s) => (float[3] y, int64[2] shp) {
      y = Mul(x, x)
      shp = Shape(s)
    }
    """)
    x = np.array([1.0, -2.0, 3.0], np.float32)
    value, (dx, ds) = onnxgrad.ForwardValueAndGrad(model, get_all=True)(x, np.ones((2, 3), np.float32))
    np.testing.assert_allclose(dx, 2 * x)
    np.testing.assert_array_equal(ds, np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("ir_version", [10, 11])
def test_models_above_ir_10_and_opset_21_are_converted_down(ir_version):
    model = _model("""
    <ir_version: 10, opset_import: ["" : 22]>
    g (float[2, 3] x) => (float[2, 3] y) { y = Relu(x) }
    """)
    model.ir_version = ir_version
    net = onnxgrad.load(model)
    x = np.array([[1, -1, 2], [0.5, -3, 4]], np.float32)
    value, grad = onnxgrad.ForwardValueAndGrad(net)(x)
    np.testing.assert_array_equal(value, np.maximum(x, 0))
    np.testing.assert_array_equal(grad, (x > 0).astype(np.float32))
    assert model.opset_import[0].version == 22 and model.ir_version == ir_version  # the user's proto is untouched


def test_network_call_and_metadata(mlp):
    assert [i.name for i in mlp.inputs] == ["x"]
    assert mlp.inputs[0].shape == ("N", 3)
    assert [p.name for p in mlp.trainable_params()] == ["w", "b", "unused_w"]
    np.testing.assert_allclose(mlp(X), np.tanh(X @ mlp.parameters_dict()["w"].value + [0.1, -0.2]), rtol=1e-6)
    assert "Network((x: float32[N, 3]) -> (y: float32[N, 2]), 3 parameters)" == repr(mlp)


def test_second_network_and_new_process_reuse_the_built_graph(monkeypatch, fresh_cache):
    builds = []
    real = _gradient.build_gradient_graph
    monkeypatch.setattr(_gradient, "build_gradient_graph", lambda *a: builds.append(1) or real(*a))
    first, second = onnxgrad.load(_model(MLP)), onnxgrad.load(_model(MLP))
    expected = onnxgrad.ForwardValueAndGrad(first, get_all=True)(X)
    assert builds == [1]
    # Same model and flags again, in this process: nothing is built, the ORT session is shared.
    second.parameters_dict()["w"].value[...] = 0.0  # and each network keeps its own weights
    again = onnxgrad.ForwardValueAndGrad(second, get_all=True)(X)
    assert builds == [1]
    [session_first] = _engine.compiled_sessions(first).values()
    [session_second] = _engine.compiled_sessions(second).values()
    assert session_first._session is session_second._session
    np.testing.assert_array_equal(again[1][0], np.zeros_like(X))  # w = 0: no gradient reaches x
    assert_trees_close(onnxgrad.ForwardValueAndGrad(first, get_all=True)(X), expected)
    # A new process finds the graph on disk: simulate by forgetting the memory cache.
    from onnxgrad import _cache

    _cache.clear_memory()
    assert sorted(p.suffix for p in fresh_cache.iterdir() if p.name != "cache.key") == [".json", ".onnx"]
    from_disk = onnxgrad.ForwardValueAndGrad(onnxgrad.load(_model(MLP)), get_all=True)(X)
    assert builds == [1]
    assert_trees_close(from_disk, expected)


def test_corrupt_cache_entries_are_rebuilt(monkeypatch, fresh_cache):
    expected = onnxgrad.ForwardValueAndGrad(onnxgrad.load(_model(MLP)))(X)
    from onnxgrad import _cache

    _cache.clear_memory()
    for path in fresh_cache.iterdir():
        path.write_bytes(b"garbage")
    assert_trees_close(onnxgrad.ForwardValueAndGrad(onnxgrad.load(_model(MLP)))(X), expected)


def test_a_tensor_returned_twice_counts_twice():
    model = _model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x, float[2] y) => (float[2] z, float[2] z) { z = Mul(x, y) }
    """)
    x, y = np.ones(2, np.float32), np.full(2, 3.0, np.float32)
    (z1, z2), (dx, dy) = onnxgrad.ForwardValueAndGrad(model, get_all=True)(x, y)
    np.testing.assert_array_equal(z1, x * y)
    np.testing.assert_array_equal(z2, x * y)
    np.testing.assert_array_equal(dx, 2 * y)
    np.testing.assert_array_equal(dy, 2 * x)


def test_zero_dimensional_inputs_stay_zero_dimensional():
    model = _model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float a) => (float y) { y = Mul(a, a) }
    """)
    value, grad = onnxgrad.ForwardValueAndGrad(model)(np.array(0.5, np.float32))
    assert value.shape == () and grad.shape == ()
    assert float(grad) == 1.0


def test_outputs_of_different_float_dtypes_add_up():
    model = _model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (double[2] y, float[2] z) { y = Cast<to=11>(x)
      z = Mul(x, x) }
    """)
    x = np.array([1.0, 2.0], np.float32)
    (y, z), dx = onnxgrad.ForwardValueAndGrad(model)(x)
    assert y.dtype == np.float64 and z.dtype == np.float32
    np.testing.assert_array_equal(dx, 1 + 2 * x)


def test_gradients_without_a_double_training_kernel_run_in_float64_once_lowered():
    # ORT has no double SoftmaxGrad_13 kernel; the lowered graph uses standard ops that have one.
    softmax64 = _model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (double[2] x) => (double[2] y) { y = Softmax<axis = -1>(x) }
    """)
    onnxgrad.testing.check_grads(onnxgrad.load(softmax64), [np.array([1.0, -2.0])])


def test_crashing_kernels_are_refused_with_a_hint():
    pool16 = _model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float16[1, 1, 4, 4] x) => (float16[1, 1, 2, 2] y) { y = MaxPool<kernel_shape=[2, 2], strides=[2, 2]>(x) }
    """)
    with pytest.raises(onnxgrad.UnsupportedGradientError, match="MaxPool gradient crashes ONNX Runtime for float16"):
        onnxgrad.ForwardValueAndGrad(pool16)(np.ones((1, 1, 4, 4), np.float16))


def test_softplus_rewrite_has_the_true_gradient_at_zero():
    model = _model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3] x) => (float[3] y) { y = Softplus(x) }
    """)
    x = np.array([0.0, -30.0, 30.0], np.float32)
    value, grad = onnxgrad.ForwardValueAndGrad(model)(x)
    np.testing.assert_allclose(value, np.log1p(np.exp(x.astype(np.float64))), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad, 1 / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6, atol=1e-12)


def test_relu_differentiates_in_float64_too():
    # ORT has no double ReluGrad kernel; its lowering (see _lower) has one.
    model = _model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (double[3] x) => (double[3] y) { y = Relu(x) }
    """)
    value, grad = onnxgrad.ForwardValueAndGrad(model)(np.array([1.5, -2.0, 0.0]))
    np.testing.assert_array_equal(value, [1.5, 0.0, 0.0])
    np.testing.assert_array_equal(grad, [1.0, 0.0, 0.0])


def test_session_config_passes_through_to_onnx_runtime(mlp):
    config = {"session.intra_op.allow_spinning": "0"}
    plain = onnxgrad.ForwardValueAndGrad(mlp, get_all=True)
    quiet = onnxgrad.ForwardValueAndGrad(mlp, get_all=True, session_config=config)
    assert_trees_close(quiet(X), plain(X))
    by_config = {options.session_config: s._session for (_, options, _), s in _engine.compiled_sessions(mlp).items()}
    assert len(by_config) == 2 and by_config[()] is not by_config[tuple(config.items())]
    options = by_config[tuple(config.items())].get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def _if_model(then_reads_outer: bool) -> onnx.ModelProto:
    h = onnx.helper
    f = onnx.TensorProto.FLOAT
    if then_reads_outer:
        then_nodes = [h.make_node("Mul", ["x", "w"], ["t"])]
    else:
        then_nodes = [h.make_node("Constant", [], ["t"], value=h.make_tensor("c", f, [3], [1.0, 2.0, 3.0]))]
    then_branch = h.make_graph(then_nodes, "then", [], [h.make_tensor_value_info("t", f, [3])])
    else_branch = h.make_graph(
        [h.make_node("Constant", [], ["e"], value=h.make_tensor("k", f, [3], [0.5, 0.5, 0.5]))], "else", [],
        [h.make_tensor_value_info("e", f, [3])],
    )
    nodes = [
        h.make_node("If", ["cond"], ["branch"], name="choose", then_branch=then_branch, else_branch=else_branch),
        h.make_node("Mul", ["branch", "x"], ["y"]),
    ]
    graph = h.make_graph(
        nodes, "if_net",
        [h.make_tensor_value_info("x", f, [3]), h.make_tensor_value_info("cond", onnx.TensorProto.BOOL, [])],
        [h.make_tensor_value_info("y", f, [3])],
        initializer=[onnx.numpy_helper.from_array(np.array([1.0, -2.0, 0.5], np.float32), "w")],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


def test_if_body_reading_a_differentiated_tensor_from_the_outer_scope_is_differentiated():
    # The builder alone gives what the branch reads (x, w) zeros; onnxgrad inlines the branches
    # (tests/test_ops_fd.py has the cases without the rewrite).
    net = onnxgrad.load(_if_model(then_reads_outer=True))
    x = np.array([1.0, 2.0, 3.0], np.float32)
    for cond in (True, False):
        onnxgrad.testing.check_grads(net, [x, np.array(cond)])


def test_if_whose_branches_differ_in_shape_reading_the_outer_scope_is_refused():
    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
    g (float[3] x, bool cond) => (float[3] y) <float[3] w = {1.0, -2.0, 0.5}> {
      branch = If (cond) <then_branch = g1 () => (float[3] t) { t = Mul(x, w) },
                          else_branch = g2 () => (float[1] e) { e = Constant <value = float[1] {0.5}> () }>
      y = Mul(branch, x)
    }""")
    model.graph.node[0].name = "choose"
    net = onnxgrad.load(model)
    fvg = onnxgrad.ForwardValueAndGrad(net, net.trainable_params(), get_all=True, get_by_list=True)
    with pytest.raises(onnxgrad.UnsupportedGradientError, match=r"If node 'choose' reads \['w', 'x'\].*outer scope.*"
                       r"but not this node: its output 'branch' has no static shape"):
        fvg(np.array([1.0, 2.0, 3.0], np.float32), np.array(True))


def test_if_body_of_constants_is_differentiated():
    net = onnxgrad.load(_if_model(then_reads_outer=False))
    x = np.array([1.0, 2.0, 3.0], np.float32)
    for cond in (True, False):
        onnxgrad.testing.check_grads(net, [x, np.array(cond)])


def test_a_parameter_of_another_network_with_the_same_name_is_refused():
    path = pathlib.Path(__file__).resolve().parent.parent / "models" / "digits_mlp.onnx"
    mine, other = onnxgrad.load(str(path)), onnxgrad.load(str(path))
    x = np.ones((2, 64), np.float32)
    with pytest.raises(onnxgrad.InputError, match=r"Parameter 'fc1.weight' belongs to another network"):
        onnxgrad.ForwardValueAndGrad(mine, other.trainable_params(), get_by_list=True)(x)
    by_name = onnxgrad.ForwardValueAndGrad(mine, [p.name for p in other.trainable_params()], get_by_list=True)(x)
    own = onnxgrad.ForwardValueAndGrad(mine, mine.trainable_params(), get_by_list=True)(x)
    for a, b in zip(by_name[1], own[1]):
        np.testing.assert_array_equal(a, b)  # names are this network's own


@pytest.mark.parametrize(
    ("loss", "labels", "message"),
    [
        (nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), [0, 1, 2], r"share the size 'N', but got 4 and 3"),
        (nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), [0, 1, 2, -1], r"Label -1 is not a class"),
        (nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), [0, 1, 2, 10], r"Label 10 is not a class"),
        (nn.CrossEntropyLoss(), [0, -1, 2, 9], r"Label -1 is not a class.*or -100 \(ignore_index\)"),
        (nn.NLLLoss(ignore_index=3), [0, 11, 3, 9], r"Label 11 is not a class"),
    ],
)
def test_class_labels_are_checked_on_every_call(loss, labels, message):
    path = pathlib.Path(__file__).resolve().parent.parent / "models" / "digits_mlp.onnx"
    cell = nn.WithLossCell(onnxgrad.load(str(path)), loss)
    fvg = onnxgrad.ForwardValueAndGrad(cell, cell.trainable_params(), get_by_list=True)
    x = np.ones((4, 64), np.float32)
    fvg(x, np.array([0, 1, 3, 9], np.int32))  # a good call first: the fast path must check too
    with pytest.raises(onnxgrad.InputError, match=message):
        fvg(x, np.array(labels, np.int32))


def test_ignore_index_is_a_valid_label():
    path = pathlib.Path(__file__).resolve().parent.parent / "models" / "digits_mlp.onnx"
    cell = nn.WithLossCell(onnxgrad.load(str(path)), nn.CrossEntropyLoss(ignore_index=-100))
    loss, _ = onnxgrad.ForwardValueAndGrad(cell, cell.trainable_params(), get_by_list=True)(
        np.ones((4, 64), np.float32), np.array([0, -100, 2, 9], np.int32)
    )
    assert np.isfinite(loss)


def _entry_paths(folder):
    [meta] = folder.glob("*.json")
    return meta.with_suffix(".onnx"), meta


def test_a_tampered_cache_entry_is_rebuilt_with_a_warning(fresh_cache, caplog):
    from onnxgrad import _cache

    model = _model(MLP)
    expected = onnxgrad.ForwardValueAndGrad(onnxgrad.load(model), get_all=True)(X)
    model_path, _ = _entry_paths(fresh_cache)
    # A valid graph whose gradient outputs are doubled, planted without the folder's secret.
    planted = onnx.load(str(model_path))
    graph = planted.graph
    for output in graph.output:
        if output.name.endswith("_grad"):
            doubled = output.name + "_x2"
            graph.node.append(onnx.helper.make_node("Add", [output.name, output.name], [doubled]))
            output.name = doubled
    model_path.write_bytes(planted.SerializeToString())
    _cache.clear_memory()
    with caplog.at_level("WARNING", logger="onnxgrad._cache"):
        again = onnxgrad.ForwardValueAndGrad(onnxgrad.load(model), get_all=True)(X)
    assert_trees_close(again, expected)
    assert any("failed its check" in r.message for r in caplog.records)
    _cache.clear_memory()  # the rebuilt entry verifies
    with caplog.at_level("WARNING", logger="onnxgrad._cache"):
        caplog.clear()
        assert_trees_close(onnxgrad.ForwardValueAndGrad(onnxgrad.load(model), get_all=True)(X), expected)
    assert not caplog.records


def test_the_disk_cache_is_bounded_least_recently_used_first(fresh_cache, monkeypatch):
    from onnxgrad import _cache

    monkeypatch.setenv("ONNXGRAD_CACHE_MAX_MB", "0.000001")  # room for nothing but the newest entry
    for n in (1, 2, 3):
        onnxgrad.ForwardValueAndGrad(onnxgrad.load(_model(MLP)), get_all=True)(np.ones((n, 3), np.float32))
    assert len(list(fresh_cache.glob("*.json"))) <= 1
    assert len(_cache._memory) <= _cache.MEMORY_ENTRIES


@pytest.mark.parametrize("bad", ["text", {"a": 1}, [[1.0, 2.0, 3.0], [1.0]]])
def test_arguments_numpy_cannot_convert_are_input_errors(mlp, bad):
    with pytest.raises(onnxgrad.InputError, match=r"Input 'x' expects an array of float32, got a"):
        onnxgrad.ForwardValueAndGrad(mlp, get_all=True)(bad)


def test_an_empty_batch_is_a_clear_error(mlp):
    with pytest.raises(onnxgrad.UnsupportedGradientError, match=r"Input 'x' has shape \[0, 3\], with no elements"):
        onnxgrad.ForwardValueAndGrad(mlp, get_all=True)(np.zeros((0, 3), np.float32))


def test_compiled_signatures_are_bounded(mlp, monkeypatch):
    monkeypatch.setattr(_engine, "MAX_SIGNATURES", 3)
    fvg = onnxgrad.ForwardValueAndGrad(mlp, get_all=True)
    results = {n: fvg(np.full((n, 3), 0.5, np.float32)) for n in range(1, 7)}
    assert len(_engine.compiled_sessions(mlp)) == 3 and len(mlp._engine_state.fast) <= 3
    for n, result in results.items():  # evicted signatures compile again, with the same results
        assert_trees_close(fvg(np.full((n, 3), 0.5, np.float32)), result)
