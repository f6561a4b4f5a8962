"""Gradients of standard ops that onnxruntime-training has none for, as attribute-free definitions.

Each is registered under the op's default-domain key (``"::Asin"``), which the
builder consults for ops without a built-in gradient, so the forward node stays
as the model has it. Definitions see no attributes, so only ops whose gradient
needs none are here: the elementwise trigonometric and hyperbolic family, and
the piecewise-constant rounding ops, whose gradient is zero (as in MindSpore
and PyTorch).
"""

from __future__ import annotations

from onnxgrad._custom_gradients import CustomGradient, GradNode, register

__all__ = ["GRADIENTS"]


def _one(name: str = "one") -> tuple[GradNode, ...]:
    """Ones shaped and typed like the input, as ``name``: cos(0) is exactly 1. (The builder's
    definitions cannot hold a Constant: it fails on the attribute.)"""
    return (
        GradNode("Shape", ("I(0)",), (f"{name}_shape",)),
        GradNode("ConstantOfShape", (f"{name}_shape",), (f"{name}_zeros",)),
        GradNode("Cos", (f"{name}_zeros",), (f"{name}_f",)),
        GradNode("CastLike", (f"{name}_f", "I(0)"), (name,)),
    )


_SQUARE = GradNode("Mul", ("I(0)", "I(0)"), ("square",))


def _over(denominator: tuple[GradNode, ...], negate: bool = False) -> tuple[GradNode, ...]:
    """``GI(0) = ±GO(0) / d``, ``d`` computed by ``denominator`` into ``d``."""
    if negate:
        return (*denominator, GradNode("Div", ("GO(0)", "d"), ("q",)), GradNode("Neg", ("q",), ("GI(0)",)))
    return (*denominator, GradNode("Div", ("GO(0)", "d"), ("GI(0)",)))


_ZERO = (  # a zero gradient shaped and typed like the input's
    GradNode("Shape", ("I(0)",), ("shape",)),
    GradNode("ConstantOfShape", ("shape",), ("zeros_f",)),
    GradNode("CastLike", ("zeros_f", "I(0)"), ("GI(0)",)),
)

_DEFINITIONS: dict[str, tuple[GradNode, ...]] = {
    "Sinh": (GradNode("Cosh", ("I(0)",), ("c",)), GradNode("Mul", ("GO(0)", "c"), ("GI(0)",))),
    "Cosh": (GradNode("Sinh", ("I(0)",), ("s",)), GradNode("Mul", ("GO(0)", "s"), ("GI(0)",))),
    # d tan = 1 + tan^2
    "Tan": (*_one(), GradNode("Mul", ("O(0)", "O(0)"), ("t2",)), GradNode("Add", ("one", "t2"), ("d",)),
            GradNode("Mul", ("GO(0)", "d"), ("GI(0)",))),
    "Asin": _over((*_one(), _SQUARE, GradNode("Sub", ("one", "square"), ("r",)), GradNode("Sqrt", ("r",), ("d",)))),
    "Acos": _over((*_one(), _SQUARE, GradNode("Sub", ("one", "square"), ("r",)), GradNode("Sqrt", ("r",), ("d",))),
                  negate=True),
    "Atan": _over((*_one(), _SQUARE, GradNode("Add", ("one", "square"), ("d",)))),
    "Asinh": _over((*_one(), _SQUARE, GradNode("Add", ("square", "one"), ("r",)), GradNode("Sqrt", ("r",), ("d",)))),
    "Acosh": _over((*_one(), _SQUARE, GradNode("Sub", ("square", "one"), ("r",)), GradNode("Sqrt", ("r",), ("d",)))),
    "Atanh": _over((*_one(), _SQUARE, GradNode("Sub", ("one", "square"), ("d",)))),
    "Floor": _ZERO,
    "Ceil": _ZERO,
    "Round": _ZERO,
    "Sign": _ZERO,
}

#: The registered definitions, by op.
GRADIENTS = {op: register(CustomGradient(op, nodes, domain="")) for op, nodes in _DEFINITIONS.items()}
