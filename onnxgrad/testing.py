"""Finite-difference gradient checks, in the style of JAX's ``check_grads``.

:func:`check_grads` compares the gradients onnxgrad computes with central
differences of the scalar ``f = sum_k sum(output_k * sens_k)``, for every float
input and every weight of a network. Tolerances and step sizes per dtype are
data: :data:`TOLERANCES`.

Two things keep it from failing correct gradients:

- **float64 differences.** A float32 network's differences are taken on a
  float64 copy of its graph (run by ONNX Runtime) where every op has a double
  kernel and the copy reproduces the float32 outputs; otherwise on the network
  itself, with the larger steps float32 rounding needs.
- **Kinks.** An element whose central difference disagrees is re-checked: if
  its one-sided differences disagree at ever smaller steps (a Relu or MaxPool
  kink at the point), it is reported as non-smooth, and passes when the
  analytic value lies between the one-sided ones; if the disagreement vanishes
  at a smaller step (the step crossed a nearby kink), the smaller step decides.
"""

from __future__ import annotations

import dataclasses
import logging
import types
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx

from onnxgrad import _api, _engine
from onnxgrad._api import ForwardValueAndGrad
from onnxgrad._network import Network, Parameter

__all__ = ["Tolerance", "TOLERANCES", "GradCheck", "check_grads"]

logger = logging.getLogger(__name__)

#: How many of the worst mismatching elements a failure lists.
_MAX_REPORTED = 5

#: Step reductions tried on an element whose central difference disagrees.
_RECHECK_SCALES = (0.1, 0.01)


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


