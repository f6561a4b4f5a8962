"""Elementwise arithmetic written once, run as numpy or recorded as an ONNX graph.

An optimizer's update rule is plain arithmetic on arrays (``+ - * /``, ``sqrt``).
Called with numpy arrays it runs on the host; called with :class:`Symbol` s from
a :class:`Tracer` it records the same operations, in the same order, as ONNX
nodes, so a device runs exactly the host's float arithmetic. Every scalar is a
graph input (a learning rate changes between steps; the graph must not).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import helper

from onnxgrad import _versions
from onnxgrad._graph import GraphWriter

__all__ = ["Tracer", "Symbol"]


class Symbol:
    """A tensor in a :class:`Tracer`'s graph; arithmetic on it appends nodes."""

    __slots__ = ("tracer", "name")

    def __init__(self, tracer: Tracer, name: str) -> None:
        self.tracer, self.name = tracer, name

    def _apply(self, op: str, other: Symbol, reverse: bool = False) -> Symbol:
        if not isinstance(other, Symbol):
            raise TypeError(f"{op} with {type(other).__name__}: pass scalars as tracer inputs, not constants")
        a, b = (other, self) if reverse else (self, other)
        return Symbol(self.tracer, self.tracer.writer.op(op, a.name, b.name))

    def __add__(self, other: Symbol) -> Symbol:
        return self._apply("Add", other)

    def __radd__(self, other: Symbol) -> Symbol:
        return self._apply("Add", other, reverse=True)

    def __sub__(self, other: Symbol) -> Symbol:
        return self._apply("Sub", other)

    def __rsub__(self, other: Symbol) -> Symbol:
        return self._apply("Sub", other, reverse=True)

    def __mul__(self, other: Symbol) -> Symbol:
        return self._apply("Mul", other)

    def __rmul__(self, other: Symbol) -> Symbol:
        return self._apply("Mul", other, reverse=True)

    def __truediv__(self, other: Symbol) -> Symbol:
        return self._apply("Div", other)

    def __rtruediv__(self, other: Symbol) -> Symbol:
        return self._apply("Div", other, reverse=True)


class Tracer:
    """Records arithmetic on :class:`Symbol` s into a standard ONNX model.

    Use it as the array namespace of a rule: ``tracer.sqrt(x)`` where numpy
    code says ``np.sqrt(x)``.
    """

    def __init__(self) -> None:
        self._graph = helper.make_graph([], "onnxgrad_update", [], [])
        self.writer = GraphWriter(self._graph, _versions.MIN_OPSET, prefix="update")

    def input(self, name: str, dtype: np.dtype, shape: Sequence[int]) -> Symbol:
        """A graph input."""
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        self._graph.input.append(helper.make_tensor_value_info(name, elem, list(shape)))
        return Symbol(self, name)

    def output(self, value: Symbol, name: str, dtype: np.dtype, shape: Sequence[int]) -> None:
        """Makes ``value`` the graph output ``name``."""
        self.writer.node("Identity", [value.name], [name])
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        self._graph.output.append(helper.make_tensor_value_info(name, elem, list(shape)))

    @staticmethod
    def sqrt(value: Symbol) -> Symbol:
        """Elementwise square root."""
        return Symbol(value.tracer, value.tracer.writer.op("Sqrt", value.name))

    def model(self) -> onnx.ModelProto:
        """The recorded graph as a checked model."""
        model = helper.make_model(
            self._graph, opset_imports=[helper.make_opsetid("", _versions.MIN_OPSET)], producer_name="onnxgrad"
        )
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model
