"""Optimizers that update :class:`~onnxgrad.Parameter` buffers in place.

Each optimizer takes the parameters to train and, on :meth:`Optimizer.step`,
one gradient per parameter (in the same order, e.g. the weight part of a
``ForwardValueAndGrad(..., get_by_list=True)`` result). It writes the new values
into ``param.value`` itself, so the ONNX Runtime sessions bound to those buffers
see them on the next call without any rebuild.

- :class:`SGD` follows ``torch.optim.SGD`` (momentum, dampening, Nesterov,
  L2 weight decay).
- :class:`Momentum` follows MindSpore's ``nn.Momentum`` (``ApplyMomentum``;
  weight decay skips parameters with ``beta`` or ``gamma`` in their names;
  gradients are divided by ``loss_scale``).
- :class:`Adam` follows ``torch.optim.Adam`` (L2 weight decay added to the
  gradient, ``eps`` added after the bias-corrected square root).

:func:`make_optimizer` makes one by name, for configurations and the command line.

Each update rule is written once (``_rule``). Given numpy gradients it runs on
the host; given OrtValue gradients (from a network on CUDA or CANN, see
:mod:`onnxgrad._device`) the same arithmetic runs as an ONNX graph on their
device, so weights and optimizer state never leave it.

Example:
    >>> net = onnxgrad.nn.WithLossCell(onnxgrad.load("models/digits_mlp.onnx"),
    ...                                onnxgrad.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    >>> params = onnxgrad.ParameterTuple(net.trainable_params())
    >>> fvg = onnxgrad.ForwardValueAndGrad(net, params, get_by_list=True)
    >>> opt = onnxgrad.optim.Adam(params, learning_rate=1e-2)
    >>> x, y = np.ones([8, 64], np.float32), np.arange(8, dtype=np.int32)  # a batch of 8 digits
    >>> loss, grads = fvg(x, y)
    >>> opt.step(grads)  # params[i].value changed in place
"""

from __future__ import annotations

import math
import types
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from onnxgrad import _device, _trace
from onnxgrad._network import Parameter, ParameterTuple
from onnxgrad.errors import InputError

__all__ = ["Optimizer", "SGD", "Momentum", "Adam", "OPTIMIZERS", "make_optimizer"]

_STEP = "step"
_KIND = "optimizer"


