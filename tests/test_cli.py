"""The ``onnxgrad`` command: ``inspect`` and ``grad`` (``train`` is in test_train.py).

Commands run in-process through the ``cli`` fixture (``onnxgrad.cli.main``, stdout/stderr captured);
the entry points (``python -m onnxgrad``) and the "runs with nothing from
onnxgrad" claim run in subprocesses.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import parser

import onnxgrad
from onnxgrad import nn

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIGITS = str(ROOT / "models" / "digits_mlp.onnx")
WEIGHTS = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]

# x -> Compress (no gradient) blocks x and w; a second Compress blocks z; int ids enter float math through a Cast;
# `flags` never does; `unused` reaches no output; Shape/Reshape carry no gradient.
BLOCKED = """
<ir_version: 8, opset_import: ["" : 17]>
blocked (float[N,3] x, int64[N,3] ids, float[N,3] z, int64[N] flags) => (float[N,3] y, float[N,3] y2, int64[N] f)
<float[3] w = {1.0, 2.0, 3.0}, float[3] v = {1.0, 2.0, 3.0}, float[3] u = {1.0, 1.0, 1.0},
 float[3] unused = {0.0, 0.0, 0.0}, bool[3] keep = {1, 0, 0}>
{
  a = Mul(x, w)
  r = Compress<axis = 1>(a, keep)
  b = Add(r, v)
  c = Cast<to = 1>(ids)
  d = Mul(c, b)
  e = Compress<axis = 1>(z, keep)
  s = Shape(e)
  e2 = Reshape(e, s)
  y = Add(d, e2)
  y2 = Mul(x, u)
  f = Identity(flags)
}
"""


@pytest.fixture(scope="module")
def blocked_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("blocked") / "blocked.onnx"
    onnx.save(parser.parse_model(BLOCKED), path)
    return str(path)


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line error, got {err!r}"
    assert lines[0].startswith("onnxgrad: error: "), lines[0]
    return lines[0]


# --------------------------------------------------------------------------------------------------------------
# inspect


def test_inspect_text(cli):
    code, out, err = cli("inspect", DIGITS)
    assert code == 0, err
    assert "IR version 8; opsets: ai.onnx 17; producer: onnxgrad; graph: digits_mlp" in out
    assert "x  float32  [N, 64]" in out and "logits  float32  [N, 10]" in out
    assert "Parameters (4 trainable)" in out
    assert "fc1.weight  [64, 64]  float32  4,096     16.0 KiB" in out
    assert "total                          4,810     18.8 KiB" in out
    assert "Gemm  2      yes" in out and "Relu  1      yes" in out
    assert "differentiable: `onnxgrad grad` and ForwardValueAndGrad will build the gradient" in out
    assert "note: gradient check: input 'x': symbolic size 'N' set to 1" in out
    assert err == ""


def test_inspect_json(cli):
    code, out, _ = cli("inspect", DIGITS, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["ir_version"] == 8 and report["opsets"] == {"ai.onnx": 17}
    assert report["producer"] == "onnxgrad" and report["graph_name"] == "digits_mlp"
    assert report["inputs"] == [{"name": "x", "shape": ["N", 64], "dtype": "float32"}]
    assert report["outputs"] == [{"name": "logits", "shape": ["N", 10], "dtype": "float32"}]
    assert [(w["name"], w["shape"], w["elements"], w["bytes"], w["trainable"]) for w in report["weights"]] == [
        ("fc1.weight", [64, 64], 4096, 16384, True),
        ("fc1.bias", [64], 64, 256, True),
        ("fc2.weight", [64, 10], 640, 2560, True),
        ("fc2.bias", [10], 10, 40, True),
    ]
    assert report["totals"] == {
        "trainable_count": 4, "trainable_elements": 4810, "trainable_bytes": 19240,
        "constant_count": 0, "constant_elements": 0, "constant_bytes": 0,
    }
    ops = [(o["op_type"], o["count"], o["gradient"]) for o in report["ops"]]
    assert ops == [("Gemm", 2, "yes"), ("Relu", 1, "yes")]
    assert report["differentiable"] is True and report["blocking"] == [] and report["error"] is None
    assert {s["name"]: s["status"] for s in report["sources"]} == {n: "ok" for n in ["x", *WEIGHTS]}


def test_inspect_report_survives_the_child_process(blocked_path):
    # The analysis runs in a child and comes back as data; rebuilt, it is the report the analysis made.
    from onnxgrad import _inspect, _inspect_text

    direct = _inspect.inspect_model(blocked_path)
    isolated = _inspect.inspect_isolated(blocked_path)
    assert isolated == direct and isolated.blocking and isolated.to_dict() == direct.to_dict()
    assert _inspect_text.to_text(isolated) == _inspect_text.to_text(direct)


def test_inspect_finds_every_blocking_node_and_what_it_blocks(cli, blocked_path):
    code, out, _ = cli("inspect", blocked_path, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["differentiable"] is False and report["error"] is None
    assert {s["name"]: (s["kind"], s["status"]) for s in report["sources"]} == {
        "x": ("input", "partly blocked"),  # through Compress, and directly into y2
        "ids": ("input", "ok"),  # through its Cast
        "z": ("input", "blocked"),
        "flags": ("input", "not float"),
        "w": ("weight", "blocked"),
        "v": ("weight", "ok"),
        "u": ("weight", "ok"),
        "unused": ("weight", "no path"),
    }
    assert [(b["op_type"], b["blocks"]) for b in report["blocking"]] == [("Compress", ["x", "w"]), ("Compress", ["z"])]
    gradient = {o["op_type"]: o["gradient"] for o in report["ops"]}
    assert gradient == {
        "Mul": "yes", "Add": "yes", "Compress": "no", "Cast": "-", "Shape": "-", "Reshape": "yes",
        "Identity": "-",
    }
    assert report["totals"]["trainable_count"] == 4

    code, out, _ = cli("inspect", blocked_path)
    assert code == 0
    assert "NOT differentiable: no gradient for Compress" in out
    assert "#1 (unnamed)  Compress  x, w" in out


def test_inspect_reads_external_data(cli, tmp_path):
    model = onnx.load(DIGITS)
    path = tmp_path / "external.onnx"
    onnx.save(model, path, save_as_external_data=True, location="external.onnx.data", size_threshold=0)
    assert (tmp_path / "external.onnx.data").stat().st_size == 19240
    code, out, _ = cli("inspect", str(path), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["totals"]["trainable_elements"] == 4810 and report["differentiable"] is True


def test_inspect_shape_option(cli):
    code, out, _ = cli("inspect", DIGITS, "--shape", "x=8,64")
    assert code == 0
    assert "symbolic size" not in out


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, r"No model file at '.*missing\.onnx': check the path\."),
        (lambda p: p.write_bytes(b"\x00garbage\xff" * 10), r"is not a readable ONNX model"),
        (lambda p: p.write_bytes(b""), r"not valid ONNX|not a readable ONNX model"),
    ],
    ids=["missing", "garbage", "empty"],
)
def test_inspect_bad_file_is_one_line_and_exit_1(cli, tmp_path, make, message):
    path = tmp_path / "missing.onnx"
    make(path)
    code, out, err = cli("inspect", str(path))
    assert code == 1 and out == ""
    assert re.search(message, _error_line(err)), err


def test_inspect_invalid_model(cli, tmp_path):
    model = onnx.load(DIGITS)
    model.graph.node[0].input[0] = "nowhere"
    path = tmp_path / "invalid.onnx"
    onnx.save(model, path)
    code, out, err = cli("inspect", str(path))
    assert code == 1 and out == ""
    assert "The model is not valid ONNX" in _error_line(err)


def test_inspect_bad_shapes(cli):
    code, _, err = cli("inspect", DIGITS, "--shape", "x32")
    assert code == 2 and "'x32' is not NAME=D1,D2,..." in err
    code, _, err = cli("inspect", DIGITS, "--shape", "y=1,64")
    assert code == 1 and "No input named 'y': the inputs are ['x']" in _error_line(err)
    code, _, err = cli("inspect", DIGITS, "--shape", "x=4,63")
    assert code == 1 and "Input 'x' has shape [N, 64]; [4, 63] does not fit it" in _error_line(err)


# --------------------------------------------------------------------------------------------------------------
# grad


def _run_fresh(path: pathlib.Path, feeds: dict[str, np.ndarray], tmp_path: pathlib.Path) -> list[np.ndarray]:
    """Runs the file in a new process that imports onnxruntime and numpy only."""
    np.savez(tmp_path / "feeds.npz", **feeds)
    code = f"""
