"""Where gradient graphs are built: in this process, or in the builder environment's subprocess."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

import onnxgrad
import onnxgrad.testing
from _support.op_cases import CASES_BY_NAME, network_and_args
from onnxgrad import _builder_env, _ort
from onnxgrad.errors import GradientBuildError, OnnxGradError


def _builder_python() -> str:
    """A Python that has the builder: this one, or the configured builder environment's."""
    return sys.executable if _builder_env.in_process() else _builder_env.builder_python()


@pytest.fixture
def subprocess_builder(monkeypatch, fresh_cache):
    monkeypatch.setenv("ONNXGRAD_BUILDER", "subprocess")
    monkeypatch.setenv("ONNXGRAD_BUILDER_PYTHON", _builder_python())


@pytest.mark.parametrize("name", ["conv_groups", "maxpool_overlap", "layernorm", "softmaxceloss_weight_ignore"])
def test_subprocess_builds_the_same_gradients_as_this_process(name, subprocess_builder, monkeypatch):
    _, network, args = network_and_args(CASES_BY_NAME[name])
    weights = network.trainable_params()
    from_subprocess = onnxgrad.ForwardValueAndGrad(network, weights, get_all=True, get_by_list=True)(*args)
    onnxgrad.testing.check_grads(network, args)  # and the subprocess's graph is right
    if not _builder_env.in_process():
        return
    monkeypatch.delenv("ONNXGRAD_BUILDER")
    from onnxgrad import _cache

    _cache.clear_memory()
    again = onnxgrad.load(CASES_BY_NAME[name].model())
    in_process = onnxgrad.ForwardValueAndGrad(again, again.trainable_params(), get_all=True, get_by_list=True)(*args)
    value, (inputs, params) = from_subprocess
    value2, (inputs2, params2) = in_process
    for got, want in zip([value, *inputs, *params], [value2, *inputs2, *params2], strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_model_the_builder_refuses_gets_the_same_typed_error_from_the_subprocess(subprocess_builder):
    text = """<ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[1] y) <bool[2] keep = {1, 0}> { y = Compress<axis = 0>(x, keep) }"""
    import onnx.parser

    with pytest.raises(onnxgrad.UnsupportedGradientError, match="no gradient for op Compress"):
        onnxgrad.ForwardValueAndGrad(onnxgrad.load(onnx.parser.parse_model(text)))(np.ones(2, np.float32))


def test_a_missing_builder_environment_names_the_install_command(monkeypatch, tmp_path, fresh_cache):
    monkeypatch.setenv("ONNXGRAD_BUILDER", "subprocess")
    monkeypatch.delenv("ONNXGRAD_BUILDER_PYTHON", raising=False)
    monkeypatch.setenv("ONNXGRAD_BUILDER_DIR", str(tmp_path / "none"))
    _, network, args = network_and_args(CASES_BY_NAME["tanh"])
    with pytest.raises(GradientBuildError, match="onnxgrad builder install"):
        onnxgrad.ForwardValueAndGrad(network)(*args)


def test_status_says_where_graphs_are_built(monkeypatch, cli, tmp_path):
    monkeypatch.setenv("ONNXGRAD_BUILDER_DIR", str(tmp_path / "env"))
    monkeypatch.delenv("ONNXGRAD_BUILDER_PYTHON", raising=False)
    code, out, _ = cli("builder", "status", "--json")
    assert code == 0
    status = json.loads(out)
    assert status["environment"] == str(tmp_path / "env") and status["ready"] is False
    assert status["in_process_builder"] == _builder_env.in_process()
    assert status["builds_in"] == ("this process" if _builder_env.in_process() else "subprocess")
    code, out, _ = cli("builder", "status")
    assert code == 0 and "run `onnxgrad builder install`" in out


def test_install_leaves_a_working_environment_alone(monkeypatch, tmp_path, cli):
    folder = tmp_path / "env"
    (folder / "bin").mkdir(parents=True)
    os.symlink(_builder_python(), folder / "bin" / "python")
    monkeypatch.setenv("ONNXGRAD_BUILDER_DIR", str(folder))
    code, _, err = cli("builder", "install")
    assert code == 0 and "is ready" in err
    assert os.path.islink(folder / "bin" / "python")  # not recreated


def test_install_refuses_a_python_that_is_not_3_11(tmp_path):
    fake = tmp_path / "python3.12"
    fake.write_text("#!/bin/sh\necho 3 12\n")
    fake.chmod(0o755)
    with pytest.raises(OnnxGradError, match="Python 3.12.*needs Python 3.11"):
        _builder_env.find_python311(str(fake))


def test_a_cached_graph_needs_no_builder(monkeypatch, tmp_path, fresh_cache):
    from onnxgrad import _cache

    case = CASES_BY_NAME["conv_groups"]
    _, network, args = network_and_args(case)
    first = onnxgrad.ForwardValueAndGrad(network, network.trainable_params(), get_all=True, get_by_list=True)(*args)
    # A machine with no builder at all, sharing the disk cache.
    _cache.clear_memory()
    monkeypatch.setenv("ONNXGRAD_BUILDER", "subprocess")
    monkeypatch.delenv("ONNXGRAD_BUILDER_PYTHON", raising=False)
    monkeypatch.setenv("ONNXGRAD_BUILDER_DIR", str(tmp_path / "none"))
    monkeypatch.setattr(_ort.ort, "__version__", "1.99.0")  # another onnxruntime there
    again = onnxgrad.load(case.model())
    second = onnxgrad.ForwardValueAndGrad(again, again.trainable_params(), get_all=True, get_by_list=True)(*args)
    value, (inputs, params) = first
    value2, (inputs2, params2) = second
    for got, want in zip([value2, *inputs2, *params2], [value, *inputs, *params], strict=True):
        np.testing.assert_array_equal(got, want)