class Optimizer:
    """Base class: holds the parameters, the step count and per-parameter state.

    Subclasses name their per-parameter buffers in ``_SLOTS`` and implement
    ``_rule`` (the update as arithmetic on numpy arrays or trace symbols, every
    scalar taken from ``_scalars``) and ``_structure`` (what else shapes it).

    Args:
        params: the :class:`~onnxgrad.Parameter` objects to update (each once).
        learning_rate: the step size (a float; assign :attr:`learning_rate` to
            schedule it).

    Raises:
        InputError: a parameter is not an onnxgrad Parameter, appears twice, is
            not floating point, or the learning rate is negative.
    """

    _SLOTS: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter], learning_rate: float) -> None:
        self.params = ParameterTuple(params)
        for p in self.params:
            if p.dtype.kind != "f":
                raise InputError(
                    f"Parameter {p.name!r} has dtype {p.dtype}: optimizers update floating-point parameters only; "
                    "leave it out of params."
                )
        self.learning_rate = _non_negative("learning_rate", learning_rate)
        #: Number of steps taken so far.
        self.steps = 0
        self._state = {slot: [np.zeros_like(p.value) for p in self.params] for slot in self._SLOTS}
        # The state on a device, when the last step ran there: {slot: [OrtValue]}; host copies stale.
        self._device_state: dict[str, list] | None = None
        self._update_sessions: dict = {}

    def step(self, grads: Sequence[np.ndarray]) -> None:
        """Updates every parameter in place from its gradient.

        Args:
            grads: one array per parameter, in the order of :attr:`params`, shaped
                like it.

        Raises:
            InputError: wrong number of gradients, or a gradient of the wrong shape.
        """
        if len(grads) != len(self.params):
            raise InputError(
                f"{type(self).__name__}.step got {len(grads)} gradient(s) for {len(self.params)} parameter(s): "
                "pass one gradient per parameter, in the order the optimizer was given them."
            )
        on_device = any(_device.is_ortvalue(g) for g in grads)
        checked = []
        for p, g in zip(self.params, grads):
            if not _device.is_ortvalue(g):
                g = np.asarray(g)
            shape, dtype = _device.shape_and_dtype(g)
            if shape != p.shape:
                raise InputError(
                    f"The gradient of {p.name!r} has shape {list(shape)}, the parameter {list(p.shape)}: "
                    "pass the gradients in the order of the optimizer's params."
                )
            if dtype != p.dtype:
                if on_device:
                    raise InputError(
                        f"The gradient of {p.name!r} has dtype {dtype}, the parameter {p.dtype}: "
                        "pass gradients of the parameters' dtypes."
                    )
                g = g.astype(p.dtype)
            checked.append(g)
        self.steps += 1
        if on_device:
            self._device_step(checked)
            return
        self._sync_state()
        scalars = self._scalars()
        for i, (p, g) in enumerate(zip(self.params, checked)):
            state = {slot: self._state[slot][i] for slot in self._state}
            value, state = self._rule(np, p.name, p.value, g, state, scalars)
            np.copyto(p.value, value)
            for slot, new in state.items():
                np.copyto(self._state[slot][i], new)

    def _rule(self, xp: Any, name: str, value: Any, grad: Any, state: dict, h: dict) -> tuple[Any, dict]:
        """The new value and state of one parameter; ``xp`` is numpy or a Tracer."""
        raise NotImplementedError

    def _scalars(self) -> dict[str, float]:
        """This step's scalars, by the names ``_rule`` reads."""
        raise NotImplementedError

    def _structure(self) -> tuple:
        """Everything besides the scalars and shapes that changes the rule's operations."""
        return ()

    def _device_step(self, grads: list) -> None:
        """One step as an ONNX graph on the gradients' device: no weight or state crosses to the host."""
        device = next((p._mirror_device for p in self.params if p._mirror_device is not None), _device.CPU)
        key = (device, self._structure())
        entry = self._update_sessions.get(key)
        if entry is None:
            entry = self._update_sessions[key] = self._update_session(device)
        session, scalar_inputs = entry
        if self._device_state is None:
            self._device_state = {
                slot: [_device.to_device(b, device) for b in buffers] for slot, buffers in self._state.items()
            }
        binding = session.io_binding()
        for i, (p, g) in enumerate(zip(self.params, grads)):
            binding.bind_ortvalue_input(f"value{i}", p._on_device(device))
            if _device.is_ortvalue(g):
                binding.bind_ortvalue_input(f"grad{i}", g)
            else:
                binding.bind_cpu_input(f"grad{i}", np.ascontiguousarray(g))
            for slot, values in self._device_state.items():
                binding.bind_ortvalue_input(f"{slot}{i}", values[i])
        scalars = self._scalars()
        for (key_name, dtype), name in scalar_inputs.items():
            binding.bind_cpu_input(name, np.array(scalars[key_name], dtype))
        names = [o.name for o in session.get_outputs()]
        for name in names:
            binding.bind_output(name, *device)
        session.run_with_iobinding(binding)
        results = dict(zip(names, binding.get_outputs()))
        for i, p in enumerate(self.params):
            p._adopt(results[f"new_value{i}"], device)
            for slot, values in self._device_state.items():
                values[i] = results[f"new_{slot}{i}"]

    def _update_session(self, device: _device.Device) -> tuple:
        from onnxgrad._session import _open

        tracer = _trace.Tracer()
        scalars: dict[tuple[str, str], _trace.Symbol] = {}  # one graph input per scalar and dtype

        def scalars_for(dtype: np.dtype) -> dict:
            for key_name in self._scalars():
                if (key_name, dtype.str) not in scalars:
                    scalars[key_name, dtype.str] = tracer.input(f"{key_name}_{dtype.name}", dtype, [])
            return {key_name: scalars[key_name, dtype.str] for key_name in self._scalars()}

        for i, p in enumerate(self.params):
            value = tracer.input(f"value{i}", p.dtype, p.shape)
            grad = tracer.input(f"grad{i}", p.dtype, p.shape)
            state = {slot: tracer.input(f"{slot}{i}", p.dtype, p.shape) for slot in self._state}
            new_value, new_state = self._rule(tracer, p.name, value, grad, state, scalars_for(p.dtype))
            tracer.output(new_value, f"new_value{i}", p.dtype, p.shape)
            for slot in self._state:
                tracer.output(new_state[slot], f"new_{slot}{i}", p.dtype, p.shape)
        session = _open(tracer.model(), _device.provider_for(device), {}, None)
        return session, {(k, np.dtype(d)): symbol.name for (k, d), symbol in scalars.items()}

    def _sync_state(self) -> None:
        """Reads the state back from the device after steps there (host steps and state_dict need it)."""
        if self._device_state is not None:
            for slot, values in self._device_state.items():
                for buffer, value in zip(self._state[slot], values):
                    np.copyto(buffer, value.numpy())
            self._device_state = None

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer's state as flat numpy arrays (copies), ready for ``np.savez``.

        Returns:
            ``{"optimizer": <class name>, "step": <steps taken>,
            "<slot>/<parameter name>": buffer, ...}``, every value an array.
        """
        self._sync_state()
        state = {_KIND: np.array(type(self).__name__), _STEP: np.array(self.steps, np.int64)}
        for slot, buffers in self._state.items():
            for p, buffer in zip(self.params, buffers):
                state[f"{slot}/{p.name}"] = buffer.copy()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores a :meth:`state_dict` (from this optimizer class, over the same parameters).

        Raises:
            InputError: the state comes from another optimizer or other parameters.
        """
        kind = str(np.asarray(state.get(_KIND, "")))
        if kind != type(self).__name__:
            raise InputError(
                f"The optimizer state was saved by {kind or 'an unknown optimizer'}, not {type(self).__name__}: "
                f"resume with the same optimizer ({kind.lower() or '?'})."
            )
        expected = {f"{slot}/{p.name}": p for slot in self._state for p in self.params}
        missing = sorted(set(expected) - set(state))
        if missing:
            raise InputError(
                f"The optimizer state lacks {missing}: it was saved for other parameters; resume with the same model."
            )
        for key, p in expected.items():
            if np.shape(state[key]) != p.shape:
                raise InputError(
                    f"The optimizer state {key!r} has shape {list(np.shape(state[key]))}, the parameter "
                    f"{list(p.shape)}: it was saved for another model; resume with the same model."
                )
        self._device_state = None  # the loaded state replaces any on a device
        for slot, buffers in self._state.items():
            for p, buffer in zip(self.params, buffers):
                np.copyto(buffer, np.asarray(state[f"{slot}/{p.name}"], dtype=buffer.dtype))
        self.steps = int(np.asarray(state[_STEP]))

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.params)
        return f"{type(self).__name__}(lr={self.learning_rate}, params=[{names}])"


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if not value >= 0.0:  # also rejects NaN
        raise InputError(f"{name} must be >= 0, got {value}.")
    return value


