"""The MindSpore networks of the tests (MindSpore compiles cells from source files).

- :data:`NETWORKS`: the parity suite's networks. Each is a :class:`Net`: a cell factory
  and an input factory. Parameters are set from a seeded RNG (:func:`seeded`) so that
  no ReLU is dead and no BatchNorm statistic is trivial; inputs are numpy arrays.
- Cells exported to ONNX first (:func:`export_onnx`): :class:`TwoOutputs`,
  :class:`DenseReLU`, :class:`EmbedScaled`, :class:`ScalarLoss`.
- Cells MindSpore differentiates specially: frozen parameters, no inputs, a custom
  bprop, and int math (MindSpore differentiates it in int).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Callable

import numpy as np
import onnx

import mindspore as ms
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


# --- Cells exported to ONNX first, then loaded (onnxgrad.load) --------------------


class TwoOutputs(nn.Cell):
    """Two outputs; an int input entering float math through Cast; an unused input."""

    def __init__(self):
        super().__init__()
        self.w = Parameter(Tensor(np.arange(6).reshape(2, 3).astype(np.float32) / 4), name="w")

    def construct(self, x, k, unused):
        y = ops.matmul(x, self.w)
        return ops.tanh(y) * ops.cast(k, ms.float32), ops.reduce_sum(y * y)


class DenseReLU(nn.Cell):
    """Dense + ReLU + Dense."""

    def __init__(self):
        super().__init__()
        # Seeded, well-scaled weights: finite differences must not land on a ReLU kink by chance.
        rng = np.random.default_rng(7)
        self.fc1 = nn.Dense(4, 5, weight_init=Tensor(rng.normal(0, 0.5, (5, 4)).astype(np.float32)),
                            bias_init=Tensor(rng.normal(0, 0.5, 5).astype(np.float32)))
        self.fc2 = nn.Dense(5, 3, weight_init=Tensor(rng.normal(0, 0.5, (3, 5)).astype(np.float32)),
                            bias_init=Tensor(rng.normal(0, 0.5, 3).astype(np.float32)))
        self.relu = nn.ReLU()

    def construct(self, x):
        return self.fc2(self.relu(self.fc1(x)))


class EmbedScaled(nn.Cell):
    """An int input used as indices (no gradient), plus a float input."""

    def __init__(self):
        super().__init__()
        self.table = Parameter(Tensor(np.linspace(-1, 1, 12).reshape(4, 3).astype(np.float32)), name="table")

    def construct(self, ids, scale):
        return ops.gather(self.table, ids, 0) * scale


class ScalarLoss(nn.Cell):
    """A 0-d output."""

    def __init__(self):
        super().__init__()
        self.w = Parameter(Tensor(np.array([0.5, -1.0, 2.0], np.float32)), name="w")

    def construct(self, x):
        return ops.reduce_sum(ops.sigmoid(x * self.w))


def export_onnx(cell: nn.Cell, *inputs) -> onnx.ModelProto:
    """The cell's ONNX graph, as ``mindspore.export`` writes it."""
    cell.set_train(False)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "net")
        ms.export(cell, *[Tensor(i) for i in inputs], file_name=path, file_format="ONNX")
        return onnx.load(path + ".onnx")


# --- Cells MindSpore differentiates specially ------------------------------------


class FrozenBias(nn.Cell):
    """``x @ w + b`` with ``b`` frozen (``requires_grad=False``)."""

    def __init__(self):
        super().__init__()
        self.w = Parameter(Tensor(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)), name="w")
        self.b = Parameter(Tensor(np.array([0.5, -0.5], np.float32)), name="b", requires_grad=False)
        self.matmul = ops.MatMul()

    def construct(self, x):
        return self.matmul(x, self.w) + self.b


class NoInput(nn.Cell):
    """A cell whose construct takes no arguments."""

    def __init__(self):
        super().__init__()
        self.w = Parameter(Tensor(np.array([1.0, 2.0], np.float32)), name="w")

    def construct(self):
        return self.w * 2.0


class ClippedGradient(nn.Cell):
    """``x * x`` whose custom bprop passes ``dout`` unchanged (not ``2 * x * dout``)."""

    def construct(self, x):
        return x * x

    def bprop(self, x, out, dout):
        return (dout,)


class WithClipped(nn.Cell):
    """A backbone holding a cell with a custom bprop."""

    def __init__(self):
        super().__init__()
        self.inner = ClippedGradient()
        self.dense = nn.Dense(2, 2)

    def construct(self, x):
        return self.inner(self.dense(x))


# --- Int math (MindSpore differentiates it in int) ---


class IntTimes3(nn.Cell):
    """Int math only: ``x * 3``."""

    def construct(self, x):
        return x * 3


class IntSquareSum(nn.Cell):
    """``sum(x * x)`` (MindSpore sums int32 into int64)."""

    def construct(self, x):
        return (x * x).sum()


class IntMul(nn.Cell):
    """Two int inputs: ``x * y``."""

    def construct(self, x, y):
        return x * y


class IntCastWeight(nn.Cell):
    """An int input entering float math through a Cast, times a float weight and a fraction."""

    def __init__(self):
        super().__init__()
        self.w = Parameter(Tensor(np.array([0.5, 1.5, -2.0], np.float32)), name="w")

    def construct(self, x):
        return ops.cast(x, ms.float32) * self.w * 2.5


class MixedMul(nn.Cell):
    """An int input times a float input (MindSpore promotes the int to float32)."""

    def construct(self, x, y):
        return x * y * 1.5


class IntMathThenCast(nn.Cell):
    """Int math, then a Cast into float math whose gradient, 2.5, MindSpore truncates at the Cast."""

    def construct(self, x, y):
        return ops.cast(x * 3 + y, ms.float32) * 2.5


class IntParam(nn.Cell):
    """An int Parameter entering float math through a Cast."""

    def __init__(self):
        super().__init__()
        self.p = Parameter(Tensor(np.array([1, 2, 3], np.int32)), name="p")

    def construct(self, x):
        return ops.cast(self.p, ms.float32) * x * 1.7


class OutputToInt(nn.Cell):
    """A float computation whose output is cast to int."""

    def construct(self, x):
        return ops.cast(x * 2.6, ms.int32)


class FloatToIntMath(nn.Cell):
    """A float cast to int, int math, and back into float math."""

    def construct(self, x):
        return ops.cast(ops.cast(x, ms.int32) * 2, ms.float32) * 1.5


class IntFloorDiv(nn.Cell):
    """Int floor division."""

    def construct(self, x):
        return x // 2


class IntRealDiv(nn.Cell):
    """Int true division (MindSpore returns float32 values and a float32 gradient)."""

    def construct(self, x):
        return x / 2


class BoolScale(nn.Cell):
    """A bool input entering float math."""

    def construct(self, x):
        return ops.cast(x, ms.float32) * 0.7


__all__ = ["NETWORKS", "Net", "MINDSPORE_BUGS", "reference", "seeded", "tensors", "export_onnx"]