import sys, numpy as np, onnxruntime as ort
feeds = dict(np.load({str(tmp_path / 'feeds.npz')!r}))
session = ort.InferenceSession({str(path)!r}, providers=["CPUExecutionProvider"])
results = session.run(None, feeds)
np.savez({str(tmp_path / 'results.npz')!r}, *results)
assert not any(m == "onnxgrad" or m.startswith("onnxgrad.") for m in sys.modules), "onnxgrad was imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(tmp_path / "results.npz") as results:
        return [results[f"arr_{i}"] for i in range(len(results.files))]


def _digits_batch(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 64), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64)


def _assert_same(got: list[np.ndarray], want: list[np.ndarray], names: list[str]) -> None:
    assert len(got) == len(want) == len(names)
    for name, g, w in zip(names, got, want):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, f"{name}: {g.shape} {g.dtype} vs {w.shape} {w.dtype}"
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=name)


def test_grad_with_loss_and_sens_runs_standalone_and_matches_forward_value_and_grad(cli, tmp_path):
    out_path = tmp_path / "step.onnx"
    code, out, err = cli("grad", DIGITS, "-o", str(out_path), "--loss", "sparse_softmax_ce", "--label-dtype", "int64",
        "--inputs", "x", "--sens", "--shape", "x=8,64",
    )
    assert code == 0, err
    assert err == ""  # every size given: no notes
    assert f"wrote {out_path}" in out and "onnx.checker passed" in out
    model = onnx.load(out_path)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["x", "label", "loss_sens"]
    assert [o.name for o in model.graph.output] == ["loss", "onnxgrad/loss", "x_grad", *(f"{w}_grad" for w in WEIGHTS)]
    assert {i.name for i in model.graph.initializer} >= set(WEIGHTS)

    x, label = _digits_batch(8)
    sens = np.array(0.5, np.float32)
    got = _run_fresh(out_path, {"x": x, "label": label, "loss_sens": sens}, tmp_path)

    net = onnxgrad.load(DIGITS)
    cell = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    fvg = onnxgrad.ForwardValueAndGrad(
        cell, onnxgrad.ParameterTuple(net.trainable_params()), get_all=True, get_by_list=True, sens_param=True
    )
    loss, ((dx, _dlabel), dweights) = fvg(x, label, sens)
    want = [loss, np.asarray(loss * sens, np.float32), dx, *dweights]
    _assert_same(got, want, ["loss", "onnxgrad/loss", "x_grad", *WEIGHTS])


