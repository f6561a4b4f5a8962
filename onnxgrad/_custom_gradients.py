"""Gradients onnxgrad defines itself, as data.

An op whose gradient onnxruntime-training lacks (or gets differently from
MindSpore) is written as a model-local ONNX function in the :data:`DOMAIN`
domain, and its gradient as a list of :class:`GradNode` here. The gradient
module hands these to ``register_gradient_definition`` before building; this
module never touches onnxruntime.

In a gradient definition, ``I(k)``/``O(k)`` name the op's k-th input/output,
``GO(k)`` the incoming gradient of output k, and ``GI(k)`` the gradient to
produce for input k. ORT applies no attributes of the forward node to the
gradient, and the first registration of a key wins for the whole process, so
a key must always mean one fixed definition.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["DOMAIN", "GradNode", "CustomGradient", "register", "all_gradients", "stop_edges"]

#: Domain of onnxgrad's model-local functions.
DOMAIN = "onnxgrad"


@dataclasses.dataclass(frozen=True)
class GradNode:
    """One node of a gradient definition.

    Attributes:
        op_type: the ONNX op.
        inputs: input names, using ``I(k)``, ``O(k)``, ``GO(k)`` placeholders or
            names produced by earlier nodes of the definition.
        outputs: output names (``GI(k)`` for input gradients).
        attributes: ``{name: value}``; ints, floats, strings, or lists of ints.
        domain: the op's domain.
    """

    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)
    domain: str = ""


@dataclasses.dataclass(frozen=True)
class CustomGradient:
    """The gradient of one function op in :data:`DOMAIN`.

    Attributes:
        op_type: the function's name (or a standard op's).
        nodes: the gradient definition.
        stop_inputs: input indices that get no gradient; preparation never
            differentiates through them, so the definition need not produce them.
        domain: :data:`DOMAIN`, or ``""`` for a standard op that ORT has no
            gradient for (an attribute-free definition only).
    """

    op_type: str
    nodes: tuple[GradNode, ...]
    stop_inputs: frozenset[int] = frozenset()
    domain: str = DOMAIN

    @property
    def key(self) -> str:
        """The registry key ORT looks the op up by."""
        return f"{self.domain}::{self.op_type}"


_REGISTRY: dict[str, CustomGradient] = {}


def register(gradient: CustomGradient) -> CustomGradient:
    """Adds a definition; the same op may not be defined twice differently."""
    existing = _REGISTRY.get(gradient.key)
    if existing is not None and existing != gradient:
        raise ValueError(f"custom gradient for {gradient.key!r} registered twice with different definitions")
    _REGISTRY[gradient.key] = gradient
    return gradient


def all_gradients() -> tuple[CustomGradient, ...]:
    """Every definition registered so far."""
    return tuple(_REGISTRY.values())


def stop_edges(op_type: str) -> frozenset[int]:
    """Input indices of an onnxgrad function op that get no gradient."""
    gradient = _REGISTRY.get(f"{DOMAIN}::{op_type}")
    return gradient.stop_inputs if gradient else frozenset()
