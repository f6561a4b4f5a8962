"""The one registry of lowerings: which training kernel each lowering replaces.

Family modules register a lowering with :func:`lowers` and, for a kernel with no
lowering whose refusal can say more than its name, a refusal with :func:`refuses`;
the pass (:func:`onnxgrad._lower.lower`) looks nodes up in :data:`LOWERINGS` and
:data:`REFUSALS`.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import onnx

from onnxgrad._lower._lowerer import Lowerer
from onnxgrad.errors import UnsupportedGradientError

#: ``lowering(lw, node)`` writes standard ops computing ``node``'s outputs through ``lw``.
Lowering = Callable[[Lowerer, onnx.NodeProto], None]
#: ``refusal(lw, node)``: the error for a node that has no lowering.
Refusal = Callable[[Lowerer, onnx.NodeProto], UnsupportedGradientError]

#: ``{(domain, op_type): lowering}``, in registration order.
LOWERINGS: dict[tuple[str, str], Lowering] = {}
#: Kernels with no lowering whose refusal can say more than their name: ``{(domain, op_type): refusal}``.
REFUSALS: dict[tuple[str, str], Refusal] = {}

_Entry = TypeVar("_Entry", Lowering, Refusal)


def _registrar(table: dict[tuple[str, str], _Entry], keys: tuple[str, ...]) -> Callable[[_Entry], _Entry]:
    """A decorator entering its function in ``table`` under each ``"domain::op_type"`` of ``keys``
    (``"::op_type"`` for the default domain)."""

    def register(fn: _Entry) -> _Entry:
        for key in keys:
            domain, _, op_type = key.rpartition("::")
            table[(domain, op_type)] = fn
        return fn

    return register


def lowers(*keys: str) -> Callable[[Lowering], Lowering]:
    """Registers the decorated function as the lowering of ``keys`` (``"com.microsoft::ReluGrad"``).

    Returns:
        The decorator, which returns the function unchanged.
    """
    return _registrar(LOWERINGS, keys)


def refuses(*keys: str) -> Callable[[Refusal], Refusal]:
    """Registers the decorated function as the refusal of kernels ``keys`` that have no lowering.

    Returns:
        The decorator, which returns the function unchanged.
    """
    return _registrar(REFUSALS, keys)