def test_grad_defaults_weights_only_ones_seed_and_notes_symbolic_sizes(cli, tmp_path):
    out_path = tmp_path / "g.onnx"
    code, out, err = cli("grad", DIGITS, "-o", str(out_path))
    assert code == 0
    assert err == (
        "onnxgrad: note: input 'x': symbolic size 'N' set to 1 (choose it with --shape NAME=D1,D2,...)\n"
    )
    session = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("x", [1, 64])]
    assert [o.name for o in session.get_outputs()] == ["logits", "onnxgrad/loss", *(f"{w}_grad" for w in WEIGHTS)]
    x, _ = _digits_batch(1)
    got = session.run(None, {"x": x})
    net = onnxgrad.load(DIGITS)
    logits, dweights = onnxgrad.ForwardValueAndGrad(net, net.trainable_params(), get_by_list=True)(x)
    _assert_same(got, [logits, np.asarray(logits.sum(), np.float32), *dweights], ["logits", "loss", *WEIGHTS])


def test_grad_weights_as_inputs_follow_the_fed_weights(cli, tmp_path):
    out_path = tmp_path / "g.onnx"
    code, _, _ = cli("grad", DIGITS, "-o", str(out_path), "--weights", "fc2.weight,fc2.bias", "--inputs", "all",
        "--weights-as-inputs", "--shape", "x=4,64",
    )
    assert code == 0
    model = onnx.load(out_path)
    assert [i.name for i in model.graph.input] == ["x", *WEIGHTS]
    assert not {i.name for i in model.graph.initializer} & set(WEIGHTS)
    outputs = [o.name for o in model.graph.output]
    assert outputs == ["logits", "onnxgrad/loss", "x_grad", "fc2.weight_grad", "fc2.bias_grad"]

    net = onnxgrad.load(DIGITS)
    rng = np.random.default_rng(3)
    for p in net.trainable_params():  # weights that differ from the file's
        p.value[...] = rng.normal(size=p.shape)
    x, _ = _digits_batch(4)
    feeds = {"x": x, **{p.name: p.value for p in net.trainable_params()}}
    got = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"]).run(None, feeds)
    params = net.parameters_dict()
    logits, (dx, (dw, db)) = onnxgrad.value_and_grad(net, 0, [params["fc2.weight"], params["fc2.bias"]])(x)
    _assert_same(got, [logits, np.asarray(logits.sum(), np.float32), dx, dw, db], ["logits", "loss", "x", "w", "b"])


