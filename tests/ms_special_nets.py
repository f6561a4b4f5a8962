"""MindSpore cells that MindSpore differentiates specially (MindSpore compiles cells from source files)."""

from __future__ import annotations

import numpy as np

from mindspore import Parameter, Tensor, nn, ops


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
