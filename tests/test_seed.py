"""The seed example of ForwardValueAndGrad.txt, on the ONNX graph of its Net."""

from __future__ import annotations

import pathlib

import numpy as np

import onnxgrad
from _support.treecompare import assert_trees_close
from onnxgrad import nn

MODELS = pathlib.Path(__file__).resolve().parents[1] / "models"


def test_seed_example_matches_mindspores_printed_result():
    net = onnxgrad.load(MODELS / "seed_net.onnx")
    criterion = nn.SoftmaxCrossEntropyWithLogits()
    net_with_criterion = nn.WithLossCell(net, criterion)
    weight = onnxgrad.ParameterTuple(net.trainable_params())
    train_network = onnxgrad.ForwardValueAndGrad(net_with_criterion, weights=weight, get_all=True, get_by_list=True)
    inputs = np.ones([1, 2]).astype(np.float32)
    labels = np.zeros([1, 2]).astype(np.float32)

    result = train_network(inputs, labels)

    expected = (
        np.array([0.0], np.float32),
        (
            (np.array([[1.0, 1.0]], np.float32), np.array([[0.0, 0.0]], np.float32)),
            (np.array([[0.5, 0.5], [0.5, 0.5]], np.float32),),
        ),
    )
    assert_trees_close(result, expected, rtol=0, atol=1e-7)


def test_seed_model_is_the_seed_net():
    net = onnxgrad.load(MODELS / "seed_net.onnx")
    [weight] = net.trainable_params()
    assert weight.name == "weight"
    np.testing.assert_array_equal(weight.value, np.ones([2, 2], np.float32))
    np.testing.assert_array_equal(net(np.array([[1.0, 2.0]], np.float32)), [[3.0, 3.0]])
