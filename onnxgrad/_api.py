"""The facade: MindSpore's ``ForwardValueAndGrad`` and ``ops.value_and_grad``.

Both are one :class:`_GradFunction`: it resolves the network (an ONNX model, a
loss cell, or a framework object through its front-end), asks ``_engine`` for
flat lists of values and gradients, and nests them as MindSpore 2.10 does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Sequence

import numpy as np
import onnx

from onnxgrad import _engine, _frontend
from onnxgrad._network import Network, Parameter, load
from onnxgrad._spec import GradSpec, RunOptions
from onnxgrad.errors import InputError

__all__ = ["ForwardValueAndGrad", "value_and_grad"]

_ALL = "all"  # grad_position meaning every network input (ForwardValueAndGrad's get_all)


class _FrameworkTarget:
    """A framework object: exported per argument signature, parameters bound at call time.

    Where the front-end offers ``live_tensors`` (PyTorch), each network's
    parameters and buffers share the framework tensors' memory: the sessions
    bind that memory by pointer, so in-place updates are seen and a call
    copies no weights. A tensor whose memory changed (``storage_key``) is
    shared anew and the sessions rebind it. Other front-ends' values are
    copied in at every call.
    """

    def __init__(self, frontend: _frontend.Frontend) -> None:
        self.frontend = frontend
        self._networks: dict[tuple, tuple[Network, dict[str, str], dict[str, str]]] = {}
        self._shared: dict[Network, _SharedState] = {}

    def bind(
        self, args: Sequence[Any], kwargs: dict[str, Any] | None = None
    ) -> tuple[Network, list[np.ndarray], dict[str, str]]:
        """The network for these arguments, bound to the current parameter values."""
        args, call = self.frontend.arguments(args, kwargs or {})
        arrays = self.frontend.to_numpy(args)
        signature = (call, *((a.shape, a.dtype.str) for a in arrays))
        entry = self._networks.get(signature)
        if entry is None:
            network = load(self.frontend.export(arrays) if call is None else self.frontend.export(arrays, call))
            mapping = _frontend.parameter_map(network.model) or {}
            buffer_map = _frontend.parameter_map(network.model, _frontend.BUFFER_MAP_KEY) or {}
            entry = self._networks[signature] = (network, mapping, buffer_map)
        network, mapping, buffer_map = entry
        if hasattr(self.frontend, "live_tensors"):
            self._bind_shared(network, mapping, buffer_map)
            return network, arrays, mapping
        # Values are read at call time: a pure value change costs copies, never an export.
        params = network.parameters_dict()
        for framework_name, value in self.frontend.parameter_values().items():
            if framework_name in mapping:
                params[mapping[framework_name]].set_data(value)
        if buffer_map:
            buffers = network.buffers_dict()
            for framework_name, value in self.frontend.buffer_values().items():
                if framework_name in buffer_map:
                    buffers[buffer_map[framework_name]].set_data(value)
        return network, arrays, mapping

    def _bind_shared(self, network: Network, mapping: dict[str, str], buffer_map: dict[str, str]) -> None:
        state = self._shared.get(network)
        if state is None:
            params, buffers = network.parameters_dict(), network.buffers_dict()
            targets = {name: params[init] for name, init in mapping.items()}
            targets.update((name, buffers[init]) for name, init in buffer_map.items())
            state = self._shared[network] = _SharedState(targets)
        frontend: Any = self.frontend  # one that shares memory (torch's): live_tensors, storage_key, host_array
        tensors = frontend.live_tensors(state.targets)
        if len(tensors) != len(state.targets):
            missing = sorted(set(state.targets) - set(tensors))
            raise InputError(
                f"The module no longer has {missing}, which its exported graph reads: keep the module's "
                "parameters and buffers, or differentiate the changed module with a new ForwardValueAndGrad."
            )
        keys = {name: frontend.storage_key(tensor) for name, tensor in tensors.items()}
        if keys != state.keys:
            state.update(network, tensors, keys, frontend)
        for name in state.copied:
            state.targets[name].set_data(frontend.host_array(tensors[name])[0])
        for param in state.targets.values():
            if param._mirror is not None:  # a device copy: in-place updates are not tracked, upload again
                param._mirror_stale = True


class _SharedState:
    """One network's parameters and buffers as views of framework tensors (see _FrameworkTarget)."""

    def __init__(self, targets: dict[str, Parameter]) -> None:
        self.targets = targets  # framework name -> the network's Parameter
        self.keys: dict[str, Any] = {}  # framework name -> storage key of the shared tensor
        self.copied: set[str] = set()  # tensors that cannot be shared (on a device, strided): copied per call

    def update(self, network: Network, tensors: dict[str, Any], keys: dict[str, Any], frontend: Any) -> None:
        """Shares the tensors whose memory changed; rebinds the network's sessions to it."""
        moved = False
        for name, tensor in tensors.items():
            if self.keys.get(name) == keys[name]:
                continue
            array, shared = frontend.host_array(tensor)
            param = self.targets[name]
            if array.shape != param.shape or array.dtype != param.dtype:
                param.set_data(array)  # raises, naming the parameter and what it expects
            if shared:  # the Parameter's buffer becomes the tensor's memory (kept alive by the array)
                self.copied.discard(name)
            else:  # a buffer of its own, never the memory of a tensor shared before
                array = np.array(array, order="C", copy=True)
                self.copied.add(name)
            param._value, param._host_stale = array, False
            moved = True
        self.keys = keys
        if moved:
            _engine.rebind_parameters(network)


