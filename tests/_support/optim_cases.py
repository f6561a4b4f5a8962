"""The optimizer cases: onnxgrad.optim configurations and the PyTorch or MindSpore optimizer each
must follow, from the same seeded start and gradients (test_optim, test_device)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import pytest

from onnxgrad import optim

SHAPES = {"fc.weight": (4, 3), "fc.bias": (3,), "bn.gamma": (3,)}
STEPS = 5


def start_values() -> dict[str, np.ndarray]:
    """The parameters' seeded starting values, by name."""
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=shape).astype(np.float32) for name, shape in SHAPES.items()}


def step_grads() -> list[list[np.ndarray]]:
    """Seeded gradients for each of the STEPS steps, in SHAPES' order."""
    rng = np.random.default_rng(1)
    return [[rng.normal(size=shape).astype(np.float32) for shape in SHAPES.values()] for _ in range(STEPS)]


def _torch(make: Callable[[list], Any]) -> list[list[np.ndarray]]:
    torch = pytest.importorskip("torch")
    params = [torch.nn.Parameter(torch.tensor(value)) for value in start_values().values()]
    opt = make(params)
    history = []
    for grads in step_grads():
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


def _mindspore(kwargs: dict) -> list[list[np.ndarray]]:
    ms = pytest.importorskip("mindspore")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    params = [ms.Parameter(ms.Tensor(value.copy()), name=name) for name, value in start_values().items()]
    opt = ms.nn.Momentum(params, **kwargs)
    history = []
    for grads in step_grads():
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
