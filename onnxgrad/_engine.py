"""The shared core of ``ForwardValueAndGrad``, ``value_and_grad`` and ``Network.__call__``.

``run`` checks the arguments, compiles (once per spec, run options and input
signature) a gradient graph and a session, runs it, and returns flat lists:
the forward values, one gradient per requested input, one per requested
weight. How those lists nest is the facade's business.

The engine owns its state: each network's compiled sessions live in one
opaque slot (``Network._engine_state``) that only this module reads or writes.
The engine knows networks through their public surface (inputs, outputs,
parameters, model) and two hooks a loss cell overrides: ``_for_dtypes`` (the
cell for a label dtype) and ``_value_check`` (label ranges).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import onnx

from onnxgrad import _cache, _device, _gradient, _int_math, _lower, _prepare
from onnxgrad._session import Session
from onnxgrad._spec import GradSpec, RunOptions
from onnxgrad.errors import GradientBuildError, InputError, OnnxGradError, RuntimeFailure

if TYPE_CHECKING:  # typing only: _network imports this module to run a network
    from onnxgrad._network import Network

__all__ = [
    "GradSpec", "RunOptions", "GradientModel", "gradient_model", "run", "forward", "check_arguments",
    "rebind_parameters",
]


@dataclasses.dataclass
class _Compiled:
    session: Session
    layout: _prepare.Layout
    n_outputs: int
    shapes_checked: bool = False


class _State:
    """What the engine keeps per network (in ``Network._engine_state``)."""

    __slots__ = ("compiled", "fast")

    def __init__(self) -> None:
        # Compiled gradient graphs and sessions, keyed by (spec, options, input signature).
        self.compiled: dict[Any, _Compiled] = {}
        # (spec, options, signature of already-checked arguments) -> (variant, compiled), for the hot path.
        self.fast: dict[Any, tuple[Network, _Compiled]] = {}


def _state(network: Network) -> _State:
    state = network._engine_state
    if state is None:  # the first call; setdefault keeps one state when threads race here
        state = vars(network).setdefault("_engine_state", _State())
    return state


_FORWARD = GradSpec()
_DEFAULT_OPTIONS = RunOptions()


def _c_contiguous(array: np.ndarray) -> np.ndarray:
    # np.ascontiguousarray would turn a 0-d array into shape (1,).
    return array if array.flags.c_contiguous else np.array(array, order="C")


def check_arguments(network: Network, args: Sequence[Any]) -> tuple[Network, list[np.ndarray]]:
    """Checks the call arguments against the network's inputs.

    Returns:
        The network variant for these dtypes and the arguments as numpy arrays
        (OrtValues pass through).

    Raises:
        InputError: wrong count, dtype or shape, naming the input and what it expects.
    """
    if len(args) != len(network.inputs):
        names = [i.name for i in network.inputs]
        raise InputError(
            f"The network takes {len(names)} input(s) {names}, got {len(args)} argument(s): "
            "pass one array per input (and the sensitivity last when sens_param=True)."
        )
    given = [a if isinstance(a, np.ndarray) or _device.is_ortvalue(a) else None for a in args]
    types = [_device.shape_and_dtype(g) if g is not None else None for g in given]
    dtypes = [t[1] if t is not None else info.dtype for t, info in zip(types, network.inputs)]
    network = network._for_dtypes(dtypes)
    arrays = []
    for arg, array, info in zip(args, given, network.inputs):
        if array is None:
            try:
                array = np.asarray(arg, dtype=info.dtype)
            except (TypeError, ValueError, OverflowError) as err:
                raise InputError(
                    f"Input {info.name!r} expects an array of {info.dtype}, got a {type(arg).__name__} that numpy "
                    f"cannot convert ({err}): pass a numpy array (or a nested list of numbers of one shape)."
                ) from err
        shape, dtype = _device.shape_and_dtype(array)
        if dtype != info.dtype:
            raise InputError(
                f"Input {info.name!r} expects dtype {info.dtype}, got {dtype}: "
                f"convert it with .astype(np.{info.dtype})."
            )
        if not info.accepts(shape):
            raise InputError(
                f"Input {info.name!r} expects shape {info.shape_text()}, got {list(shape)}: "
                "pass an array of that shape (named sizes may vary)."
            )
        arrays.append(array if _device.is_ortvalue(array) else _c_contiguous(array))
    _check_shared_sizes(network, arrays)
    return network, arrays


def _check_shared_sizes(network: Network, arrays: Sequence[Any]) -> None:
    """Inputs that name the same symbolic size (a batch ``N``) must agree on it: a loss would
    otherwise pair the first rows only."""
    sizes: dict[str, tuple[int, str]] = {}
    for info, array in zip(network.inputs, arrays):
        shape = _device.shape_and_dtype(array)[0]
        for want, got in zip(info.shape or (), shape):
            if isinstance(want, str):
                first = sizes.setdefault(want, (int(got), info.name))
                if first[0] != got:
                    raise InputError(
                        f"Inputs {first[1]!r} and {info.name!r} share the size {want!r}, but got {first[0]} and "
                        f"{got}: pass arrays whose {want!r} sizes agree (e.g. one label per row)."
                    )


@dataclasses.dataclass
class GradientModel:
    """A forward+backward graph and how to read it.

    Attributes:
        model: the graph; weights are graph inputs named like the parameters.
        layout: sens inputs, differentiated tensors, output types (see ``_prepare``).
        outputs: output names: the network outputs, then ``<x>_grad`` for each
            differentiated tensor ``x`` in ``layout.xs``.
    """

    model: onnx.ModelProto
    layout: _prepare.Layout
    outputs: list[str]
    key: str = ""


def gradient_model(network: Network, spec: GradSpec, input_shapes: Sequence[Sequence[int]]) -> GradientModel:
    """The forward+backward graph of ``network`` for inputs of these shapes.

    Built once per graph, spec and signature: later calls, in this process or
    (through the disk cache) in another, reuse it.
    """
    shapes = {info.name: tuple(int(d) for d in shape) for info, shape in zip(network.inputs, input_shapes)}
    shapes.update({name: p.shape for name, p in _bound(network).items()})
    parts = (spec.inputs, spec.weights, spec.sens, spec.contributing, tuple(sorted(shapes.items())))
    key = _cache.cache_key(network.digest, parts)
    cached = _cache.lookup(key)
    if cached is not None:
        return GradientModel(*cached, key=key)
    prepared = _staged(
        "graph preparation", _prepare.prepare, network.model, input_names=[i.name for i in network.inputs],
        shapes=shapes, spec=spec,
    )
    model, layout = prepared.model, prepared.layout
    outputs = [o.name for o in network.outputs]
    if layout.xs:
        model = _staged("gradient builder", _gradient.build_gradient_graph, model, _prepare.LOSS, layout.xs)
        model = _staged("lowering and optimization", _lower.lower, model, prepared.types)
        outputs += [_gradient.grad_name(x) for x in layout.xs]
    _staged("output shape declaration", _lower.declare_output_shapes, model)
    _cache.store(key, model, layout, outputs)
    return GradientModel(model, layout, outputs, key)


def _staged(stage: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Runs one build stage; an exception that is not an onnxgrad error becomes a GradientBuildError naming it.

    The stages refuse what they cannot handle with onnxgrad errors, so anything else escaping one is a bug.
    """
    try:
        return fn(*args, **kwargs)
    except OnnxGradError:
        raise
    except Exception as err:
        text = " ".join(str(err).split())[:300] or "no message"
        raise GradientBuildError(
            f"onnxgrad's {stage} stage failed with {type(err).__name__} ({text}) while building the gradient graph: "
            "a bug in onnxgrad, not in your call. Please report it with the model file and this message "
            "(the original traceback is chained below); meanwhile, asking for fewer gradients may avoid it."
        ) from err


