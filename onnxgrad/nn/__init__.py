"""Losses and loss cells over ONNX graphs, named as in MindSpore's ``mindspore.nn``.

Each loss takes MindSpore 2.10's constructor arguments, with its defaults, and
returns MindSpore's forward values and gradients, the labels' included.
"""

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

# Re-exported names report their public home (repr, help(), documentation), as numpy's set_module does.
for _obj in map(globals().get, __all__):
    if getattr(_obj, "__module__", "").startswith(__name__ + "._"):
        _obj.__module__ = __name__
del _obj
