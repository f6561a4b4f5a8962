"""Losses by name, for configurations and the command line (``onnxgrad grad --loss``, ``onnxgrad train``).

Short names for the losses that have one, and every :class:`LossFn` subclass that :mod:`onnxgrad.nn`
exports by its class name.
"""

from __future__ import annotations

from typing import Any

from onnxgrad.errors import InputError
from onnxgrad.nn._loss import LossFn

__all__ = ["loss_names", "make_loss"]

# Short names: (class in onnxgrad.nn, keyword arguments); each class exists (a test checks).
_LOSS_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "sparse_softmax_ce": ("SoftmaxCrossEntropyWithLogits", {"sparse": True}),
    "softmax_ce": ("SoftmaxCrossEntropyWithLogits", {"sparse": False}),
    "cross_entropy": ("CrossEntropyLoss", {}),
    "nll": ("NLLLoss", {}),
    "mse": ("MSELoss", {}),
    "l1": ("L1Loss", {}),
    "smooth_l1": ("SmoothL1Loss", {}),
    "huber": ("HuberLoss", {}),
    "bce_with_logits": ("BCEWithLogitsLoss", {}),
}


def _loss_classes() -> dict[str, type[LossFn]]:
    """The LossFn subclasses ``onnxgrad.nn`` exports, by class name."""
    from onnxgrad import nn  # the package's exports, complete once it is imported

    classes = {}
    for cls_name in nn.__all__:
        cls = getattr(nn, cls_name, None)
        if isinstance(cls, type) and issubclass(cls, LossFn) and cls is not LossFn:
            classes[cls_name] = cls
    return classes


def loss_names() -> dict[str, str]:
    """The names :func:`make_loss` offers: ``{name: what it builds}``.

    Short names for the losses that have one, class names for the others;
    :func:`make_loss` also takes every class name.

    Example:
        >>> onnxgrad.nn.loss_names()["mse"]
        'nn.MSELoss()'
    """
    classes = _loss_classes()
    names = {}
    for alias, (cls_name, kwargs) in _LOSS_ALIASES.items():
        if cls_name in classes:
            args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            names[alias] = f"nn.{cls_name}({args})"
    covered = {cls_name for cls_name, _ in _LOSS_ALIASES.values()}
    for cls_name in classes:
        if cls_name not in covered:
            names[cls_name] = f"nn.{cls_name}()"
    return names


def make_loss(name: str, reduction: str = "mean") -> LossFn:
    """The loss called ``name`` with this reduction.

    Args:
        name: a name from :func:`loss_names`, or the name of a loss class of :mod:`onnxgrad.nn`.
        reduction: ``mean``, ``sum`` or ``none``.

    Returns:
        A new loss.

    Raises:
        InputError: an unknown name or reduction.

    Example:
        >>> type(onnxgrad.nn.make_loss("sparse_softmax_ce", reduction="sum")).__name__
        'SoftmaxCrossEntropyWithLogits'
    """
    classes = _loss_classes()
    if name in _LOSS_ALIASES and _LOSS_ALIASES[name][0] in classes:
        cls_name, kwargs = _LOSS_ALIASES[name]
    elif name in classes:
        cls_name, kwargs = name, {}
    else:
        raise InputError(f"Unknown loss {name!r}: choose one of {sorted(loss_names())} (or a loss class name).")
    return classes[cls_name](reduction=reduction, **kwargs)
