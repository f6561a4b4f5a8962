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

__all__ = ["GRADIENTS", "FUNCTION_GRADIENTS", "ones_like"]


def ones_like(name: str = "one", like: str = "I(0)") -> tuple[GradNode, ...]:
    """Definition nodes making ``name``: ones shaped and typed like ``like``; cos(0) is exactly 1.
    (The builder's definitions cannot hold a Constant: it fails on the attribute.)"""
    return (
        GradNode("Shape", (like,), (f"{name}_shape",)),
        GradNode("ConstantOfShape", (f"{name}_shape",), (f"{name}_zeros",)),
        GradNode("Cos", (f"{name}_zeros",), (f"{name}_f",)),
        GradNode("CastLike", (f"{name}_f", like), (name,)),
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
    "Tan": (*ones_like(), GradNode("Mul", ("O(0)", "O(0)"), ("t2",)), GradNode("Add", ("one", "t2"), ("d",)),
            GradNode("Mul", ("GO(0)", "d"), ("GI(0)",))),
    "Asin": _over((*ones_like(), _SQUARE, GradNode("Sub", ("one", "square"), ("r",)), GradNode("Sqrt", ("r",), ("d",)))),
    "Acos": _over((*ones_like(), _SQUARE, GradNode("Sub", ("one", "square"), ("r",)), GradNode("Sqrt", ("r",), ("d",))),
                  negate=True),
    "Atan": _over((*ones_like(), _SQUARE, GradNode("Add", ("one", "square"), ("d",)))),
    "Asinh": _over((*ones_like(), _SQUARE, GradNode("Add", ("square", "one"), ("r",)), GradNode("Sqrt", ("r",), ("d",)))),
    "Acosh": _over((*ones_like(), _SQUARE, GradNode("Sub", ("square", "one"), ("r",)), GradNode("Sqrt", ("r",), ("d",)))),
    "Atanh": _over((*ones_like(), _SQUARE, GradNode("Sub", ("one", "square"), ("d",)))),
    "Floor": _ZERO,
    "Ceil": _ZERO,
    "Round": _ZERO,
    "Sign": _ZERO,
}

#: The registered definitions, by op.
GRADIENTS = {op: register(CustomGradient(op, nodes, domain="")) for op, nodes in _DEFINITIONS.items()}


# onnxgrad functions the rewrites (``_rewrites``) put in place of ops whose gradient needs an
# attribute: one function per attribute value, its gradient fixed with it.
_FUNCTIONS: dict[str, tuple[tuple[GradNode, ...], frozenset[int]]] = {
    # The cumulative sum's gradient is the cumulative sum of dY the other way.
    **{
        f"CumSum_e{e}_r{r}": (
            (GradNode("CumSum", ("GO(0)", "I(1)"), ("GI(0)",), {"exclusive": e, "reverse": 1 - r}),),
            frozenset({1}),
        )
        for e in (0, 1) for r in (0, 1)
    },
    # fmod(a, b) = a - b * trunc(a / b): d/da = 1, d/db = -trunc(a / b) (trunc through int64).
    "FMod": (
        (
            GradNode("Identity", ("GO(0)",), ("GI(0)",)),
            GradNode("Div", ("I(0)", "I(1)"), ("q",)),
            GradNode("Cast", ("q",), ("q_int",), {"to": 7}),
            GradNode("CastLike", ("q_int", "I(0)"), ("t",)),
            GradNode("Mul", ("GO(0)", "t"), ("gt",)),
            GradNode("Neg", ("gt",), ("GI(1)",)),
        ),
        frozenset(),
    ),
    # d/da a^b = b * a^(b - 1); d/db a^b = a^b * log(a). PowerI: an int exponent, no gradient.
    **{
        name: (
            (
                GradNode("CastLike", ("I(1)", "I(0)"), ("b",)),
                *ones_like(),
                GradNode("Sub", ("b", "one"), ("b_minus_one",)),
                GradNode("Pow", ("I(0)", "b_minus_one"), ("power",)),
                GradNode("Mul", ("b", "power"), ("slope",)),
                GradNode("Mul", ("GO(0)", "slope"), ("GI(0)",)),
                *(
                    (GradNode("Log", ("I(0)",), ("log_a",)), GradNode("Mul", ("O(0)", "log_a"), ("db",)),
                     GradNode("Mul", ("GO(0)", "db"), ("GI(1)",)))
                    if name == "PowerT" else ()
                ),
            ),
            frozenset() if name == "PowerT" else frozenset({1}),
        )
        for name in ("PowerT", "PowerI")
    },
}

#: The registered function gradients, by function name.
FUNCTION_GRADIENTS = {
    name: register(CustomGradient(name, nodes, stop_inputs=stops)) for name, (nodes, stops) in _FUNCTIONS.items()
}
