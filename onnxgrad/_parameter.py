"""Trainable weights: :class:`Parameter` and :class:`ParameterTuple`.

A Parameter owns one host buffer that sessions bind by pointer, and, once a
device session has used it, a copy on that device (see ``_device``).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from onnxgrad.errors import InputError

__all__ = ["Parameter", "ParameterTuple"]


# Bumped whenever a device copy becomes newer than its host buffer, so that CPU sessions,
# which read host buffers, know when to read some back.
_host_writes_pending = 0


class Parameter:
    """A trainable weight of a :class:`Network`: an ONNX initializer's value.

    The array is owned by the network and bound to its ONNX Runtime sessions;
    assign through :attr:`value` or :meth:`set_data` (both copy into the same
    buffer), or update ``param.value`` in place, and the next call sees it.

    Args:
        value: the initial value (copied).
        name: the ONNX initializer name.
    """

    __slots__ = ("name", "_value", "_mirror", "_mirror_device", "_mirror_stale", "_host_stale")

    def __init__(self, value: Any, name: str) -> None:
        self.name = name
        self._value = np.array(value, order="C", copy=True)
        # The copy on a device (see _device): an OrtValue, and which side holds the newest value.
        self._mirror: Any = None
        self._mirror_device: tuple[str, int] | None = None
        self._mirror_stale = False
        self._host_stale = False

    @property
    def value(self) -> np.ndarray:
        """The live buffer (not a copy): in-place updates are seen by the next call.

        Where the newest value is on a device (after an optimizer step there),
        it is read back first.
        """
        if self._host_stale:
            self._sync_host()
        if self._mirror is not None:
            self._mirror_stale = True  # the caller may write into the buffer
        return self._value

    @value.setter
    def value(self, new: Any) -> None:
        self.set_data(new)

    def _sync_host(self) -> None:
        np.copyto(self._value, self._mirror.numpy())
        self._host_stale = False

    def _on_device(self, device: tuple[str, int]) -> Any:
        """The parameter as an OrtValue on ``device``, uploaded only when the host has changed."""
        from onnxgrad import _device

        if self._mirror_device != device:
            if self._host_stale:
                self._sync_host()
            self._mirror, self._mirror_device = _device.to_device(self._value, device), device
        elif self._mirror_stale:
            self._mirror.update_inplace(self._value)
        self._mirror_stale = False
        return self._mirror

    def _adopt(self, value: Any, device: tuple[str, int]) -> None:
        """Takes ``value`` (an OrtValue on ``device``) as the newest value; the host copy is now stale."""
        global _host_writes_pending
        self._mirror, self._mirror_device = value, device
        self._mirror_stale, self._host_stale = False, True
        _host_writes_pending += 1

    def set_data(self, new: Any) -> None:
        """Copies ``new`` into the parameter's buffer; shape and dtype must match."""
        array = np.asarray(new)
        if array.shape != self._value.shape:
            raise InputError(
                f"Parameter {self.name!r} has shape {list(self._value.shape)}, got a value of shape "
                f"{list(array.shape)}: pass an array of the parameter's shape."
            )
        if array.dtype != self._value.dtype:
            raise InputError(
                f"Parameter {self.name!r} has dtype {self._value.dtype}, got {array.dtype}: "
                f"convert with .astype(np.{self._value.dtype})."
            )
        np.copyto(self._value, array)
        self._host_stale = False
        if self._mirror is not None:
            self._mirror_stale = True

    def asnumpy(self) -> np.ndarray:
        """A copy of the current value (MindSpore's spelling)."""
        if self._host_stale:
            self._sync_host()
        return self._value.copy()

    @property
    def shape(self) -> tuple[int, ...]:
        """The parameter's shape."""
        return self._value.shape

    @property
    def dtype(self) -> np.dtype:
        """The parameter's numpy dtype."""
        return self._value.dtype

    def __repr__(self) -> str:
        return f"Parameter(name={self.name!r}, shape={list(self.shape)}, dtype={self.dtype})"


class ParameterTuple(tuple):
    """A tuple of :class:`Parameter` with unique names, like MindSpore's ``ParameterTuple``."""

    def __new__(cls, iterable: Iterable[Parameter] = ()) -> ParameterTuple:
        items = tuple(iterable)
        seen = set()
        for item in items:
            if not isinstance(item, Parameter):
                raise InputError(
                    f"ParameterTuple holds onnxgrad.Parameter objects, got {type(item).__name__}: "
                    "take them from network.trainable_params()."
                )
            if item.name in seen:
                raise InputError(f"ParameterTuple has {item.name!r} twice: pass each parameter once.")
            seen.add(item.name)
        return super().__new__(cls, items)