class SGD(Optimizer):
    """Stochastic gradient descent, with ``torch.optim.SGD``'s update.

    With ``d = grad + weight_decay * param``; with momentum
    ``buf = d`` on the first step, then ``buf = momentum * buf + (1 - dampening) * d``,
    and ``d = d + momentum * buf`` (Nesterov) or ``d = buf``; finally
    ``param -= learning_rate * d``.

    Args:
        params: the Parameters to update.
        learning_rate: the step size.
        momentum: the momentum factor (0: plain SGD).
        weight_decay: L2 penalty added to the gradient.
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        dampening: dampening of the momentum.

    Raises:
        InputError: a negative hyperparameter, or Nesterov without momentum or with dampening.
    """

    _SLOTS: tuple[str, ...] = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Parameter],
        learning_rate: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        dampening: float = 0.0,
    ) -> None:
        self.momentum = _non_negative("momentum", momentum)
        self.weight_decay = _non_negative("weight_decay", weight_decay)
        self.dampening = float(dampening)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise InputError("Nesterov momentum needs momentum > 0 and dampening = 0: set momentum or drop nesterov.")
        if not self.momentum:
            self._SLOTS = ()  # plain SGD keeps no state
        super().__init__(params, learning_rate)

    def _scalars(self) -> dict[str, float]:
        first = self.steps == 1  # the buffer starts as the first gradient
        return {
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "keep": 0.0 if first else self.momentum,
            "take": 1.0 if first else 1.0 - self.dampening,
        }

    def _structure(self) -> tuple:
        return bool(self.weight_decay), bool(self.momentum), self.nesterov

    def _rule(self, xp, name, value, grad, state, h):
        d = grad + h["weight_decay"] * value if self.weight_decay else grad
        if self.momentum:
            buf = state["momentum_buffer"] * h["keep"] + h["take"] * d
            state = {"momentum_buffer": buf}
            d = d + h["momentum"] * buf if self.nesterov else buf
        return value - h["learning_rate"] * d, state