def test_grad_json_and_external_data(cli, tmp_path):
    out_path = tmp_path / "g.onnx"
    code, out, _ = cli("grad", DIGITS, "-o", str(out_path), "--external-data", "--json", "--shape", "x=2,64")
    assert code == 0
    data = json.loads(out)
    assert data["path"] == str(out_path) and data["notes"] == []
    assert data["inputs"] == [{"name": "x", "dtype": "float32", "shape": [2, 64], "description": "network input"}]
    assert [(o["name"], o["shape"]) for o in data["outputs"]] == [
        ("logits", [2, 10]), ("onnxgrad/loss", []), ("fc1.weight_grad", [64, 64]), ("fc1.bias_grad", [64]),
        ("fc2.weight_grad", [64, 10]), ("fc2.bias_grad", [10]),
    ]
    assert "gradient of onnxgrad/loss with respect to 'fc1.weight'" in data["outputs"][2]["description"]
    assert (tmp_path / "g.onnx.data").stat().st_size >= 16384
    x, _ = _digits_batch(2)
    got = _run_fresh(out_path, {"x": x}, tmp_path)
    net = onnxgrad.load(DIGITS)
    logits, dweights = onnxgrad.ForwardValueAndGrad(net, net.trainable_params(), get_by_list=True)(x)
    _assert_same(got, [logits, np.asarray(logits.sum(), np.float32), *dweights], ["logits", "loss", *WEIGHTS])


def test_grad_notes_tensors_without_a_path(cli, blocked_path, tmp_path):
    out_path = tmp_path / "g.onnx"
    code, out, err = cli("grad", blocked_path, "-o", str(out_path), "--weights", "v,unused", "--shape", "x=2,3"
    )
    assert code == 0, err
    assert "onnxgrad: note: weight 'unused': no output depends on it, so it has no gradient output" in err
    outputs = [o.name for o in onnx.load(out_path).graph.output]
    assert outputs == ["y", "y2", "f", "onnxgrad/loss", "v_grad"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--inputs", "y"], r"No input named 'y': the inputs are \['x'\]"),
        (["--weights", "fc3.weight"], r"No trainable weight named 'fc3.weight'; the weights are \['fc1.weight'"),
        (["--weights", "none"], r"Nothing to differentiate"),
        (["--loss", "hinge"], r"Unknown loss 'hinge': choose one of \[.*'sparse_softmax_ce'"),
        (["--loss", "sparse_softmax_ce", "--label-dtype", "float32"], r"takes labels of dtype \['int32', 'int64'\]"),
        (["--loss", "sparse_softmax_ce", "--inputs", "x,label"], r"Input 'label' has dtype int32 and no gradient"),
        (["--shape", "x=2,3,4"], r"Input 'x' has shape \[N, 64\]; \[2, 3, 4\] does not fit it"),
    ],
    ids=["input", "weight", "nothing", "loss", "label-dtype", "int-input", "shape"],
)
def test_grad_bad_arguments_exit_1_with_one_line(cli, tmp_path, args, message):
    out_path = tmp_path / "g.onnx"
    code, out, err = cli("grad", DIGITS, "-o", str(out_path), *args)
    assert code == 1 and out == ""
    assert re.search(message, _error_line(err)), err
    assert not out_path.exists()


def test_grad_blocked_model_names_the_op(cli, blocked_path, tmp_path):
    code, _, err = cli("grad", blocked_path, "-o", str(tmp_path / "g.onnx"), "--shape", "x=2,3")
    assert code == 1
    line = _error_line(err)
    assert "no gradient for op Compress" in line and "`onnxgrad inspect` lists the blocking nodes" in line


