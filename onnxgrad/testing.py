"""Finite-difference gradient checks, in the style of JAX's ``check_grads``.

:func:`check_grads` compares the gradients onnxgrad computes with central
differences of the scalar ``f = sum_k sum(output_k * sens_k)``, for every float
input and every weight of a network. Tolerances and step sizes per dtype are
data: :data:`TOLERANCES`.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from onnxgrad import _api, _engine
from onnxgrad._api import ForwardValueAndGrad
from onnxgrad._network import Network, Parameter

__all__ = ["Tolerance", "TOLERANCES", "check_grads"]

#: How many of the worst mismatching elements a failure lists.
_MAX_REPORTED = 5


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Finite-difference settings for one dtype.

    Attributes:
        eps: the step ``h`` of the central differences.
        rtol: relative tolerance, against the numeric gradient.
        atol: absolute tolerance.
        points: 2 for ``(f(x+h) - f(x-h)) / 2h``, 4 for
            ``(-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)) / 12h``, whose smaller
            truncation error allows the larger steps low precision needs.
    """

    eps: float
    rtol: float
    atol: float
    points: int = 2


#: Settings by dtype: a tensor is checked with the entry of the least precise
#: of its own dtype and the outputs' float dtypes. float32 and float16 outputs
#: carry rounding errors of about 1e-7 and 1e-3 relative, so they take larger
#: steps with the 4-point stencil; float64 takes the classic 2-point one. The
#: float32 step is a compromise: 1e-2 halves the rounding noise of 3e-3 but
#: crosses more kinks (Relu, MaxPool) of real networks.
TOLERANCES: Mapping[np.dtype, Tolerance] = types.MappingProxyType(
    {
        np.dtype(np.float64): Tolerance(eps=1e-6, rtol=1e-5, atol=1e-7, points=2),
        np.dtype(np.float32): Tolerance(eps=3e-3, rtol=2e-2, atol=2e-3, points=4),
        np.dtype(np.float16): Tolerance(eps=1e-1, rtol=1e-1, atol=5e-2, points=4),
    }
)

# (offset in steps, weight) pairs; the sum is divided by h * divisor.
_STENCILS = {
    2: (((1, 1.0), (-1, -1.0)), 2.0),
    4: (((2, -1.0), (1, 8.0), (-1, -8.0), (-2, 1.0)), 12.0),
}


@dataclasses.dataclass
class _Mismatch:
    tensor: str
    index: tuple[int, ...]
    analytic: float
    numeric: float
    tolerance: Tolerance

    @property
    def excess(self) -> float:
        """How many tolerances apart the two values are (inf for NaN)."""
        allowed = self.tolerance.atol + self.tolerance.rtol * abs(self.numeric)
        excess = abs(self.analytic - self.numeric) / allowed
        return float("inf") if np.isnan(excess) else excess

    def __str__(self) -> str:
        index = ", ".join(str(i) for i in self.index)
        return (
            f"grad[{self.tensor}][{index}]: analytic {self.analytic:.6g}, numeric {self.numeric:.6g} "
            f"(rtol {self.tolerance.rtol:g}, atol {self.tolerance.atol:g})"
        )


def check_grads(
    network: Any,
    args: Sequence[Any],
    weights: Any = None,
    *,
    sens: Any = None,
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    max_elements: int = 48,
) -> None:
    """Checks a network's input and weight gradients against central differences.

    The checked scalar is ``f = sum_k sum(output_k * sens_k)`` over the float
    outputs. The analytic gradients come from ``ForwardValueAndGrad(network,
    weights, get_all=True, get_by_list=True, sens_param=True)``; the numeric ones
    perturb one element at a time of every float input (in a copy) and every
    weight (in place in ``param.value``, restored exactly afterwards). Int inputs
    are not perturbed; their gradients are only checked for shape and dtype.

    Args:
        network: anything :class:`~onnxgrad.ForwardValueAndGrad` takes. A
            framework object is checked through the network it exports for
            these arguments.
        args: the network inputs (numpy arrays).
        weights: the weights to check: Parameters or initializer names (a
            single one, or a sequence). Default: every trainable parameter.
        sens: the output sensitivities: an array for one output, a tuple with
            one array per output otherwise. Default: seeded standard normal
            arrays shaped and typed like the outputs (zeros for int outputs).
        eps: the finite-difference step for every dtype (default: per dtype,
            from :data:`TOLERANCES`).
        rtol: relative tolerance for every dtype (default: per dtype).
        atol: absolute tolerance for every dtype (default: per dtype).
        seed: seeds the sensitivities and the sampled elements.
        max_elements: tensors with more elements are checked on a seeded
            random subset of this many elements.

    Raises:
        AssertionError: a gradient has the wrong shape or dtype, or differs from
            the numeric one; the message names the tensor and lists the worst
            elements, e.g. ``grad[fc1.weight][3, 2]: analytic 0.5, numeric 0.25
            (rtol 0.02, atol 0.002)``.
        TypeError: ``args`` hold a float dtype with no entry in :data:`TOLERANCES`.

    Example:
        >>> from onnxgrad.testing import check_grads
        >>> net = onnxgrad.load("models/seed_net.onnx")
        >>> check_grads(net, [np.ones([3, 2], np.float32)])
    """
    network, arrays, weight_names = _bind(network, args, weights)
    rng = np.random.default_rng(seed)
    outputs = _as_tuple(network(*arrays))
    sens_arrays = _default_sens(outputs, rng) if sens is None else [np.asarray(s) for s in _as_tuple(sens)]
    sens_arg = sens_arrays[0] if len(sens_arrays) == 1 else tuple(sens_arrays)

    fvg = ForwardValueAndGrad(network, weight_names, get_all=True, get_by_list=True, sens_param=True)
    _, (input_grads, weight_grads) = fvg(*arrays, sens_arg)

    def f() -> float:
        values = _as_tuple(network(*arrays))
        return sum(
            float(np.sum(v.astype(np.float64) * s.astype(np.float64)))
            for v, s in zip(values, sens_arrays)
            if v.dtype.kind == "f"
        )

    overrides = {"eps": eps, "rtol": rtol, "atol": atol}
    output_dtypes = [v.dtype for v in outputs if v.dtype.kind == "f"]
    params = network.parameters_dict()
    tensors = [(info.name, array, grad) for info, array, grad in zip(network.inputs, arrays, input_grads)]
    tensors += [(name, params[name].value, grad) for name, grad in zip(weight_names, weight_grads)]
    for name, x, grad in tensors:  # shapes and dtypes first: values of a misshapen gradient mean nothing
        _check_like(name, grad, x)
    mismatches: list[_Mismatch] = []
    for name, x, grad in tensors:
        if x.dtype.kind == "f":
            tolerance = _tolerance([x.dtype, *output_dtypes], overrides)
            mismatches += _compare(name, x, grad, f, tolerance, rng, max_elements)
    if mismatches:
        raise AssertionError(_report(mismatches))


