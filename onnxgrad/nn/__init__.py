"""Losses and loss cells over ONNX graphs, named as in MindSpore's ``mindspore.nn``."""

from onnxgrad.nn._loss import LossFn, WithLossCell, attach_loss
from onnxgrad.nn._softmax_ce import SoftmaxCrossEntropyWithLogits

__all__ = [
    # cells
    "WithLossCell",
    "attach_loss",
    # losses
    "LossFn",
    "SoftmaxCrossEntropyWithLogits",
]
