"""onnxgrad.optim against PyTorch's and MindSpore's optimizers: same start, same
gradients, a few steps, every parameter compared; plus in-place updates,
state round trips and argument errors."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable

import numpy as np
import pytest

import onnxgrad
from onnxgrad import optim

DIGITS = pathlib.Path(__file__).resolve().parent.parent / "models" / "digits_mlp.onnx"
SHAPES = {"fc.weight": (4, 3), "fc.bias": (3,), "bn.gamma": (3,)}
STEPS = 5


def _start() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=shape).astype(np.float32) for name, shape in SHAPES.items()}


def _grads() -> list[list[np.ndarray]]:
    rng = np.random.default_rng(1)
    return [[rng.normal(size=shape).astype(np.float32) for shape in SHAPES.values()] for _ in range(STEPS)]


def _ours(make: Callable[[list], optim.Optimizer]) -> list[list[np.ndarray]]:
    params = [onnxgrad.Parameter(value, name) for name, value in _start().items()]
    opt = make(params)
    history = []
    for grads in _grads():
        opt.step(grads)
        history.append([p.value.copy() for p in params])
    return history


def _torch(make: Callable[[list], Any]) -> list[list[np.ndarray]]:
    torch = pytest.importorskip("torch")
    params = [torch.nn.Parameter(torch.tensor(value)) for value in _start().values()]
    opt = make(params)
    history = []
    for grads in _grads():
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


def _mindspore(kwargs: dict) -> list[list[np.ndarray]]:
    ms = pytest.importorskip("mindspore")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    params = [ms.Parameter(ms.Tensor(value.copy()), name=name) for name, value in _start().items()]
    opt = ms.nn.Momentum(params, **kwargs)
    history = []
    for grads in _grads():
        opt(tuple(ms.Tensor(g) for g in grads))
        history.append([p.asnumpy().copy() for p in params])
    return history


@dataclasses.dataclass(frozen=True)
class Case:
    """One optimizer configuration and its reference."""

    name: str
    ours: Callable[[list], optim.Optimizer]
    reference: Callable[[], list[list[np.ndarray]]]
    rtol: float = 1e-5
    atol: float = 1e-6


def _torch_sgd(**kw):
    return lambda: _torch(lambda ps: __import__("torch").optim.SGD(ps, **kw))


def _torch_adam(**kw):
    return lambda: _torch(lambda ps: __import__("torch").optim.Adam(ps, **kw))


CASES = [
    Case("sgd", lambda ps: optim.SGD(ps, 0.1), _torch_sgd(lr=0.1)),
    Case("sgd-momentum", lambda ps: optim.SGD(ps, 0.1, momentum=0.9), _torch_sgd(lr=0.1, momentum=0.9)),
    Case(
        "sgd-nesterov-decay",
        lambda ps: optim.SGD(ps, 0.05, momentum=0.8, weight_decay=0.01, nesterov=True),
        _torch_sgd(lr=0.05, momentum=0.8, weight_decay=0.01, nesterov=True),
    ),
    Case(
        "sgd-dampening",
        lambda ps: optim.SGD(ps, 0.1, momentum=0.9, dampening=0.5),
        _torch_sgd(lr=0.1, momentum=0.9, dampening=0.5),
    ),
    Case("adam", lambda ps: optim.Adam(ps, 1e-2), _torch_adam(lr=1e-2)),
    Case(
        "adam-decay-betas",
        lambda ps: optim.Adam(ps, 3e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
        _torch_adam(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    ),
    Case(
        "momentum",
        lambda ps: optim.Momentum(ps, 0.1, 0.9),
        lambda: _mindspore(dict(learning_rate=0.1, momentum=0.9)),
    ),
    # MindSpore skips the decay for names with 'beta'/'gamma' (bn.gamma here) and scales it by loss_scale.
    Case(
        "momentum-decay-loss-scale",
        lambda ps: optim.Momentum(ps, 0.1, 0.9, weight_decay=0.05, loss_scale=4.0),
        lambda: _mindspore(dict(learning_rate=0.1, momentum=0.9, weight_decay=0.05, loss_scale=4.0)),
    ),
    # MindSpore 2.10's CPU ApplyMomentum ignores use_nesterov; its documented formula is PyTorch's Nesterov SGD.
    Case(
        "momentum-nesterov",
        lambda ps: optim.Momentum(ps, 0.1, 0.9, use_nesterov=True),
        _torch_sgd(lr=0.1, momentum=0.9, nesterov=True),
    ),
]


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
    params = [onnxgrad.Parameter(value, name) for name, value in _start().items()]
    buffers = [p.value for p in params]
    before = [b.copy() for b in buffers]
    make(params).step(_grads()[0])
    for p, buffer, old in zip(params, buffers, before):
        assert p.value is buffer, f"{p.name}: the optimizer rebound the buffer instead of updating it"
        assert not np.array_equal(buffer, old), f"{p.name} did not change"


@pytest.mark.parametrize("make", [c.ours for c in CASES], ids=[c.name for c in CASES])
def test_state_dict_round_trip_continues_identically(make):
    grads = _grads()
    straight = [onnxgrad.Parameter(v, n) for n, v in _start().items()]
    opt = make(straight)
    for g in grads:
        opt.step(g)

    first = [onnxgrad.Parameter(v, n) for n, v in _start().items()]
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