@dataclasses.dataclass(frozen=True)
class GradCheck:
    """What :func:`check_grads` checked (it raises when a gradient is wrong).

    Attributes:
        elements: how many elements were compared.
        precision: ``"float64"`` when the differences were taken on a float64
            copy of a float32 network, else the network's own float dtype.
        non_smooth: elements at a kink (one-sided differences disagree), each
            as ``grad[name][i, j]: analytic a, one-sided b / c``; they passed
            because the analytic value lies between the one-sided ones.
    """

    elements: int
    precision: str
    non_smooth: tuple[str, ...]


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
) -> GradCheck:
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
            from :data:`TOLERANCES`; float64's when the differences are taken
            on a float64 copy).
        rtol: relative tolerance for every dtype (default: per dtype).
        atol: absolute tolerance for every dtype (default: per dtype).
        seed: seeds the sensitivities and the sampled elements.
        max_elements: tensors with more elements are checked on a seeded
            random subset of this many elements.

    Returns:
        A :class:`GradCheck`: how many elements were compared, in which
        precision the differences were taken, and the non-smooth elements.

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
        GradCheck(elements=10, precision='float64', non_smooth=())
    """
    network, arrays, weight_names = _bind(network, args, weights)
    rng = np.random.default_rng(seed)
    outputs = _as_tuple(network(*arrays))
    sens_arrays = _default_sens(outputs, rng) if sens is None else [np.asarray(s) for s in _as_tuple(sens)]
    sens_arg = sens_arrays[0] if len(sens_arrays) == 1 else tuple(sens_arrays)

    fvg = ForwardValueAndGrad(network, weight_names, get_all=True, get_by_list=True, sens_param=True)
    _, (input_grads, weight_grads) = fvg(*arrays, sens_arg)

    overrides = {"eps": eps, "rtol": rtol, "atol": atol}
    output_dtypes = [v.dtype for v in outputs if v.dtype.kind == "f"]
    params = network.parameters_dict()
    tensors = [(info.name, array, grad) for info, array, grad in zip(network.inputs, arrays, input_grads)]
    tensors += [(name, params[name].value, grad) for name, grad in zip(weight_names, weight_grads)]
    for name, x, grad in tensors:  # shapes and dtypes first: values of a misshapen gradient mean nothing
        _check_like(name, grad, x)

    # Where the differences are taken: a float64 copy when it reproduces the outputs, else the network.
    copy = _float64_copy(network, arrays, outputs)
    if copy is not None:
        evaluated, eval_arrays, eval_params = copy
        eval_sens = [s.astype(np.float64) for s in sens_arrays]
        precision = "float64"
    else:
        evaluated, eval_arrays, eval_params, eval_sens = network, arrays, params, sens_arrays
        precision = str(max(output_dtypes, key=lambda d: np.finfo(d).eps)) if output_dtypes else "float64"
    eval_tensors = [*eval_arrays[: len(network.inputs)], *(eval_params[name].value for name in weight_names)]

    def f() -> float:
        values = _as_tuple(evaluated(*eval_arrays))
        return sum(
            float(np.sum(v.astype(np.float64) * s.astype(np.float64)))
            for v, s in zip(values, eval_sens)
            if v.dtype.kind == "f"
        )

    f0 = f()
    mismatches: list[_Mismatch] = []
    non_smooth: list[str] = []
    elements = 0
    for (name, x, grad), x_eval in zip(tensors, eval_tensors):
        if x.dtype.kind == "f":
            tolerance = _tolerance([x.dtype, *output_dtypes], overrides)
            if copy is not None and eps is None:  # float64 differences take float64's step
                base = TOLERANCES[np.dtype(np.float64)]
                tolerance = dataclasses.replace(tolerance, eps=base.eps, points=base.points)
            resolution = float(np.finfo(precision).eps)
            found, kinks, count = _compare(name, x_eval, grad, f, f0, tolerance, resolution, rng, max_elements)
            mismatches += found
            non_smooth += kinks
            elements += count
    if non_smooth:
        logger.info("check_grads: %d non-smooth element(s): %s", len(non_smooth), "; ".join(non_smooth))
    if mismatches:
        raise AssertionError(_report(mismatches, precision, len(non_smooth)))
    return GradCheck(elements, precision, tuple(non_smooth))


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


def _retype_graph(graph: onnx.GraphProto) -> None:
    """Every float32 tensor of ``graph`` and its subgraphs becomes float64, in place."""
    float32, float64 = onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE
    for value in [*graph.input, *graph.output]:
        if value.type.tensor_type.elem_type == float32:
            value.type.tensor_type.elem_type = float64
    del graph.value_info[:]  # re-inferred
    for i, init in enumerate(graph.initializer):
        if init.data_type == float32:
            graph.initializer[i].CopyFrom(
                onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init).astype(np.float64), init.name)
            )
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.name in ("to", "dtype") and attribute.type == onnx.AttributeProto.INT:
                if attribute.i == float32:
                    attribute.i = float64
            elif attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == float32:
                value = onnx.numpy_helper.to_array(attribute.t).astype(np.float64)
                attribute.t.CopyFrom(onnx.numpy_helper.from_array(value, attribute.t.name))
            elif attribute.type == onnx.AttributeProto.GRAPH:
                _retype_graph(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    _retype_graph(subgraph)


def _float64_copy(
    network: Network, arrays: Sequence[np.ndarray], outputs: Sequence[np.ndarray]
) -> tuple[Network, list[np.ndarray], dict[str, Parameter]] | None:
    """A float64 copy of a float32 network with float64 copies of the arguments and weights.

    None when the network has no float32 output, the copy does not run (an op
    without a double kernel), or it does not reproduce the float32 outputs
    (a graph whose precision is part of its meaning).
    """
    tensors = [*arrays, *outputs, *(p.value for p in network.trainable_params())]
    kinds = {np.dtype(t.dtype) for t in tensors if t.dtype.kind == "f"}
    if np.dtype(np.float32) not in kinds or not kinds <= {np.dtype(np.float32), np.dtype(np.float64)}:
        return None

    def widened(value: np.ndarray) -> np.ndarray:
        return value.astype(np.float64) if value.dtype == np.float32 else np.array(value, copy=True)

    model = onnx.ModelProto()
    model.CopyFrom(network.model)
    _retype_graph(model.graph)
    params = [Parameter(widened(p.value), p.name) for p in network.trainable_params()]
    buffers = [Parameter(widened(b.value), b.name) for b in network.buffers_dict().values()]
    wide_arrays = [np.ascontiguousarray(widened(a)) for a in arrays]
    try:
        copy = Network(model, params, buffers)
        wide_outputs = _as_tuple(copy(*wide_arrays))
    except Exception as err:  # any failure means: take the differences on the network itself
        logger.debug("check_grads: no float64 copy (%s: %s)", type(err).__name__, err)
        return None
    for low, high in zip(outputs, wide_outputs):
        if low.shape != high.shape:
            return None
        if low.dtype.kind == "f":
            scale = float(np.max(np.abs(low), initial=0.0)) + 1.0
            if not np.allclose(high, low, rtol=1e-3, atol=1e-4 * scale, equal_nan=True):
                logger.debug("check_grads: the float64 copy's outputs differ; using the network itself")
                return None
    return copy, wide_arrays, copy.parameters_dict()


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
    changes: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **changes)


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
    f0: float,
    tolerance: Tolerance,
    resolution: float,
    rng: np.random.Generator,
    max_elements: int,
) -> tuple[list[_Mismatch], list[str], int]:
    """Perturbs elements of ``x`` in place (restoring each).

    Returns the mismatching elements, the non-smooth ones that passed, and how
    many elements were compared.
    """
    if x.size > max_elements:
        flat_indices = np.sort(rng.choice(x.size, size=max_elements, replace=False))
    else:
        flat_indices = np.arange(x.size)
    flat = x.reshape(-1)  # a view: x is C-contiguous
    mismatches, kinks = [], []
    for i in flat_indices:
        index = tuple(int(k) for k in np.unravel_index(i, x.shape))
        analytic = float(grad[index])
        numeric = _central(flat, i, f, tolerance.eps, tolerance.points)
        if _close(analytic, numeric, tolerance):
            continue
        verdict = _recheck(flat, i, f, f0, analytic, tolerance, resolution)
        if verdict is True:
            continue
        if isinstance(verdict, str):
            kinks.append(f"grad[{name}][{', '.join(str(k) for k in index)}]: {verdict}")
            continue
        mismatches.append(_Mismatch(name, index, analytic, numeric, tolerance))
    return mismatches, kinks, len(flat_indices)


def _close(analytic: float, numeric: float, tolerance: Tolerance) -> bool:
    return abs(analytic - numeric) <= tolerance.atol + tolerance.rtol * abs(numeric)


def _at(flat: np.ndarray, i: int, step: float, f: Callable[[], float]) -> float:
    """``f`` with ``flat[i]`` moved by ``step`` (restored afterwards)."""
    original = flat[i].copy()
    try:
        flat[i] = original + flat.dtype.type(step)
        return f()
    finally:
        flat[i] = original


def _central(flat: np.ndarray, i: int, f: Callable[[], float], eps: float, points: int) -> float:
    offsets, divisor = _STENCILS[points]
    return sum(weight * _at(flat, i, steps * eps, f) for steps, weight in offsets) / (divisor * eps)


def _recheck(
    flat: np.ndarray,
    i: int,
    f: Callable[[], float],
    f0: float,
    analytic: float,
    tolerance: Tolerance,
    resolution: float,
) -> bool | str | None:
    """A second look at a disagreeing element, at smaller steps.

    True: the central difference at a smaller step agrees (the first step
    crossed a kink near the point). A string: the one-sided differences
    disagree at every step (a kink at the point) and the analytic value lies
    between them; the string says so. None: a real mismatch. ``resolution``
    is the machine epsilon of ``f``'s evaluation, which bounds how small a
    step stays meaningful.
    """
    kink = None
    for scale in (1.0, *_RECHECK_SCALES):
        h = tolerance.eps * scale
        if scale < 1.0 and 4 * resolution * (abs(f0) + 1.0) / h > tolerance.atol:
            break  # rounding would swamp smaller steps: they could hide a wrong gradient
        right = (_at(flat, i, h, f) - f0) / h
        left = (f0 - _at(flat, i, -h, f)) / h
        gap = abs(right - left)
        allowed = tolerance.atol + tolerance.rtol * max(abs(right), abs(left))
        if gap <= allowed:  # smooth at this step: its central difference decides
            kink = None
            if _close(analytic, (right + left) / 2, tolerance):
                return True
            continue
        low, high = min(left, right), max(left, right)
        within = low - allowed <= analytic <= high + allowed
        kink = f"analytic {analytic:.6g}, one-sided {left:.6g} / {right:.6g} (non-smooth)" if within else None
    return kink


def _report(mismatches: list[_Mismatch], precision: str, non_smooth: int) -> str:
    counts: dict[str, int] = {}
    for m in mismatches:
        counts[m.tensor] = counts.get(m.tensor, 0) + 1
    summary = ", ".join(f"{n} element(s) of grad[{name}]" for name, n in counts.items())
    worst = sorted(mismatches, key=lambda m: m.excess, reverse=True)[:_MAX_REPORTED]
    lines = "\n".join(f"  {m}" for m in worst)
    kinks = f"; {non_smooth} non-smooth element(s) passed" if non_smooth else ""
    return (
        f"Gradients differ from central differences (taken in {precision}{kinks}): {summary}. Worst:\n{lines}"
    )