def _bound(network: Network) -> dict:
    """Everything bound by pointer: the parameters, then the non-trainable buffers."""
    return {**network.parameters_dict(), **network.buffers_dict()}


def _output_types(built: GradientModel) -> list:
    """(shape, dtype) of each output, None where the input shapes do not fix it (known only when run)."""
    types: list = []
    for elem, shape in [*built.layout.output_types, *(built.layout.x_types[x] for x in built.layout.xs)]:
        known = elem and shape is not None and None not in shape
        types.append((shape, onnx.helper.tensor_dtype_to_np_dtype(elem)) if known else None)
    return types


def _compile(network: Network, spec: GradSpec, options: RunOptions, arrays: list[np.ndarray]) -> _Compiled:
    # np.dtype(): the checked arguments are all tensors, so their dtypes are never None.
    signature = tuple((shape, np.dtype(dtype).str) for shape, dtype in map(_device.shape_and_dtype, arrays))
    key = (spec, options, signature)
    compiled_by_key = _state(network).compiled
    compiled = compiled_by_key.get(key)
    if compiled is not None:
        return compiled
    built = gradient_model(network, spec, [signature_shape for signature_shape, _ in signature])
    providers = options.provider_list()
    model = _lower.for_provider(built.model, _device.device_of(providers)[0])
    session = Session(
        model, providers, _bound(network), built.outputs, _output_types(built),
        session_config=options.config_dict(), share_key=(built.key, options.providers, options.session_config),
    )
    compiled = _Compiled(session, built.layout, len(network.outputs))
    compiled_by_key[key] = compiled
    return compiled