def _resolve(network: Any) -> Network | _FrameworkTarget:
    if isinstance(network, Network):
        return network
    if isinstance(network, (str, os.PathLike, onnx.ModelProto)):
        return load(network)
    frontend = network if isinstance(network, _frontend.Frontend) else _frontend.frontend_for(network)
    if frontend is not None:
        return _FrameworkTarget(frontend)
    raise InputError(
        f"Cannot differentiate a {type(network).__name__}: pass an onnxgrad Network, an ONNX file path or "
        "ModelProto, a MindSpore Cell or a PyTorch nn.Module."
    )


def _weight_names(network: Network, weights: Any) -> list[str]:
    if _is_single(weights):
        weights = [weights]
    params = network.parameters_dict()
    names = []
    for weight in weights:
        name = weight.name if isinstance(weight, Parameter) else weight
        if not isinstance(name, str) or name not in params:
            raise InputError(
                f"Weight {name!r} is not a trainable parameter of the network; known: {sorted(params)}. "
                "Pass Parameters from network.trainable_params() or their names."
            )
        if isinstance(weight, Parameter) and weight is not params[name]:
            # Matched by name alone, another network's Parameter would get this network's gradient.
            raise InputError(
                f"Parameter {name!r} belongs to another network (one with a parameter of the same name): pass "
                "this network's own Parameters (network.trainable_params()) or their names."
            )
        names.append(name)
    return names


