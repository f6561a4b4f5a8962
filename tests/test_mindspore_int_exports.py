"""MindSpore 2.10's two invalid int exports, found at conversion: an int32 ReduceSum declared int64
(repaired: summed in int64, as MindSpore does) and int true division written as an int Div under a
float output (refused naming the node). Both compared with MindSpore itself."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

ms = pytest.importorskip("mindspore")

from mindspore import Tensor, nn, ops  # noqa: E402

import onnxgrad  # noqa: E402
from onnxgrad.converters import mindspore as converter  # noqa: E402

X = np.array([1, -2, 3], np.int32)


class SquareSum(nn.Cell):
    """``sum(x * x)`` of int32: MindSpore sums into int64."""

    def construct(self, x):
        return (x * x).sum()


class SquareSumTimesWeight(nn.Cell):
    """The int64 sum cast into float math with a weight."""

    def __init__(self):
        super().__init__()
        self.w = ms.Parameter(Tensor(np.array([0.5, -1.5], np.float32)), name="w")

    def construct(self, x):
        return ops.cast((x * x).sum(), ms.float32) * self.w


class TrueDivision(nn.Cell):
    """Int true division: float32 values (and a float32 gradient) in MindSpore."""

    def construct(self, x):
        return x / 2


def test_an_int32_sum_declared_int64_is_summed_in_int64():
    model = converter.to_onnx(SquareSum(), X)
    onnx.checker.check_model(model, full_check=True)  # the export as MindSpore writes it fails this
    [reduce] = [node for node in model.graph.node if node.op_type == "ReduceSum"]
    cast = next(node for node in model.graph.node if reduce.input[0] in node.output)
    assert cast.op_type == "Cast" and cast.attribute[0].i == onnx.TensorProto.INT64


@pytest.mark.parametrize(("cell", "flags"), [
    (SquareSum, {"get_all": True}),
    (SquareSumTimesWeight, {"get_all": True}),
])
def test_the_repaired_sum_gives_mindspores_values_and_gradients(cell, flags):
    net = cell()
    weights = net.trainable_params() or None
    x = np.array([40000, -2, 3], np.int32)  # 40000**2 wraps in int32, as in MindSpore; the sum does not
    expected = nn.ForwardValueAndGrad(net, weights, get_by_list=bool(weights), **flags)(Tensor(x))
    actual = onnxgrad.ForwardValueAndGrad(net, weights, get_by_list=bool(weights), **flags)(Tensor(x))
    flat_expected, flat_actual = _flatten(expected), _flatten(actual)
    assert len(flat_actual) == len(flat_expected)
    for got, want in zip(flat_actual, flat_expected):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-6)


def test_int_true_division_is_refused_at_conversion_naming_the_node():
    assert nn.ForwardValueAndGrad(TrueDivision())(Tensor(X))[1].dtype == ms.float32
    with pytest.raises(onnxgrad.ConversionError, match=r"declares output '.*' as float32, but its Div node '.*' "
                       r"computes int64.*ops.cast\(x, mindspore.float32\) / 2"):
        converter.to_onnx(TrueDivision(), X)


def _flatten(tree):
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in _flatten(item)]
    return [tree]