#: Compiled signatures (spec, options and argument shapes) a network keeps; the oldest go first.
MAX_SIGNATURES = 64


def _trim_signatures(root: Network, network: Network) -> None:
    """Bounds a network's compiled sessions: a new batch size each call would otherwise add one each."""
    compiled_by_key, fast = _state(network).compiled, _state(root).fast
    while len(compiled_by_key) > MAX_SIGNATURES:
        old = compiled_by_key.pop(next(iter(compiled_by_key)))
        for fast_key, (_, compiled) in list(fast.items()):
            if compiled is old:
                fast.pop(fast_key, None)


def rebind_parameters(network: Network) -> None:
    """Points the network's sessions at its parameters' current buffers (after they were replaced)."""
    state = network._engine_state
    for compiled in state.compiled.values() if state is not None else ():
        compiled.session.rebind_parameters()


def compiled_sessions(network: Network) -> dict[tuple[GradSpec, RunOptions, tuple], Session]:
    """The network's sessions by (spec, options, input signature), oldest first (for tests and tools)."""
    state = network._engine_state
    return {key: c.session for key, c in state.compiled.items()} if state is not None else {}


def _check_sens(
    network: Network, compiled: _Compiled, sens: Any, values: list[np.ndarray] | None = None
) -> dict[int, np.ndarray]:
    """Matches the caller's sensitivities to the outputs; returns them by output index."""
    n = len(network.outputs)
    if n == 1:
        items = [sens]
    elif isinstance(sens, (tuple, list)) and len(sens) == n:
        items = list(sens)
    else:
        raise InputError(
            f"The network has {n} outputs, so sens must be a tuple of {n} arrays, one per output; "
            f"got {type(sens).__name__}."
        )
    checked = {}
    for k, (item, info) in enumerate(zip(items, network.outputs)):
        elem, shape = compiled.layout.output_types[k]
        if values is not None:
            shape = _device.shape_and_dtype(values[k])[0]
        want_dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)) if elem else info.dtype
        if _device.is_ortvalue(item):
            array = item
        else:
            array = np.asarray(item) if isinstance(item, np.ndarray) else np.asarray(item, dtype=want_dtype)
        got_shape, got_dtype = _device.shape_and_dtype(array)
        if shape is not None and None not in shape:
            shape = tuple(shape)
            if got_shape != shape and not (shape == () and got_shape == (1,)):
                raise InputError(
                    f"The sensitivity of output {info.name!r} must have the output's shape {list(shape)} and "
                    f"dtype {want_dtype}, got shape {list(got_shape)}: pass an array like the output."
                )
            if not _device.is_ortvalue(array):
                array = array.reshape(shape)
        if got_dtype != want_dtype:
            raise InputError(
                f"The sensitivity of output {info.name!r} must have dtype {want_dtype} (the output's), "
                f"got {got_dtype}: convert it with .astype(np.{want_dtype})."
            )
        checked[k] = array if _device.is_ortvalue(array) else _c_contiguous(array)
    return checked