class _GradFunction:
    """The shared implementation of ``ForwardValueAndGrad`` and ``value_and_grad``."""

    def __init__(
        self,
        network: Any,
        *,
        grad_position: int | tuple[int, ...] | str | None,
        weights: Any,
        has_aux: bool,
        return_ids: bool,
        sens_param: bool,
        options: RunOptions,
    ) -> None:
        self._target = _resolve(network)
        self._grad_position = grad_position
        self._weights = weights
        self._has_aux = has_aux
        self._return_ids = return_ids
        self._sens_param = sens_param
        self._options = options
        # Per network (a loss cell's label-dtype variants, a framework's signatures): spec and ids.
        self._plans: dict[Network, tuple] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        sens = None
        if self._sens_param:
            if not args:
                raise InputError("sens_param=True: pass the network inputs, then the sensitivity.")
            args, sens = args[:-1], args[-1]
        target = self._target
        frontend = target.frontend if isinstance(target, _FrameworkTarget) else None
        if isinstance(target, _FrameworkTarget):
            network, arrays, mapping = target.bind(args, kwargs)
            if sens is not None:
                sens = _to_numpy_tree(target.frontend, sens)
        elif kwargs:
            raise InputError(
                f"Keyword arguments {sorted(kwargs)} are for PyTorch modules: pass an ONNX network's inputs "
                f"positionally, in order ({[i.name for i in target.inputs]})."
            )
        else:
            network, arrays, mapping = target, list(args), {}

        plan = self._plans.get(network)
        if plan is None:
            plan = self._plans[network] = self._plan(network, mapping)
        spec, positions, weight_ids, missing = plan
        values, input_grads, weight_grads = _engine.run(network, arrays, spec=spec, options=self._options, sens=sens)
        if missing:
            weight_grads = _with_missing(weight_grads, missing)

        if self._return_ids:
            grads = self._nest(list(zip(positions, input_grads)), list(zip(weight_ids, weight_grads)))
        else:
            grads = self._nest(input_grads, weight_grads)
        value = values[0] if len(values) == 1 else tuple(values)
        result: tuple[Any, Any] = (value, grads)
        # No arguments: framework tensors out, as the framework itself gives.
        given = [*args, *kwargs.values()]
        if frontend is not None and (not given or frontend.wants_framework_tensors(given)):
            result = _map_tree(frontend.from_numpy, result)
        if frontend is not None:  # forward's own output structure (a dict, a ModelOutput...)
            outputs = result[0] if len(values) > 1 else (result[0],)
            result = (frontend.nest_outputs(network.model, outputs), result[1])
        return result

    def _plan(self, network: Network, mapping: dict[str, str]) -> tuple:
        """What to ask the engine for on this network: spec, positions, weight ids, zeros to add."""
        if isinstance(self._grad_position, str):  # _ALL, the only string
            positions: tuple[int, ...] = tuple(range(len(network.inputs)))
        elif self._grad_position is None:
            positions = ()
        elif self._grad_position == 0 and not network.inputs and not self._return_ids:
            positions = ()  # MindSpore's default flags on a Cell without inputs: the gradients are ()
        elif isinstance(self._grad_position, int):
            positions = (self._grad_position,)
        else:
            positions = tuple(self._grad_position)
        for pos in positions:
            if not 0 <= pos < len(network.inputs):
                raise InputError(
                    f"grad_position {pos} is out of range: the network has {len(network.inputs)} input(s)."
                )
        weight_ids, weight_names, missing = self._resolve_weights(network, mapping)
        if self._has_aux and len(network.outputs) < 2:
            raise InputError("has_aux=True needs a network with at least two outputs (the first is differentiated).")
        contributing = (0,) if self._has_aux else None
        spec = GradSpec(inputs=positions, weights=weight_names, sens=self._sens_param, contributing=contributing)
        return spec, positions, weight_ids, missing

    def _resolve_weights(self, network: Network, mapping: dict[str, str]):
        """Weight ids to report, initializer names to differentiate, and (index, shape, dtype) for unused ones."""
        if self._weights is None:
            return [], [], []
        if isinstance(self._target, _FrameworkTarget):
            framework_names = self._target.frontend.weight_names(self._weights)
            values = self._target.frontend.parameter_values()
            names, missing = [], []
            for i, fname in enumerate(framework_names):
                if fname in mapping:
                    names.append(mapping[fname])
                else:  # not in the exported graph: the output does not depend on it
                    missing.append((i, values[fname].shape, values[fname].dtype))
            return framework_names, names, missing
        names = _weight_names(network, self._weights)
        return names, names, []

    def _nest(self, input_grads: list, weight_grads: list) -> Any:
        position = self._grad_position
        # MindSpore returns one input's gradient bare for grad_position=k and =(k,) alike;
        # only get_all (_ALL) keeps a 1-tuple.
        bare = isinstance(position, int) or (isinstance(position, tuple) and len(position) == 1)
        inputs = input_grads[0] if bare and input_grads else tuple(input_grads)
        if self._weights is None:
            return inputs
        weights = weight_grads[0] if _is_single(self._weights) else tuple(weight_grads)
        return weights if position is None else (inputs, weights)


