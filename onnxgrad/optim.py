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

Example:
    >>> net = onnxgrad.nn.WithLossCell(onnxgrad.load("models/digits_mlp.onnx"),
    ...                                onnxgrad.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    >>> params = onnxgrad.ParameterTuple(net.trainable_params())
    >>> fvg = onnxgrad.ForwardValueAndGrad(net, params, get_by_list=True)
    >>> opt = onnxgrad.optim.Adam(params, learning_rate=1e-2)
    >>> loss, grads = fvg(x, y)
    >>> opt.step(grads)  # params[i].value changed in place
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from onnxgrad._network import Parameter, ParameterTuple
from onnxgrad.errors import InputError

__all__ = ["Optimizer", "SGD", "Momentum", "Adam"]

_STEP = "step"
_KIND = "optimizer"


class Optimizer:
    """Base class: holds the parameters, the step count and per-parameter state.

    Subclasses name their per-parameter buffers in ``_SLOTS`` and implement
    :meth:`_update`.

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
        checked = []
        for p, g in zip(self.params, grads):
            g = np.asarray(g)
            if g.shape != p.shape:
                raise InputError(
                    f"The gradient of {p.name!r} has shape {list(g.shape)}, the parameter {list(p.shape)}: "
                    "pass the gradients in the order of the optimizer's params."
                )
            checked.append(g.astype(p.dtype, copy=False))
        self.steps += 1
        for i, (p, g) in enumerate(zip(self.params, checked)):
            self._update(i, p, g)

    def _update(self, index: int, param: Parameter, grad: np.ndarray) -> None:
        raise NotImplementedError

    def _slot(self, slot: str, index: int) -> np.ndarray:
        return self._state[slot][index]

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer's state as flat numpy arrays (copies), ready for ``np.savez``.

        Returns:
            ``{"optimizer": <class name>, "step": <steps taken>,
            "<slot>/<parameter name>": buffer, ...}``, every value an array.
        """
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

    _SLOTS = ("momentum_buffer",)

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

    def _update(self, index: int, param: Parameter, grad: np.ndarray) -> None:
        value = param.value
        d = grad + self.weight_decay * value if self.weight_decay else grad
        if self.momentum:
            buf = self._slot("momentum_buffer", index)
            if self.steps == 1:
                np.copyto(buf, d)
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * d
            d = d + self.momentum * buf if self.nesterov else buf
        value -= self.learning_rate * d


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

    def _update(self, index: int, param: Parameter, grad: np.ndarray) -> None:
        value = param.value
        g = grad
        if self.weight_decay and "beta" not in param.name and "gamma" not in param.name:
            # MindSpore scales the decay by loss_scale, so that it survives the division below.
            g = g + (self.weight_decay * self.loss_scale) * value
        if self.loss_scale != 1.0:
            g = g * (1.0 / self.loss_scale)
        accum = self._slot("moments", index)
        accum *= self.momentum
        accum += g
        if self.use_nesterov:
            value -= g * self.learning_rate + accum * self.momentum * self.learning_rate
        else:
            value -= self.learning_rate * accum


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

    def _update(self, index: int, param: Parameter, grad: np.ndarray) -> None:
        value = param.value
        g = grad + self.weight_decay * value if self.weight_decay else grad
        m = self._slot("exp_avg", index)
        v = self._slot("exp_avg_sq", index)
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * (g * g)
        step_size = self.learning_rate / (1.0 - self.beta1**self.steps)
        denom = np.sqrt(v) / math.sqrt(1.0 - self.beta2**self.steps) + self.eps
        value -= step_size * (m / denom)
