"""MindSpore networks for the parity suite (MindSpore compiles cells from source files).

Every network is a :class:`Net`: a cell factory and an input factory. Parameters
are set from a seeded RNG (:func:`seeded`) so that no ReLU is dead and no
BatchNorm statistic is trivial; inputs are numpy arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from mindspore import Parameter, Tensor, nn, ops
from mindspore.ops import operations as P

BATCH = 2


def seeded(cell: nn.Cell, seed: int = 0) -> nn.Cell:
    """Sets every parameter (BatchNorm statistics included) from a seeded RNG."""
    rng = np.random.default_rng(seed)
    for param in cell.get_parameters():
        shape = param.shape
        if any(key in param.name for key in ("gamma", "moving_variance")):
            value = rng.uniform(0.5, 1.5, size=shape)
        else:
            value = rng.normal(scale=0.5, size=shape)
        param.set_data(Tensor(value.astype(np.float32)))
    return cell


def _normal(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# --- Backbones with one output -------------------------------------------------


class Seed(nn.Cell):
    """The seed's Net: ``x @ weight``."""

    def __init__(self):
        super().__init__()
        self.weight = Parameter(Tensor(np.ones([2, 2]).astype(np.float32)), name="weight")
        self.matmul = P.MatMul()

    def construct(self, x):
        return self.matmul(x, self.weight)


class Dense(nn.Cell):
    def __init__(self):
        super().__init__()
        self.fc = nn.Dense(4, 3)

    def construct(self, x):
        return self.fc(x)


class MLP(nn.Cell):
    """Dense, ReLU, Dense."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Dense(4, 8)
        self.relu = nn.ReLU()
        self.fc2 = nn.Dense(8, 3)

    def construct(self, x):
        return self.fc2(self.relu(self.fc1(x)))


class Activation(nn.Cell):
    """Dense followed by one activation cell."""

    def __init__(self, activation: nn.Cell):
        super().__init__()
        self.fc = nn.Dense(4, 3)
        self.activation = activation

    def construct(self, x):
        return self.activation(self.fc(x))


class Conv(nn.Cell):
    """Conv2d, MindSpore's default pad_mode='same': ``[N, 2, 4, 4] -> [N, 3, 4, 4]``, logits for per-pixel losses."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, has_bias=True)

    def construct(self, x):
        return self.conv(x)


class ConvPad(nn.Cell):
    """Conv2d with explicit padding (pad_mode='pad'), strided."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, stride=2, pad_mode="pad", padding=1, has_bias=True)

    def construct(self, x):
        return self.conv(x)


class ConvBN(nn.Cell):
    """Conv2d, BatchNorm2d (eval mode: moving statistics), ReLU."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.relu = nn.ReLU()

    def construct(self, x):
        return self.relu(self.bn(self.conv(x)))


class Pool(nn.Cell):
    """Conv2d then a 2x2 pooling cell."""

    def __init__(self, pool: nn.Cell):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, has_bias=True)
        self.pool = pool

    def construct(self, x):
        return self.pool(self.conv(x))


class SmallCNN(nn.Cell):
    """Conv2d, ReLU, MaxPool2d, Flatten, Dense: ``[N, 2, 4, 4] -> [N, 3]``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, has_bias=True)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2, 2)
        self.flatten = nn.Flatten()
        self.fc = nn.Dense(16, 3)

    def construct(self, x):
        return self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))


class Norm(nn.Cell):
    """Dense then LayerNorm over the features."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Dense(4, 5)
        self.norm = nn.LayerNorm((5,))

    def construct(self, x):
        return self.norm(self.fc(x))


class Embed(nn.Cell):
    """Embedding of int32 ids, then Dense."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(6, 4)
        self.fc = nn.Dense(4, 3)

    def construct(self, ids):
        return self.fc(self.embedding(ids))


# --- Several inputs or outputs ------------------------------------------------


class TwoInputs(nn.Cell):
    """``tanh(fa(a)) * fb(b)``."""

    def __init__(self):
        super().__init__()
        self.fa = nn.Dense(4, 3)
        self.fb = nn.Dense(2, 3)

    def construct(self, a, b):
        return ops.tanh(self.fa(a)) * self.fb(b)


class MultiOutput(nn.Cell):
    """The logits and a scalar penalty."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Dense(4, 3)

    def construct(self, x):
        logits = self.fc(x)
        return logits, ops.reduce_sum(ops.sigmoid(logits) * x[:, :3])