def _bind(network: Any, args: Sequence[Any], weights: Any) -> tuple[Network, list[np.ndarray], list[str]]:
    """The Network to check, private copies of the arguments, and the weight names."""
    target = _api._resolve(network)
    if isinstance(target, Network):
        network = target
        _, checked = _engine.check_arguments(network, args)
        # The checked arrays' dtypes, the arguments' own shapes (a 0-d argument stays 0-d).
        arrays = [np.asarray(arg, dtype=array.dtype) for arg, array in zip(args, checked)]
    else:  # a framework object: check the network it exports for these arguments
        network, arrays, mapping = target.bind(args)
        if weights is not None:
            weights = [mapping[n] for n in target.frontend.weight_names(weights) if n in mapping]
    if weights is None:
        weights = network.trainable_params()
    elif isinstance(weights, (str, Parameter)):
        weights = [weights]
    names = [w.name if isinstance(w, Parameter) else w for w in weights]
    arrays = [np.array(a, copy=True, order="C") for a in arrays]  # perturbed in place
    return network, arrays, names


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _default_sens(outputs: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    sens = []
    for value in outputs:
        if value.dtype.kind == "f":
            sens.append(rng.standard_normal(value.shape).astype(value.dtype))
        else:  # int and bool outputs carry no gradient
            sens.append(np.zeros(value.shape, value.dtype))
    return sens


def _tolerance(dtypes: Sequence[np.dtype], overrides: dict[str, float | None]) -> Tolerance:
    """Settings for the least precise of the perturbed tensor's and the outputs' dtypes."""
    for dtype in dtypes:
        if np.dtype(dtype) not in TOLERANCES:
            raise TypeError(f"check_grads has no tolerances for {dtype}; known: {[str(d) for d in TOLERANCES]}.")
    coarsest = max(dtypes, key=lambda d: np.finfo(d).eps)
    base = TOLERANCES[np.dtype(coarsest)]
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def _check_like(name: str, grad: Any, like: np.ndarray) -> None:
    if not isinstance(grad, np.ndarray) or grad.shape != like.shape or grad.dtype != like.dtype:
        got = (
            f"shape {list(grad.shape)}, dtype {grad.dtype}" if isinstance(grad, np.ndarray) else type(grad).__name__
        )
        raise AssertionError(
            f"grad[{name}] must have shape {list(like.shape)} and dtype {like.dtype} (the tensor's), got {got}."
        )


def _compare(
    name: str,
    x: np.ndarray,
    grad: np.ndarray,
    f: Callable[[], float],
    tolerance: Tolerance,
    rng: np.random.Generator,
    max_elements: int,
) -> list[_Mismatch]:
    """Perturbs elements of ``x`` in place (restoring each) and returns the mismatching ones."""
    if x.size > max_elements:
        flat_indices = np.sort(rng.choice(x.size, size=max_elements, replace=False))
    else:
        flat_indices = np.arange(x.size)
    offsets, divisor = _STENCILS[tolerance.points]
    flat = x.reshape(-1)  # a view: x is C-contiguous
    mismatches = []
    for i in flat_indices:
        original = flat[i].copy()
        total = 0.0
        try:
            for steps, weight in offsets:
                flat[i] = original + x.dtype.type(steps * tolerance.eps)
                total += weight * f()
        finally:
            flat[i] = original
        numeric = total / (divisor * tolerance.eps)
        index = tuple(int(k) for k in np.unravel_index(i, x.shape))
        analytic = float(grad[index])
        if not abs(analytic - numeric) <= tolerance.atol + tolerance.rtol * abs(numeric):
            mismatches.append(_Mismatch(name, index, analytic, numeric, tolerance))
    return mismatches


def _report(mismatches: list[_Mismatch]) -> str:
    counts: dict[str, int] = {}
    for m in mismatches:
        counts[m.tensor] = counts.get(m.tensor, 0) + 1
    summary = ", ".join(f"{n} element(s) of grad[{name}]" for name, n in counts.items())
    worst = sorted(mismatches, key=lambda m: m.excess, reverse=True)[:_MAX_REPORTED]
    lines = "\n".join(f"  {m}" for m in worst)
    return f"Gradients differ from central differences: {summary}. Worst:\n{lines}"
