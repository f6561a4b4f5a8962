"""Losses and loss cells over ONNX graphs, named as in MindSpore's ``mindspore.nn``.

Each loss takes MindSpore 2.10's constructor arguments, with its defaults, and
returns MindSpore's forward values and gradients, the labels' included.
"""

from onnxgrad._public import claim_exports as _claim_exports
from onnxgrad.nn._bce import BCEWithLogitsLoss
from onnxgrad.nn._cross_entropy import CrossEntropyLoss, NLLLoss
from onnxgrad.nn._loss import LossFn, WithLossCell, attach_loss
from onnxgrad.nn._registry import loss_names, make_loss
from onnxgrad.nn._regression import HuberLoss, L1Loss, MSELoss, SmoothL1Loss
from onnxgrad.nn._softmax_ce import SoftmaxCrossEntropyWithLogits

__all__ = [
    # cells
    "WithLossCell",
    "attach_loss",
    # losses
    "LossFn",
    "SoftmaxCrossEntropyWithLogits",
    "CrossEntropyLoss",
    "NLLLoss",
    "MSELoss",
    "L1Loss",
    "SmoothL1Loss",
    "HuberLoss",
    "BCEWithLogitsLoss",
    # losses by name
    "make_loss",
    "loss_names",
]

_claim_exports(globals())
