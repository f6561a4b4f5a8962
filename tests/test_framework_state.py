"""Non-trainable framework state (BatchNorm statistics, frozen weights) is read
at call time, like the parameters: an update is seen without a re-export."""

from __future__ import annotations

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import Tensor, nn  # noqa: E402

import onnxgrad  # noqa: E402
from _support.tolerances import tolerance  # noqa: E402
from _support.treecompare import assert_trees_close  # noqa: E402

ms.set_context(mode=ms.PYNATIVE_MODE)
TOLERANCE = tolerance("mindspore").kwargs()


def test_mindspore_batchnorm_statistics_and_same_padding(monkeypatch):
    # Conv2d's default pad_mode 'same' exports auto_pad=SAME_UPPER, whose gradient
    # ORT's ConvGrad gets wrong unless onnxgrad makes the pads explicit.
    net = nn.SequentialCell([nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU()])
    net.set_train(False)
    x = Tensor(np.random.default_rng(0).normal(size=(2, 2, 5, 5)).astype(np.float32))
    weights = ms.ParameterTuple(net.trainable_params())
    ours = onnxgrad.ForwardValueAndGrad(net, weights, get_all=True, get_by_list=True)
    theirs = nn.ForwardValueAndGrad(net, weights, get_all=True, get_by_list=True)
    from onnxgrad.converters import mindspore as converter

    exports = []
    real = converter.to_onnx
    monkeypatch.setattr(converter, "to_onnx", lambda *a: exports.append(1) or real(*a))
    assert_trees_close(ours(x), theirs(x), **TOLERANCE)

    net[1].moving_mean.set_data(Tensor(np.array([0.7, -0.3, 0.2], np.float32)))
    net[1].moving_variance.set_data(Tensor(np.array([2.0, 0.5, 1.5], np.float32)))
    assert_trees_close(ours(x), theirs(x), **TOLERANCE)
    assert len(exports) == 1


def test_mindspore_cells_in_training_mode_are_refused():
    net = nn.SequentialCell([nn.Dense(3, 4), nn.BatchNorm1d(4)])
    net.set_train(True)
    x = Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(onnxgrad.ConversionError, match=r"training mode.*set_train\(False\)"):
        onnxgrad.ForwardValueAndGrad(net)(x)
    net.set_train(False)
    value, grad = onnxgrad.ForwardValueAndGrad(net)(x)
    assert grad.shape == (2, 3)
