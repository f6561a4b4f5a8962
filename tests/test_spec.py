"""The two keys of a gradient call: ``GradSpec`` (the graph) and ``RunOptions`` (the session),
each normalised and checked once, when made."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import onnxgrad
from onnxgrad import _engine
from onnxgrad._spec import GradSpec, RunOptions
from onnxgrad.errors import InputError

SEED_NET = pathlib.Path(__file__).resolve().parents[1] / "models" / "seed_net.onnx"


def test_grad_spec_is_normalised_into_a_hashable_key():
    spec = GradSpec(inputs=range(2), weights=["w"], sens=1, contributing=[0])
    assert spec == GradSpec(inputs=(0, 1), weights=("w",), sens=True, contributing=(0,))
    assert hash(spec) == hash(GradSpec(inputs=(0, 1), weights=("w",), sens=True, contributing=(0,)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"inputs": [0.5]}, r"GradSpec inputs are positions \(int\), got \[0.5\]"),
     ({"inputs": [True]}, r"GradSpec inputs are positions"),
     ({"weights": [3]}, r"GradSpec weights are parameter names \(str\), got \[3\]")],
)
def test_grad_spec_refuses_what_is_not_a_position_or_a_name(kwargs, message):
    with pytest.raises(InputError, match=message):
        GradSpec(**kwargs)


def test_run_options_are_one_key_however_they_are_written():
    config = {"session.intra_op.allow_spinning": "0"}
    options = RunOptions(["CPUExecutionProvider"], config)
    assert options == RunOptions(("CPUExecutionProvider",), tuple(config.items()))
    assert options == RunOptions(None, {"session.intra_op.allow_spinning": 0})  # values as ORT takes them: str
    assert options.provider_list() == ["CPUExecutionProvider"] and options.config_dict() == config
    with_options = RunOptions([("CPUExecutionProvider", {"b": "2", "a": "1"})])
    assert with_options.providers == (("CPUExecutionProvider", (("a", "1"), ("b", "2"))),)
    assert with_options.provider_list() == [("CPUExecutionProvider", {"a": "1", "b": "2"})]


def test_bad_run_options_fail_when_the_gradient_function_is_made():
    net = onnxgrad.load(SEED_NET)
    with pytest.raises(InputError, match=r"Execution provider 'NoSuchExecutionProvider' is not available"):
        onnxgrad.ForwardValueAndGrad(net, providers=["NoSuchExecutionProvider"])
    with pytest.raises(InputError, match=r"session_config must map ONNX Runtime config keys to values, got int"):
        onnxgrad.value_and_grad(net, session_config=3)


def test_sessions_are_keyed_by_spec_and_options_and_kept_by_the_engine():
    net = onnxgrad.load(SEED_NET)
    x = np.ones([1, 2], np.float32)
    quiet = RunOptions(None, {"session.intra_op.allow_spinning": "0"})
    assert _engine.compiled_sessions(net) == {}  # nothing compiled, nothing kept
    _engine.forward(net, [x])
    _engine.forward(net, [x], options=quiet)
    _engine.run(net, [x], spec=GradSpec(inputs=(0,)))
    keys = list(_engine.compiled_sessions(net))
    assert [(spec, options) for spec, options, _ in keys] == [
        (GradSpec(), RunOptions()), (GradSpec(), quiet), (GradSpec(inputs=(0,)), RunOptions())
    ]
    assert not hasattr(net, "_compiled") and not hasattr(net, "_fast")  # the network carries no engine caches
