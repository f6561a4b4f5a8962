"""onnxgrad.optim against PyTorch's and MindSpore's optimizers: same start, same
gradients, a few steps, every parameter compared; plus in-place updates,
state round trips and argument errors."""

from __future__ import annotations

import pathlib
from typing import Callable

import numpy as np
import pytest

import onnxgrad
from _support.optim_cases import CASES, SHAPES, start_values, step_grads
from onnxgrad import optim

DIGITS = pathlib.Path(__file__).resolve().parent.parent / "models" / "digits_mlp.onnx"
def _ours(make: Callable[[list], optim.Optimizer]) -> list[list[np.ndarray]]:
    params = [onnxgrad.Parameter(value, name) for name, value in start_values().items()]
    opt = make(params)
    history = []
    for grads in step_grads():
        opt.step(grads)
        history.append([p.value.copy() for p in params])
    return history


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_update_matches_reference(case):
    expected = case.reference()
    got = _ours(case.ours)
    for step, (want_step, got_step) in enumerate(zip(expected, got), 1):
        for name, want, value in zip(SHAPES, want_step, got_step):
            assert value.shape == want.shape and value.dtype == want.dtype, f"{case.name} step {step} {name}"
            np.testing.assert_allclose(
                value, want, rtol=case.rtol, atol=case.atol, err_msg=f"{case.name}: step {step}, param[{name}]"
            )


@pytest.mark.parametrize("make", [c.ours for c in CASES], ids=[c.name for c in CASES])
def test_step_updates_the_live_buffer_in_place(make):
    params = [onnxgrad.Parameter(value, name) for name, value in start_values().items()]
    buffers = [p.value for p in params]
    before = [b.copy() for b in buffers]
    make(params).step(step_grads()[0])
    for p, buffer, old in zip(params, buffers, before):
        assert p.value is buffer, f"{p.name}: the optimizer rebound the buffer instead of updating it"
        assert not np.array_equal(buffer, old), f"{p.name} did not change"


@pytest.mark.parametrize("make", [c.ours for c in CASES], ids=[c.name for c in CASES])
def test_state_dict_round_trip_continues_identically(make):
    grads = step_grads()
    straight = [onnxgrad.Parameter(v, n) for n, v in start_values().items()]
    opt = make(straight)
    for g in grads:
        opt.step(g)

    first = [onnxgrad.Parameter(v, n) for n, v in start_values().items()]
    opt1 = make(first)
    for g in grads[:2]:
        opt1.step(g)
    state = opt1.state_dict()
    resumed = [onnxgrad.Parameter(p.value, p.name) for p in first]
    opt2 = make(resumed)
    opt2.load_state_dict(state)
    assert opt2.steps == 2
    for g in grads[2:]:
        opt2.step(g)
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.value, b.value, err_msg=f"param[{a.name}] after resume")


def test_optimizer_trains_a_network_through_the_live_buffers():
    loss = onnxgrad.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    net = onnxgrad.nn.WithLossCell(onnxgrad.load(str(DIGITS)), loss)
    params = onnxgrad.ParameterTuple(net.trainable_params())
    fvg = onnxgrad.ForwardValueAndGrad(net, params, get_by_list=True)
    rng = np.random.default_rng(0)
    x = rng.random((16, 64), dtype=np.float32)
    y = rng.integers(0, 10, 16).astype(np.int64)
    opt = optim.Adam(params, 1e-2)
    first, _ = fvg(x, y)
    for _ in range(20):
        loss, grads = fvg(x, y)
        opt.step(grads)
    assert float(loss) < float(first) / 2


def test_step_checks_gradients():
    params = [onnxgrad.Parameter(np.zeros(3, np.float32), "w")]
    opt = optim.SGD(params, 0.1)
    with pytest.raises(onnxgrad.InputError, match=r"got 2 gradient\(s\) for 1 parameter"):
        opt.step([np.zeros(3), np.zeros(3)])
    with pytest.raises(onnxgrad.InputError, match=r"gradient of 'w' has shape \[2\], the parameter \[3\]"):
        opt.step([np.zeros(2)])


def test_bad_hyperparameters():
    params = [onnxgrad.Parameter(np.zeros(3, np.float32), "w")]
    with pytest.raises(onnxgrad.InputError, match="learning_rate must be >= 0"):
        optim.SGD(params, -1.0)
    with pytest.raises(onnxgrad.InputError, match="Nesterov momentum needs momentum > 0"):
        optim.SGD(params, 0.1, nesterov=True)
    with pytest.raises(onnxgrad.InputError, match=r"beta2 must be in \[0, 1\)"):
        optim.Adam(params, beta2=1.0)
    with pytest.raises(onnxgrad.InputError, match="loss_scale must be > 0"):
        optim.Momentum(params, 0.1, 0.9, loss_scale=0)
    with pytest.raises(onnxgrad.InputError, match="floating-point parameters only"):
        optim.SGD([onnxgrad.Parameter(np.zeros(3, np.int64), "steps")], 0.1)


def test_load_state_dict_rejects_other_optimizers_and_models():
    params = [onnxgrad.Parameter(np.zeros(3, np.float32), "w")]
    adam_state = optim.Adam(params).state_dict()
    with pytest.raises(onnxgrad.InputError, match="saved by Adam, not SGD: resume with the same optimizer"):
        optim.SGD(params, 0.1, momentum=0.9).load_state_dict(adam_state)
    other = [onnxgrad.Parameter(np.zeros(4, np.float32), "w")]
    with pytest.raises(onnxgrad.InputError, match=r"'exp_avg/w' has shape \[3\], the parameter \[4\]"):
        optim.Adam(other).load_state_dict(adam_state)
    renamed = [onnxgrad.Parameter(np.zeros(3, np.float32), "v")]
    with pytest.raises(onnxgrad.InputError, match="lacks .*exp_avg/v"):
        optim.Adam(renamed).load_state_dict(adam_state)


def test_make_optimizer_builds_the_named_optimizer_with_its_defaults():
    def param():
        return [onnxgrad.Parameter(np.zeros(3, np.float32), "w")]

    sgd = optim.make_optimizer("SGD", param())
    assert type(sgd) is optim.SGD and sgd.learning_rate == optim.OPTIMIZERS["sgd"] and sgd.momentum == 0.0
    momentum = optim.make_optimizer("momentum", param(), 0.05, nesterov=True, weight_decay=1e-4)
    assert type(momentum) is optim.Momentum and momentum.learning_rate == 0.05
    assert (momentum.momentum, momentum.use_nesterov, momentum.weight_decay) == (0.9, True, 1e-4)
    adam = optim.make_optimizer("adam", param(), beta1=0.8, beta2=0.99)
    assert type(adam) is optim.Adam and adam.learning_rate == optim.OPTIMIZERS["adam"]
    assert (adam.beta1, adam.beta2) == (0.8, 0.99)
    assert sorted(optim.OPTIMIZERS) == ["adam", "momentum", "sgd"]
    with pytest.raises(onnxgrad.InputError, match=r"Unknown optimizer 'lamb': choose one of \['adam', 'momentum', 'sgd'\]"):
        optim.make_optimizer("lamb", param())
