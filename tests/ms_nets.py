"""Small MindSpore networks for the semantics tests (MindSpore compiles from source files)."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.ops import operations as P


class SeedNet(nn.Cell):
    """The Net of the seed example."""

    def __init__(self):
        super(SeedNet, self).__init__()
        self.weight = Parameter(Tensor(np.ones([2, 2]).astype(np.float32)), name="weight")
        self.matmul = P.MatMul()

    def construct(self, x):
        out = self.matmul(x, self.weight)
        return out


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


class Embed(nn.Cell):
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
