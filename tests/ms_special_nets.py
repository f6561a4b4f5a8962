"""MindSpore cells that MindSpore differentiates specially (MindSpore compiles cells from source files)."""

from __future__ import annotations

import numpy as np

import mindspore as ms
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
