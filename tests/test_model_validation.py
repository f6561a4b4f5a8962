"""Models that pass ``onnx.checker`` but crash, hang or exhaust ONNX Runtime, the builder or numpy
are refused by ``load`` with a typed error; external data stays inside the model's folder;
names onnxgrad uses internally work as user names; opset 23/24 models are converted down.

The crash cases run in a subprocess, so that a regression fails the test instead of killing
pytest (a string output segfaults ONNX Runtime's first call, a recursive function segfaults
shape inference, a Loop with a mismatched input aborts the builder)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import helper, parser

import onnxgrad
from onnxgrad import ModelError
from onnxgrad.testing import check_grads

LOOP = """<ir_version: 8, opset_import: ["": 17]>
g (float[3] x) => (float[3] y) {{
    m = Constant <value = int64 {{{trips}}}> ()
    c = Constant <value = bool {{1}}> ()
    y = Loop(m, c, x{extra}) <body = body (int64 i, bool cin, float[3] a) => (bool cout, float[3] b) {{
        cout = Identity(cin)
        b = Mul(a, a)
    }}>
}}"""

# name: (model text, the error's text); each crashed, hung or raised an untyped error before.
REFUSED = {
    "string_output": (
        """<ir_version: 8, opset_import: ["": 17]>
        g (float[2] x) => (string[2] s, float[2] y) { s = Cast <to = 8> (x)  y = Relu(x) }""",
        r"Graph output 's' has type string.*Cast the output to a numeric type",
    ),
    "sequence_output": (
        """<ir_version: 8, opset_import: ["": 17]>
        g (float[2] x) => (seq(float) s) { s = SequenceConstruct(x) }""",
        r"Graph output 's' is a sequence, not a tensor.*ConcatFromSequence",
    ),
    "recursive_function": (
        """<ir_version: 8, opset_import: ["": 17, "local": 1]>
        g (float[2] x) => (float[2] y) { y = local.f(x) }
        <domain: "local", opset_import: ["": 17, "local": 1]>
        f (a) => (b) { b = local.f(a) }""",
        r"local\.f calls itself \(local\.f -> local\.f\).*Rewrite the recursion as a Loop",
    ),
    "mutually_recursive_functions_opset_23": (
        """<ir_version: 10, opset_import: ["": 23, "local": 1]>
        g (float[2] x) => (float[2] y) { y = local.f(x) }
        <domain: "local", opset_import: ["": 23, "local": 1]>
        f (a) => (b) { b = local.g(a) }
        <domain: "local", opset_import: ["": 23, "local": 1]>
        g (a) => (b) { b = local.f(a) }""",
        r"calls itself \(local\.f -> local\.g -> local\.f\)",
    ),
    "loop_extra_input": (LOOP.format(trips=3, extra=", x"), r"Loop node .* has 4 inputs but its body takes 3"),
    "loop_2_40_iterations": (LOOP.format(trips=2**40, extra=""), r"runs 1099511627776 iterations.*at most"),
    "endless_loop": (
        """<ir_version: 8, opset_import: ["": 17]>
        g (float[3] x) => (float[3] y) {
            c = Constant <value = bool {1}> ()
            y = Loop(none, c, x) <body = body (int64 i, bool cin, float[3] a) => (bool cout, float[3] b) {
                cout = Identity(cin)
                b = Mul(a, a)
            }>
        }""",
        r"no trip count and its body returns its condition unchanged",
    ),
    "absurd_declared_size": (
        """<ir_version: 8, opset_import: ["": 17]>
        g (float[1099511627776, 3] x) => (float[1099511627776, 3] y) { y = Relu(x) }""",
        r"tensor 'x' is declared with shape \[1099511627776, 3\].*Fix the declared shape",
    ),
    "loss_on_rank_1_scores": (
        """<ir_version: 8, opset_import: ["": 17]>
        g (float[4] x, int64[4] t) => (float l) { l = SoftmaxCrossEntropyLoss(x, t) }""",
        r"scores 'x' have rank 1; the loss takes \[N, C, ...\] scores",
    ),
    "loss_with_unknown_reduction": (
        """<ir_version: 8, opset_import: ["": 17]>
        g (float[4, 3] x, int64[4] t) => (float l) { l = NegativeLogLikelihoodLoss <reduction = "average"> (x, t) }""",
        r"reduction='average': use 'none', 'sum' or 'mean'",
    ),
    "einsum_equation_not_fitting_its_input": (
        """<ir_version: 8, opset_import: ["": 17]>
        g (float[2, 2, 3, 3] x) => (float y) { y = Einsum <equation = "NOTSET"> (x) }""",
        r"equation 'NOTSET': term 'NOTSET' does not fit input 'x' of rank 4",
    ),
    "input_type_the_op_does_not_take": (
        """<ir_version: 8, opset_import: ["": 17]>
        g (float[2, 4] x, float[4, 1, 2, 2] w) => (int32[1] y) { y = ConvInteger(x, w) }""",
        r"ConvInteger node \['y'\] input 'x' is a tensor\(float\); ConvInteger-10 takes \['tensor\(int8\)', "
        r"'tensor\(uint8\)'\] there",
    ),
    "constant_of_shape_of_2_50_elements": (
        """<ir_version: 8, opset_import: ["": 17]>
        g (float[2] x) => (float[A, B] y) {
            s = Constant <value = int64[2] {1048576, 1073741824}> ()
            y = ConstantOfShape(s)
        }""",
        r"ConstantOfShape node .* makes a tensor of constant shape \[1048576, 1073741824\]: 1125899906842624 "
        r"elements is more than onnxgrad accepts",
    ),
    "range_of_2_40_values": (
        """<ir_version: 8, opset_import: ["": 17]>
        g (float[2] x) => (float[N] y) {
            a = Constant <value = float {0.}> ()
            b = Constant <value = float {1099511627776.}> ()
            d = Constant <value = float {1.}> ()
            y = Range(a, b, d)
        }""",
        r"Range node .* makes 1099511627776 values",
    ),
    "opset_25": (
        """<ir_version: 10, opset_import: ["": 25]>
        g (float[2] x) => (float[2] y) { y = Relu(x) }""",
        r"uses opset 25; onnxgrad converts opsets up to 24",
    ),
    "opset_23_new_op": (
        """<ir_version: 10, opset_import: ["": 23]>
        g (float[2, 4] x, float[4] s) => (float[2, 4] y) { y = RMSNormalization(x, s) }""",
        r"(RMSNormalization|not valid ONNX)",
    ),
}


def _run_isolated(path: str) -> dict:
    """Loads and calls the model in a child process: a crash is reported, not inherited."""
    code = textwrap.dedent(
        f"""
        import json, numpy as np, onnxgrad
        try:
            net = onnxgrad.load({path!r})
            args = [np.ones([d if isinstance(d, int) else 2 for d in i.shape or []], i.dtype) for i in net.inputs]
            onnxgrad.ForwardValueAndGrad(net, get_all=True)(*args)
            print(json.dumps({{"kind": "ok"}}))
        except onnxgrad.OnnxGradError as err:
            print(json.dumps({{"kind": type(err).__name__, "message": str(err)}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return {"kind": f"exit {proc.returncode}", "message": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_crashing_models_are_refused(name, tmp_path):
    text, message = REFUSED[name]
    path = str(tmp_path / f"{name}.onnx")
    model = parser.parse_model(text)
    for node in model.graph.node:  # the parser has no spelling for an omitted input
        node.input[:] = ["" if n == "none" else n for n in node.input]
    onnx.save(model, path)
    result = _run_isolated(path)
    assert result["kind"] == "ModelError", result
    assert re.search(message, result["message"]), f"{result['message']!r} does not match {message!r}"



def test_loop_within_bounds_still_works():
    # The checks refuse the absurd, not Loops: a three-iteration Loop loads, and onnxgrad unrolls it
    # (onnxruntime-training has no Loop gradient): y = x ** 8.
    net = onnxgrad.load(parser.parse_model(LOOP.format(trips=3, extra="")))
    x = np.array([0.5, 1.1, -0.9], np.float32)
    value, (x_grad,) = onnxgrad.ForwardValueAndGrad(net, get_all=True)(x)
    np.testing.assert_allclose(value, x**8, rtol=1e-5)
    np.testing.assert_allclose(x_grad, 8 * x**7, rtol=1e-5)


@pytest.mark.parametrize("module, stage", [("_prepare", "graph preparation"), ("_gradient", "gradient builder"),
                                           ("_lower", "lowering and optimization")])
def test_a_stray_exception_in_a_build_stage_becomes_a_gradient_build_error(module, stage, monkeypatch, fresh_cache):
    # A bug in a stage must reach the user as an onnxgrad error naming the stage and how to report it.
    import importlib

    target = {"_prepare": "prepare", "_gradient": "build_gradient_graph", "_lower": "lower"}[module]

    owner = importlib.import_module(f"onnxgrad.{module}")
    real = getattr(owner, target)

    def broken(*args, **kwargs):
        if sys._getframe(1).f_globals["__name__"] == "onnxgrad._engine":  # the stage itself, not a helper call
            raise KeyError("some_tensor")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, target, broken)
    net = onnxgrad.load(parser.parse_model(
        """<ir_version: 8, opset_import: ["": 17]> g (float[2] x) => (float[2] y) { y = Mul(x, x) }"""))
    with pytest.raises(onnxgrad.GradientBuildError, match=rf"{stage} stage failed with KeyError \('some_tensor'\)"
                       r".*Please report it with the model file") as caught:
        onnxgrad.ForwardValueAndGrad(net, get_all=True)(np.ones(2, np.float32))
    assert isinstance(caught.value.__cause__, KeyError)


RUNTIME_TRIPS = """<ir_version: 8, opset_import: ["": 17]>
g (float[2] x, int64 n) => (float[2] y, float[N, 2] steps) {{
    c = Constant <value = bool {{1}}> ()
    m = {trips}
    y, steps = Loop(m, c, x) <body = body (int64 i, bool cin, float[2] a) => (bool cout, float[2] b, float[2] s) {{
        cout = Identity(cin)
        b = Add(a, a)
        s = Identity(b)
    }}>
}}"""


@pytest.mark.parametrize("trips", ["Identity(n)", "Add(n, n)"], ids=["graph_input", "computed"])
def test_a_trip_count_computed_at_run_time_is_capped_before_the_loop_runs(trips):
    # Before the check, a scan output grew with each of 2**40 iterations until the process was killed;
    # the child's address space is capped so that a regression fails here instead of exhausting the machine.
    code = textwrap.dedent(
        f"""
        import resource, numpy as np, onnx, onnxgrad
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        net = onnxgrad.load(onnx.parser.parse_model({RUNTIME_TRIPS.format(trips=trips)!r}))
        x = np.array([1.0, -0.5], np.float32)
        y, steps = net(x, np.array(2, np.int64))  # 2 or 4 iterations: doubling each time
        n = len(steps)
        assert n in (2, 4) and np.array_equal(y, x * 2.0**n), (y, steps)
        assert np.array_equal(steps, x * 2.0 ** np.arange(1, n + 1)[:, None])
        try:
            net(x, np.array(1 << 40, np.int64))
        except onnxgrad.InputError as err:
            print(err)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"Loop node 'y' was asked for more than 1048576 iterations by a trip count computed at run "
                     r"time; .*Pass inputs that give a smaller trip count", proc.stdout), proc.stdout


def _external_model(folder, location: str) -> str:
    """A MatMul model whose weight is read from ``location`` (relative to ``folder``)."""
    model = parser.parse_model(
        """<ir_version: 8, opset_import: ["": 17]>
        g (float[1, 4] x) => (float[1, 4] y) <float[4, 4] w> { y = MatMul(x, w) }"""
    )
    weight = onnx.numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    model.graph.initializer.append(weight)
    onnx.save(model, os.path.join(folder, "m.onnx"), save_as_external_data=True, location="w.bin",
              size_threshold=0)
    if location != "w.bin":
        saved = onnx.load(os.path.join(folder, "m.onnx"), load_external_data=False)
        for entry in saved.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = location
        onnx.save(saved, os.path.join(folder, "m.onnx"))
    return os.path.join(folder, "m.onnx")


def test_external_data_through_a_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "secret.bin"
    outside.write_bytes(np.arange(16, dtype=np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    path = _external_model(str(folder), "link.bin")
    os.symlink(outside, folder / "link.bin")
    with pytest.raises(ModelError, match=r"Tensor 'w' reads external data from 'link.bin', which resolves to .*secret"
                       r"\.bin', outside the model's folder"):
        onnxgrad.load(path)
    # A symlinked folder inside the model's folder that leads out is refused the same way.
    os.symlink(tmp_path, folder / "up")
    with open(path, "rb") as f:
        saved = onnx.load(f, load_external_data=False)
    saved.graph.initializer[0].external_data[0].value = "up/secret.bin"
    onnx.save(saved, path)
    with pytest.raises(ModelError, match=r"outside the model's folder"):
        onnxgrad.load(path)


def test_external_data_beside_the_model_still_loads(tmp_path):
    path = _external_model(str(tmp_path), "w.bin")
    net = onnxgrad.load(path)
    np.testing.assert_array_equal(net.parameters_dict()["w"].value, np.eye(4, dtype=np.float32))
    # A symlink that stays inside the folder is fine.
    os.rename(tmp_path / "w.bin", tmp_path / "real.bin")
    os.symlink(tmp_path / "real.bin", tmp_path / "w.bin")
    np.testing.assert_array_equal(onnxgrad.load(path).parameters_dict()["w"].value, np.eye(4, dtype=np.float32))


def _reserved_names_model() -> onnx.ModelProto:
    """Inputs ``x`` and ``x_grad``, a weight ``w_grad``, an intermediate ``onnxgrad/loss``, an
    output ``onnxgrad/sens_0``: every name the gradient graph would define again."""
    f = onnx.TensorProto.FLOAT
    nodes = [
        helper.make_node("Mul", ["x", "x_grad"], ["onnxgrad/loss"]),
        helper.make_node("Mul", ["onnxgrad/loss", "w_grad"], ["h"]),
        helper.make_node("Tanh", ["h"], ["onnxgrad/sens_0"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", f, [3]), helper.make_tensor_value_info("x_grad", f, [3])],
        [helper.make_tensor_value_info("onnxgrad/sens_0", f, [3])],
        [onnx.numpy_helper.from_array(np.array([0.3, -0.7, 1.2], np.float32), "w_grad")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_user_names_like_internal_ones_work():
    model = _reserved_names_model()
    before = model.SerializeToString()
    net = onnxgrad.load(model)
    assert model.SerializeToString() == before  # the user's model is not modified
    x = np.array([0.5, -1.0, 0.25], np.float32)
    xg = np.array([1.5, 0.5, -2.0], np.float32)
    w = net.trainable_params()[0].value.copy()
    out, ((gx, gxg), (gw,)) = onnxgrad.ForwardValueAndGrad(net, net.trainable_params(), get_all=True,
                                                           get_by_list=True)(x, xg)
    d = 1 - np.tanh(x * xg * w) ** 2
    np.testing.assert_allclose(out, np.tanh(x * xg * w), rtol=1e-6)
    np.testing.assert_allclose(gx, d * xg * w, rtol=1e-5)
    np.testing.assert_allclose(gxg, d * x * w, rtol=1e-5)
    np.testing.assert_allclose(gw, d * x * xg, rtol=1e-5)
    check_grads(net, (x, xg))


@pytest.mark.parametrize("opset", [23, 24])
def test_newer_opsets_are_converted_down(opset):
    model = parser.parse_model(
        f"""<ir_version: 10, opset_import: ["": {opset}]>
        g (float[2, 3] x) => (float[2, 3] y) {{ r = Tanh(x)  s = Reshape(r, shape)  y = Softmax(s) }}"""
        .replace("Reshape(r, shape)", "Identity(r)")
    )
    net = onnxgrad.load(model)
    assert [o.version for o in net.model.opset_import if o.domain == ""] == [21]
    x = np.array([[0.5, -1.0, 0.25], [1.0, 2.0, -0.5]], np.float32)
    check_grads(net, (x,))


def test_inspect_refuses_a_crashing_model_in_one_line(cli, tmp_path):
    # Before: inspect's trial build ran shape inference on the recursive function and the command segfaulted.
    path = tmp_path / "recursive.onnx"
    onnx.save(parser.parse_model(REFUSED["recursive_function"][0]), path)
    proc = cli.subprocess("inspect", path, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("onnxgrad: error: Model-local function local.f calls itself")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_inspect_survives_a_crash_of_its_analysis(tmp_path, monkeypatch):
    # Whatever native crash the checks miss ends the child process; the caller gets a RuntimeFailure.
    crasher = tmp_path / "python"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crasher.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(crasher))
    from onnxgrad import _inspect

    with pytest.raises(onnxgrad.RuntimeFailure, match=r"crashed the analysis process \(exit status -11"):
        _inspect.inspect_isolated("models/seed_net.onnx")