@pytest.mark.parametrize(
    "args, message",
    [
        (["grad", DIGITS], "the following arguments are required: -o/--output"),
        (["grad", DIGITS, "-o", "x.onnx", "--label-dtype", "int65"], "'int65' is not a numpy dtype"),
        (["grad", DIGITS, "-o", "x.onnx", "--shape", "x=a,b"], "sizes must be integers"),
        (["grad", DIGITS, "-o", "x.onnx", "--reduction", "max"], "invalid choice: 'max'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "choose a command: inspect, grad, train or builder"),
    ],
    ids=["no-output", "dtype", "shape", "reduction", "command", "none"],
)
def test_usage_errors_exit_2(cli, args, message):
    code, out, err = cli(*args)
    assert code == 2 and out == ""
    assert message in err


def test_grad_missing_output_folder_is_created(cli, tmp_path):
    out_path = tmp_path / "a" / "b" / "g.onnx"
    code, _, _ = cli("grad", DIGITS, "-o", str(out_path), "--shape", "x=1,64")
    assert code == 0 and out_path.is_file()
    assert not [p for p in out_path.parent.iterdir() if p.name != "g.onnx"], "temporary files left behind"


def test_grad_help_documents_the_names(cli):
    code, out, _ = cli("grad", "--help")
    assert code == 0
    names = ("'label'", "'<output>_sens'", "'onnxgrad/loss'", "'<x>_grad'", "--weights-as-inputs", "sparse_softmax_ce")
    for text in names:
        assert text in out, text


# --------------------------------------------------------------------------------------------------------------
# entry points


def test_python_dash_m_and_version(cli, tmp_path):
    done = cli.subprocess("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"onnxgrad {onnxgrad.__version__}"
    done = cli.subprocess("inspect", tmp_path / "nope.onnx", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().startswith("onnxgrad: error: No model file at")


def _cnn_text() -> str:
    """Conv, Relu, MaxPool, AveragePool, Gemm and a tanh-GELU written with Pow: an ordinary small CNN."""
    rng = np.random.default_rng(0)

    def values(shape):
        return ", ".join(repr(float(v)) for v in (rng.standard_normal(shape) * 0.3).ravel())

    return f"""<ir_version: 8, opset_import: ["" : 17]>
cnn (float[N,1,8,8] x) => (float[N,3] y)
<float[4,1,3,3] cw = {{{values((4, 1, 3, 3))}}}, float[4] cb = {{{values(4)}}},
 float[3,16] fw = {{{values((3, 16))}}}, float[3] fb = {{{values(3)}}}>
{{
  c = Conv <pads = [1, 1, 1, 1]> (x, cw, cb)
  r = Relu(c)
  p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (r)
  a = AveragePool <kernel_shape = [2, 2], strides = [2, 2]> (p)
  f = Flatten(a)
  h = Gemm <transB = 1> (f, fw, fb)
  three = Constant <value = float {{3.0}}> ()
  k = Constant <value = float {{0.044715}}> ()
  s = Constant <value = float {{0.7978845608}}> ()
  half = Constant <value = float {{0.5}}> ()
  one = Constant <value = float {{1.0}}> ()
  cube = Pow(h, three)
  kc = Mul(k, cube)
  hk = Add(h, kc)
  inner = Mul(s, hk)
  t = Tanh(inner)
  t1 = Add(one, t)
  hh = Mul(half, h)
  y = Mul(hh, t1)
}}"""


def test_grad_on_a_cnn_writes_a_standard_graph_that_runs_standalone(cli, tmp_path):
    model_path, out_path = tmp_path / "cnn.onnx", tmp_path / "cnn_grad.onnx"
    onnx.save(parser.parse_model(_cnn_text()), model_path)
    code, out, err = cli("grad", str(model_path), "-o", str(out_path), "--inputs", "all",
                         "--loss", "cross_entropy", "--shape", "x=4,1,8,8")
    assert code == 0, err
    written = onnx.load(out_path)
    assert {n.domain for n in written.graph.node} <= {""}
    assert not {"MaxPoolGrad", "AveragePoolGrad"} & {n.op_type for n in written.graph.node}
    rng = np.random.default_rng(1)
    x, label = rng.standard_normal((4, 1, 8, 8)).astype(np.float32), np.array([0, 2, 1, 2], np.int32)
    got = _run_fresh(out_path, {"x": x, "label": label}, tmp_path)

    net = onnxgrad.load(str(model_path))
    cell = nn.WithLossCell(net, nn.CrossEntropyLoss())
    fvg = onnxgrad.ForwardValueAndGrad(cell, onnxgrad.ParameterTuple(net.trainable_params()), get_all=True,
                                       get_by_list=True)
    loss, ((dx, _), dweights) = fvg(x, label)
    names = [o.name for o in written.graph.output]
    assert names == ["loss", "onnxgrad/loss", "x_grad", "cw_grad", "cb_grad", "fw_grad", "fb_grad"]
    _assert_same(got, [loss, loss, dx, *dweights], names)


@pytest.mark.parametrize("command", [["inspect", DIGITS], ["inspect", "--json", DIGITS]])
def test_closed_pipe_exits_silently(cli, command):
    # `onnxgrad inspect model.onnx | head -1`: the reader is gone before the output is written.
    reader, writer = os.pipe()
    os.close(reader)
    with os.fdopen(writer, "wb") as stdout:
        done = cli.subprocess(*command, stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT, timeout=120)
    assert done.stderr == "", done.stderr