class Momentum(Optimizer):
    """Momentum SGD with MindSpore's ``nn.Momentum`` update (``ApplyMomentum``).

    ``g = grad / loss_scale + weight_decay * param`` (the decay only for
    parameters without ``beta`` or ``gamma`` in their names, as MindSpore does
    for ungrouped parameters), ``accum = momentum * accum + g``, then
    ``param -= learning_rate * (g + momentum * accum)`` with Nesterov, else
    ``param -= learning_rate * accum``.

    Args:
        params: the Parameters to update.
        learning_rate: the step size.
        momentum: the momentum factor.
        weight_decay: L2 penalty added to the gradient.
        loss_scale: the gradients are divided by it.
        use_nesterov: Nesterov momentum, with the formula MindSpore documents
            (MindSpore 2.10's CPU kernel ignores the flag and takes plain
            momentum steps).

    Raises:
        InputError: a negative hyperparameter or a loss scale <= 0.
    """

    _SLOTS = ("moments",)

    def __init__(
        self,
        params: Iterable[Parameter],
        learning_rate: float,
        momentum: float,
        weight_decay: float = 0.0,
        loss_scale: float = 1.0,
        use_nesterov: bool = False,
    ) -> None:
        self.momentum = _non_negative("momentum", momentum)
        self.weight_decay = _non_negative("weight_decay", weight_decay)
        if not float(loss_scale) > 0:
            raise InputError(f"loss_scale must be > 0, got {loss_scale}.")
        self.loss_scale = float(loss_scale)
        self.use_nesterov = bool(use_nesterov)
        super().__init__(params, learning_rate)

    def _scalars(self) -> dict[str, float]:
        return {
            "learning_rate": self.learning_rate,
            "momentum": self.momentum,
            # MindSpore scales the decay by loss_scale, so that it survives the division below.
            "decay": self.weight_decay * self.loss_scale,
            "inverse_scale": 1.0 / self.loss_scale,
        }

    def _structure(self) -> tuple:
        return bool(self.weight_decay), self.loss_scale != 1.0, self.use_nesterov

    def _rule(self, xp, name, value, grad, state, h):
        g = grad
        if self.weight_decay and "beta" not in name and "gamma" not in name:
            g = g + h["decay"] * value
        if self.loss_scale != 1.0:
            g = g * h["inverse_scale"]
        accum = state["moments"] * h["momentum"] + g
        lr = h["learning_rate"]
        if self.use_nesterov:
            value = value - (g * lr + accum * h["momentum"] * lr)
        else:
            value = value - lr * accum
        return value, {"moments": accum}


