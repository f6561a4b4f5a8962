"""The loss cases shared by the loss tests and the MindSpore parity suite.

Each case names a loss class and its keyword arguments; both onnxgrad's and
MindSpore's class are built from the same names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from _support.tolerances import Tolerance, tolerance

REDUCTIONS = ("none", "mean", "sum")
WEIGHT = np.array([0.5, 2.0, 1.5], np.float32)  # per class
POS_WEIGHT = np.array([1.0, 3.0, 0.25], np.float32)


@dataclasses.dataclass(frozen=True)
class Case:
    """One loss configuration.

    Attributes:
        loss: the class name, the same in ``onnxgrad.nn`` and ``mindspore.nn``.
        kwargs: constructor arguments besides ``reduction`` (arrays become
            MindSpore Tensors for MindSpore).
        labels: ``'regression'`` (any float), ``'binary'`` (in [0, 1]),
            ``'probabilities'`` (in [0, 1], rows not normalised) or ``'indices'`` (int32 classes).
        logits: the logits' shape; classes on axis 1 (axis 0 for 1-D), or on the
            last axis for SoftmaxCrossEntropyWithLogits.
        true_gradient: whether MindSpore's gradient is the true gradient of its
            forward value (finite differences apply).
        tolerance: onnxgrad vs MindSpore.
    """

    loss: str
    kwargs: dict[str, Any]
    labels: str
    logits: tuple[int, ...] = (4, 3)
    true_gradient: bool = True
    tolerance: Tolerance = tolerance("mindspore")


WEIGHTED_CE = {"weight": WEIGHT, "ignore_index": 1, "label_smoothing": 0.1}
CASES = {
    "mse": Case("MSELoss", {}, "regression"),
    "l1": Case("L1Loss", {}, "regression"),
    "smooth_l1": Case("SmoothL1Loss", {"beta": 0.5}, "regression"),
    "huber": Case("HuberLoss", {"delta": 0.7}, "regression"),
    "bce_with_logits": Case("BCEWithLogitsLoss", {}, "binary"),
    "bce_with_logits_weighted": Case("BCEWithLogitsLoss", {"weight": WEIGHT, "pos_weight": POS_WEIGHT}, "binary"),
    # MindSpore back-propagates softmax - labels, not the true gradient, for rows not summing to 1,
    # and gives the labels a zero gradient.
    "softmax_ce_dense": Case("SoftmaxCrossEntropyWithLogits", {"sparse": False}, "probabilities", true_gradient=False),
    "softmax_ce_sparse": Case("SoftmaxCrossEntropyWithLogits", {"sparse": True}, "indices"),
    "cross_entropy": Case("CrossEntropyLoss", {}, "indices"),
    "cross_entropy_weighted": Case("CrossEntropyLoss", WEIGHTED_CE, "indices"),
    "cross_entropy_1d": Case("CrossEntropyLoss", {"weight": WEIGHT, "label_smoothing": 0.3}, "indices", (3,)),
    "cross_entropy_4d": Case("CrossEntropyLoss", WEIGHTED_CE, "indices", (2, 3, 2, 2)),
    "cross_entropy_probabilities": Case("CrossEntropyLoss", {}, "probabilities"),
    "cross_entropy_probabilities_weighted": Case(
        "CrossEntropyLoss", {"weight": WEIGHT, "label_smoothing": 0.2}, "probabilities"
    ),
    "cross_entropy_probabilities_4d": Case(
        "CrossEntropyLoss", {"weight": WEIGHT, "label_smoothing": 0.2}, "probabilities", (2, 3, 2, 2)
    ),
    "nll": Case("NLLLoss", {}, "indices"),
    "nll_weighted": Case("NLLLoss", {"weight": WEIGHT, "ignore_index": 1}, "indices"),
    "nll_3d": Case("NLLLoss", {"weight": WEIGHT, "ignore_index": 2}, "indices", (2, 3, 4)),
}


def _class_axis(case: Case) -> int:
    if case.loss == "SoftmaxCrossEntropyWithLogits" or len(case.logits) == 1:
        return len(case.logits) - 1
    return 1


def make_labels(case: Case, rng: np.random.Generator) -> np.ndarray:
    """Labels for the case's logits; class indices cover every class."""
    if case.labels == "indices":
        shape = tuple(d for axis, d in enumerate(case.logits) if axis != _class_axis(case))
        classes = case.logits[_class_axis(case)]
        size = int(np.prod(shape))
        return rng.permutation(np.arange(size) % classes).reshape(shape).astype(np.int32)
    if case.labels == "regression":
        return rng.normal(size=case.logits).astype(np.float32)
    return rng.uniform(size=case.logits).astype(np.float32)