def _is_single(weights: Any) -> bool:
    # One weight (a name, or any framework's Parameter: tensors are iterable
    # too) gets a bare gradient; a list, tuple, ParameterTuple or generator
    # such as module.parameters() gets a tuple.
    return isinstance(weights, (str, Parameter)) or hasattr(weights, "shape") or not isinstance(weights, Iterable)


def _with_missing(grads: list, missing: list) -> list:
    grads = list(grads)
    for index, shape, dtype in missing:  # fresh zeros each call: results never alias
        grads.insert(index, np.zeros(shape, dtype))
    return grads


def _map_tree(fn, tree):
    if isinstance(tree, tuple):
        return tuple(_map_tree(fn, t) for t in tree)
    if isinstance(tree, (int, str)):  # ids from return_ids
        return tree
    return fn(tree)


def _to_numpy_tree(frontend, sens):
    if isinstance(sens, (tuple, list)):
        return type(sens)(frontend.to_numpy(list(sens)))
    return frontend.to_numpy([sens])[0]


class ForwardValueAndGrad:
    """Forward value and gradients of a network: MindSpore's ``nn.ForwardValueAndGrad``.

    ``fvg(*inputs)`` (or ``fvg(*inputs, sens)`` with ``sens_param=True``)
    returns ``(forward_value, gradients)``. The forward value is an array, or a
    tuple for several outputs. The gradients nest as in MindSpore 2.10:

    - default: the gradient of the first input (an array);
    - ``get_all``: a tuple with one gradient per network input;
    - ``get_by_list``: a tuple with one gradient per weight;
    - both: ``((input gradients), (weight gradients))``.

    Int inputs and int Parameters get MindSpore's int gradients: int math
    (``x * 3`` gives 3s) is differentiated, a Cast passes the gradient back cast
    to its source dtype (float to int truncates toward zero), and an output
    cast to int passes its gradient back (not for PyTorch modules, as in
    autograd). Int math onnxgrad cannot reproduce exactly is refused with an
    ``UnsupportedGradientError``. Inputs and weights the outputs do not depend
    on get zeros.

    Args:
        network: a :class:`~onnxgrad.Network` or loss cell, a path to an ONNX
            file, an ``onnx.ModelProto``, a MindSpore ``Cell`` or a PyTorch module.
        weights: the weights to differentiate: a :class:`~onnxgrad.ParameterTuple`,
            Parameters, initializer names, or framework Parameters for a
            framework network.
        get_all: return gradients of all inputs.
        get_by_list: return gradients of ``weights``.
        sens_param: the caller passes the sensitivity (the gradient of the
            output) as the last argument: an array shaped and typed like the
            output, or a tuple/list of them for several outputs. Otherwise it is
            ``ones_like`` each output, and the contributions of several outputs add up.
        providers: ONNX Runtime execution providers (names, or ``(name, options)``
            tuples); default CPU.
        session_config: ONNX Runtime session config entries, e.g.
            ``{"session.intra_op.allow_spinning": "0"}``, which helps when calls
            alternate between several sessions (a train step, then an eval forward).

    Raises:
        InputError: ``get_by_list`` without weights, unknown weights, and (when
            called) wrong arguments or sensitivities.

    Example:
        >>> net = onnxgrad.nn.WithLossCell(onnxgrad.load("models/seed_net.onnx"),
        ...                                onnxgrad.nn.SoftmaxCrossEntropyWithLogits())
        >>> weights = onnxgrad.ParameterTuple(net.trainable_params())
        >>> fvg = onnxgrad.ForwardValueAndGrad(net, weights, get_all=True, get_by_list=True)
        >>> loss, ((dx, dlabel), (dweight,)) = fvg(np.ones([1, 2], np.float32), np.zeros([1, 2], np.float32))
    """

    def __init__(
        self,
        network: Any,
        weights: Any = None,
        get_all: bool = False,
        get_by_list: bool = False,
        sens_param: bool = False,
        *,
        providers: Any = None,
        session_config: Any = None,
    ) -> None:
        if get_by_list and weights is None:
            raise InputError(
                "get_by_list=True needs weights: pass weights=ParameterTuple(net.trainable_params()) "
                "(or an empty tuple for none)."
            )
        if get_by_list and _is_single(weights):
            raise InputError(
                "ForwardValueAndGrad takes a sequence of weights (a ParameterTuple or list), got a single "
                f"{type(weights).__name__}: pass [weight] (or use value_and_grad, which takes one weight)."
            )
        if get_all:
            position: Any = _ALL
        else:
            position = None if get_by_list else 0
        self.get_all, self.get_by_list, self.sens_param = get_all, get_by_list, sens_param
        self.weights = weights
        self._fn = _GradFunction(
            network,
            grad_position=position,
            weights=tuple(weights) if get_by_list else None,  # without get_by_list MindSpore ignores them
            has_aux=False,
            return_ids=False,
            sens_param=sens_param,
            options=RunOptions(providers, session_config),  # checked here: a bad provider fails early
        )

    def __call__(self, *inputs: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Runs forward and backward; see the class docstring for the nesting.

        Keyword arguments are for PyTorch modules (``input_ids=..., attention_mask=...``).
        """
        return self._fn(*inputs, **kwargs)


def value_and_grad(
    fn: Any,
    grad_position: int | tuple[int, ...] | None = 0,
    weights: Any = None,
    has_aux: bool = False,
    return_ids: bool = False,
    *,
    providers: Any = None,
    session_config: Any = None,
):
    """A function returning ``(value, gradients)``: MindSpore's ``ops.value_and_grad``.

    Args:
        fn: the network (anything :class:`ForwardValueAndGrad` takes).
        grad_position: an input index (its gradient is returned bare), a tuple of
            indices (a tuple of gradients), or None (no input gradients).
        weights: a Parameter (its gradient bare), or a ParameterTuple / list of
            Parameters or names (a tuple of gradients), or None.
        has_aux: only the first output is differentiated; the value still holds
            every output.
        return_ids: each gradient becomes ``(input index or parameter name, gradient)``.
        providers: ONNX Runtime execution providers; default CPU.
        session_config: ONNX Runtime session config entries (see ForwardValueAndGrad).

    Returns:
        ``f(*inputs) -> (value, grads)`` (a PyTorch module also takes keyword
        inputs, see the README); ``grads`` is the input part, the weight part,
        or ``(input part, weight part)`` when both are asked for.

    Raises:
        InputError: both ``grad_position`` and ``weights`` are None.
    """
    if grad_position is None and weights is None:
        raise InputError("grad_position and weights can not both be None: ask for input or weight gradients.")
    if isinstance(grad_position, bool) or not (
        grad_position is None or isinstance(grad_position, int) or (
            isinstance(grad_position, tuple) and all(isinstance(p, int) for p in grad_position))
    ):
        raise InputError(f"grad_position must be an int, a tuple of ints or None, got {grad_position!r}.")
    if weights is not None and not _is_single(weights):
        weights = tuple(weights)
    grad_fn = _GradFunction(
        fn,
        grad_position=grad_position,
        weights=weights,
        has_aux=has_aux,
        return_ids=return_ids,
        sens_param=False,
        options=RunOptions(providers, session_config),  # checked here: a bad provider fails early
    )

    def value_and_grad_fn(*inputs: Any, **kwargs: Any) -> tuple[Any, Any]:
        return grad_fn(*inputs, **kwargs)

    return value_and_grad_fn