class Unused(nn.Cell):
    """An unused input between two used ones, and a parameter no output depends on."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Dense(4, 3)
        self.spare = Parameter(Tensor(np.ones([3], np.float32)), name="spare")

    def construct(self, a, ignored, b):
        return self.fc(a) * b


@dataclasses.dataclass(frozen=True)
class Net:
    """A parity-suite network.

    Attributes:
        make: builds the cell, parameters seeded.
        inputs: builds the numpy inputs.
    """

    make: Callable[[], nn.Cell]
    inputs: Callable[[], list[np.ndarray]]


def image() -> list[np.ndarray]:
    return [_normal(1, BATCH, 2, 4, 4)]


def features() -> list[np.ndarray]:
    return [_normal(1, BATCH, 4)]


def _activation(make: Callable[[], nn.Cell]) -> Net:
    return Net(lambda: seeded(Activation(make())), features)


NETWORKS: dict[str, Net] = {
    "seed": Net(Seed, lambda: [_normal(1, BATCH, 2)]),
    "dense": Net(lambda: seeded(Dense()), features),
    "mlp": Net(lambda: seeded(MLP()), features),
    "conv2d": Net(lambda: seeded(Conv()), image),
    "conv2d_pad": Net(lambda: seeded(ConvPad()), image),
    "conv_batchnorm_eval": Net(lambda: seeded(ConvBN()), image),
    "layernorm": Net(lambda: seeded(Norm()), features),
    "maxpool": Net(lambda: seeded(Pool(nn.MaxPool2d(2, 2))), image),
    "avgpool": Net(lambda: seeded(Pool(nn.AvgPool2d(2, 2))), image),
    "small_cnn": Net(lambda: seeded(SmallCNN()), image),
    "relu": _activation(nn.ReLU),
    "tanh": _activation(nn.Tanh),
    "sigmoid": _activation(nn.Sigmoid),
    "gelu": _activation(nn.GELU),  # approximate=True: Pow and Tanh (the erf form does not export: no Erf converter)
    "leaky_relu": _activation(lambda: nn.LeakyReLU(0.2)),
    "softmax": _activation(nn.Softmax),
    "embedding": Net(lambda: seeded(Embed()), lambda: [np.array([[0, 5, 2], [3, 3, 1]], np.int32)]),
    "two_inputs": Net(lambda: seeded(TwoInputs()), lambda: [_normal(1, BATCH, 4), _normal(2, BATCH, 2)]),
    "multi_output": Net(lambda: seeded(MultiOutput()), features),
    "unused": Net(lambda: seeded(Unused()), lambda: [_normal(1, BATCH, 4), _normal(2, BATCH, 5), _normal(3, BATCH, 3)]),
}


def tensors(arrays: list[np.ndarray]) -> list[Tensor]:
    """MindSpore Tensors holding the arrays."""
    return [Tensor(a) for a in arrays]


# --- MindSpore's results, around its bugs -------------------------------------

#: (loss, reduction) -> a MindSpore 2.10 bug the reference works around.
MINDSPORE_BUGS = {
    ("BCEWithLogitsLoss", "mean"): (
        "the gradient kernel keeps the element count of the first input shape the process differentiated "
        "it for: later shapes get gradients scaled by first size / size. The reference takes the value "
        "from 'mean' and the gradients from 'sum' divided by the element count."
    ),
}


def reference(make: Callable[[str], nn.Cell], loss: str, reduction: str, size: int, flags: dict, args: list):
    """MindSpore's ``nn.ForwardValueAndGrad(make(reduction), **flags)(*args)``, or its workaround.

    Args:
        make: builds the network (a loss cell, or a WithLossCell) for a reduction.
        loss: the MindSpore loss class name.
        reduction: the reduction under test.
        size: the number of loss elements before reduction.
        flags: ForwardValueAndGrad's arguments besides the network.
        args: the call's arguments (Tensors).
    """
    if (loss, reduction) not in MINDSPORE_BUGS:
        return nn.ForwardValueAndGrad(make(reduction), **flags)(*args)
    value, _ = nn.ForwardValueAndGrad(make("mean"), **flags)(*args)
    _, grads = nn.ForwardValueAndGrad(make("sum"), **flags)(*args)
    return value, _map(lambda g: Tensor(g.asnumpy() / np.array(size, g.asnumpy().dtype)), grads)


def _map(fn, tree):
    if isinstance(tree, (tuple, list)):
        return type(tree)(_map(fn, t) for t in tree)
    return fn(tree)


__all__ = ["NETWORKS", "Net", "MINDSPORE_BUGS", "reference", "seeded", "tensors"]