def run(
    network: Network,
    args: Sequence[Any],
    *,
    spec: GradSpec,
    options: RunOptions = _DEFAULT_OPTIONS,
    sens: Any = None,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Runs forward and backward.

    Args:
        network: the network.
        args: the network inputs.
        spec: what to differentiate.
        options: how to run (providers, session config).
        sens: the sensitivities (only with ``spec.sens``): an array for one
            output, a tuple or list with one array per output otherwise.

    Returns:
        ``(values, input_grads, weight_grads)``: the forward outputs, one gradient
        per ``spec.inputs`` entry and one per ``spec.weights`` entry.
    """
    key = None
    on_device = None
    try:  # the fast path: numpy arrays of a signature seen before, already checked and compiled
        key = (spec, options, tuple((a.shape, a.dtype, a.flags.c_contiguous) for a in args))
        network, compiled = network._engine_state.fast[key]
        arrays = args
    except (AttributeError, KeyError):
        root = network
        network, arrays = check_arguments(network, args)
        compiled = _compile(network, spec, options, arrays)
        _trim_signatures(root, network)
        if key is not None and all(a is b for a, b in zip(arrays, args)):  # args were fine as given
            _state(root).fast[key] = (network, compiled)
        if any(_device.is_ortvalue(a) for a in arrays):  # OrtValues in: OrtValues out, where they are
            on_device = [True] * (compiled.n_outputs + len(compiled.layout.xs))
    if network._value_check is not None:
        network._value_check(arrays)
    layout = compiled.layout
    feeds = {info.name: a for info, a in zip(network.inputs, arrays)}
    checked_sens = None
    if spec.sens:
        checked_sens = _check_sens(network, compiled, sens)
        feeds.update({layout.sens_inputs[k]: s for k, s in checked_sens.items() if k in layout.sens_inputs})
    session = compiled.session
    results = session.run(feeds, on_device)
    values = results[: compiled.n_outputs]
    if spec.sens and any(shape is None or None in shape for _, shape in layout.output_types):
        _check_sens(network, compiled, sens, values)  # shapes only known now
    grads = dict(zip(layout.xs, results[compiled.n_outputs :]))
    if not compiled.shapes_checked:
        _check_gradient_shapes(layout, grads)
        compiled.shapes_checked = True

    device = (session.device if session.resident else _device.CPU) if on_device else None
    input_grads = [_input_grad(arrays[pos], layout.input_targets[pos], grads, device) for pos in spec.inputs]
    weight_grads = []
    for name in spec.weights:
        shadow = _int_math.int_shadow_name(name)
        if name in layout.weight_targets:
            weight_grads.append(grads[name])
            continue
        param = network.parameters_dict()[name]  # rare: an int Parameter, or one the outputs do not use
        if shadow in layout.weight_targets:
            grad = _int_gradient(np.asarray(_device.to_host(grads[shadow])), param.dtype, shadow)
            weight_grads.append(grad if device is None else _device.to_device(grad, device))
        else:
            weight_grads.append(_zeros(param.shape, param.dtype, device))
    return values, input_grads, weight_grads


def _zeros(shape: Sequence[int], dtype: np.dtype, device: _device.Device | None) -> Any:
    """Fresh zeros: a numpy array, or an OrtValue on ``device``."""
    return np.zeros(shape, dtype) if device is None else _device.zeros(shape, dtype, device)


def _check_gradient_shapes(layout: _prepare.Layout, grads: dict[str, np.ndarray]) -> None:
    """Catches a wrong built-in gradient that comes out in the wrong shape (once per compile)."""
    for x, grad in grads.items():
        shape = layout.x_types[x][1]
        got = _device.shape_and_dtype(grad)[0]
        if shape is not None and None not in shape and tuple(got) != tuple(shape):
            raise GradientBuildError(
                f"onnxruntime-training's gradient of {x!r} has shape {list(got)}, the tensor "
                f"{list(shape)}: a built-in gradient on its path is wrong. Please report this with the model."
            )


def _input_grad(array: Any, targets: list[str], grads: dict[str, Any], device: _device.Device | None) -> Any:
    """One input's or weight's gradient: its own, or an int one's read off its float64 shadow.

    ``device``: where OrtValue results live (None: numpy results).
    """
    shape, tensor_dtype = _device.shape_and_dtype(array)
    if len(targets) == 1 and _device.shape_and_dtype(grads[targets[0]])[1] == tensor_dtype:
        return grads[targets[0]]
    dtype = np.dtype(tensor_dtype)  # a checked argument: a tensor, never None
    if not targets:
        return _zeros(shape, dtype, device)
    (target,) = targets
    total = _int_gradient(np.asarray(_device.to_host(grads[target])), dtype, target)
    return total if device is None else _device.to_device(total, device)


def _int_gradient(shadow_grad: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """An int tensor's gradient from its shadow's (exact integers in float64), as MindSpore's int math.

    MindSpore's int gradients wrap around like any int arithmetic; Add, Mul and sums commute with
    wrapping, so wrapping the exact value gives MindSpore's result. Past 2**53 float64 is not exact.
    """
    if dtype == np.bool_:
        return shadow_grad != 0
    if shadow_grad.size and np.abs(shadow_grad).max() >= 2.0**53:
        raise RuntimeFailure(
            f"The gradient of the int tensor {name.removeprefix(_int_math.INT_SHADOW_PREFIX)!r} reaches "
            f"{np.abs(shadow_grad).max():.3g}, past 2**53, where onnxgrad's float64 int math is no longer exact "
            "and cannot reproduce MindSpore's int result: scale the computation down or cast the tensor to a float "
            "type in the model."
        )
    return shadow_grad.astype(np.int64).astype(dtype)


def forward(
    network: Network, args: Sequence[Any], *, options: RunOptions = _DEFAULT_OPTIONS
) -> np.ndarray | tuple[np.ndarray, ...]:
    """The network's forward values: one array, or a tuple for several outputs."""
    values, _, _ = run(network, args, spec=_FORWARD, options=options)
    return values[0] if len(values) == 1 else tuple(values)