class Adam(Optimizer):
    """Adam with ``torch.optim.Adam``'s update.

    ``g = grad + weight_decay * param``; ``m = beta1 * m + (1 - beta1) * g``;
    ``v = beta2 * v + (1 - beta2) * g**2``; then
    ``param -= learning_rate / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``.

    Args:
        params: the Parameters to update.
        learning_rate: the step size.
        beta1: decay of the first moment.
        beta2: decay of the second moment.
        eps: added to the denominator.
        weight_decay: L2 penalty added to the gradient (not AdamW's decoupled decay).

    Raises:
        InputError: a hyperparameter out of range.
    """

    _SLOTS = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Parameter],
        learning_rate: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= float(beta) < 1.0:
                raise InputError(f"{name} must be in [0, 1), got {beta}.")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = _non_negative("eps", eps)
        self.weight_decay = _non_negative("weight_decay", weight_decay)
        super().__init__(params, learning_rate)

    def _scalars(self) -> dict[str, float]:
        return {
            "weight_decay": self.weight_decay,
            "beta1": self.beta1,
            "rest1": 1.0 - self.beta1,
            "beta2": self.beta2,
            "rest2": 1.0 - self.beta2,
            "step_size": self.learning_rate / (1.0 - self.beta1**self.steps),
            "correction2": math.sqrt(1.0 - self.beta2**self.steps),
            "eps": self.eps,
        }

    def _structure(self) -> tuple:
        return (bool(self.weight_decay),)

    def _rule(self, xp, name, value, grad, state, h):
        g = grad + h["weight_decay"] * value if self.weight_decay else grad
        m = state["exp_avg"] * h["beta1"] + h["rest1"] * g
        v = state["exp_avg_sq"] * h["beta2"] + h["rest2"] * (g * g)
        denom = xp.sqrt(v) / h["correction2"] + h["eps"]
        return value - h["step_size"] * (m / denom), {"exp_avg": m, "exp_avg_sq": v}


#: The names :func:`make_optimizer` takes, and each one's default learning rate.
OPTIMIZERS: Mapping[str, float] = types.MappingProxyType({"sgd": 0.1, "momentum": 0.1, "adam": 3e-3})


def make_optimizer(
    name: str,
    params: Iterable[Parameter],
    learning_rate: float | None = None,
    *,
    momentum: float | None = None,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
) -> Optimizer:
    """A new optimizer of the kind called ``name`` (any case), over ``params``.

    Args:
        name: a name from :data:`OPTIMIZERS`: ``sgd`` (:class:`SGD`),
            ``momentum`` (:class:`Momentum`) or ``adam`` (:class:`Adam`).
        params: the Parameters to update.
        learning_rate: None: the optimizer's default in :data:`OPTIMIZERS`.
        momentum: for ``sgd`` and ``momentum``. None: 0 for ``sgd`` (plain
            SGD, as ``torch.optim.SGD``), 0.9 for ``momentum``.
        nesterov: Nesterov momentum (``sgd``, ``momentum``).
        weight_decay: L2 penalty added to the gradients.
        beta1: Adam's first-moment decay.
        beta2: Adam's second-moment decay.

    Raises:
        InputError: an unknown name or a hyperparameter out of range.
    """
    key = name.lower()
    if key not in OPTIMIZERS:
        raise InputError(f"Unknown optimizer {name!r}: choose one of {sorted(OPTIMIZERS)}.")
    lr = OPTIMIZERS[key] if learning_rate is None else learning_rate
    if key == "sgd":
        return SGD(params, lr, 0.0 if momentum is None else momentum, weight_decay, nesterov)
    if key == "momentum":
        return Momentum(params, lr, 0.9 if momentum is None else momentum, weight_decay, use_nesterov=nesterov)
    return Adam(params, lr, beta1, beta2, weight_decay=weight_decay)
