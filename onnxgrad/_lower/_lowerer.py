"""The state one lowering pass shares: the writer, static types and producers of the graph."""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxgrad._graph import GraphWriter, default_opset
from onnxgrad._graph import attrs as node_attrs
from onnxgrad.errors import GradientBuildError, UnsupportedGradientError

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
# The builder names the gradient of tensor t "t_grad", with a counter when t has several consumers.
GRAD_NAME = re.compile(r"^(.+?)_grad(?:_\d+)*$")


class NotStatic(GradientBuildError):
    """A lowering needs a static shape or value that is not known (yet)."""


class Lowerer:
    """Shared state of one lowering: the writer, static types and producers."""

    def __init__(self, model: onnx.ModelProto, types: dict) -> None:
        self.model = model
        self.graph = model.graph
        self.w = GraphWriter(self.graph, default_opset(model), prefix="onnxgrad/lower")
        self.types = types
        self.producer = {out: node for node in self.graph.node for out in node.output if out}
        self.initializers = {init.name: init for init in self.graph.initializer}

    # --- reading the graph -------------------------------------------------
    def fail(
        self, node: onnx.NodeProto, why: str, error: type[GradientBuildError] = GradientBuildError
    ) -> GradientBuildError:
        message = (
            f"Cannot express {node.domain + '::' if node.domain else ''}{node.op_type} (node {node.name!r}) in "
            f"standard ONNX ops: {why}. Please report this with the model."
        )
        if issubclass(error, UnsupportedGradientError):
            return error(message, op_type=node.op_type, node=node.name)
        return error(message)

    def type_of(self, name: str) -> tuple[int, tuple | None]:
        found = self.types.get(name)
        if found is None:
            match = GRAD_NAME.match(name)  # a gradient is typed like its tensor
            if match:
                found = self.types.get(match.group(1))
        return found if found is not None else (0, None)

    def elem(self, name: str) -> int:
        return self.type_of(name)[0]

    def shape(self, name: str, node: onnx.NodeProto) -> tuple[int, ...]:
        shape = self.type_of(name)[1]
        if shape is None or any(d is None for d in shape):
            raise self.fail(node, f"the shape of {name!r} is not known statically", NotStatic)
        return tuple(int(d) for d in shape)

    def rank(self, name: str, node: onnx.NodeProto) -> int:
        shape = self.type_of(name)[1]
        if shape is None:
            raise self.fail(node, f"the rank of {name!r} is not known statically", NotStatic)
        return len(shape)

    def static_value(self, name: str, node: onnx.NodeProto) -> np.ndarray:
        """The value of an int tensor known before running: an initializer, a Constant or Shape(static)."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        source = self.producer.get(name)
        if source is not None and source.op_type == "Constant" and source.domain in STANDARD_DOMAINS:
            return numpy_helper.to_array(helper.get_attribute_value(source.attribute[0]))
        if source is not None and source.op_type == "Shape":
            shape = self.shape(source.input[0], node)
            attrs = node_attrs(source)
            return np.array(shape[attrs.get("start", 0) : attrs.get("end", len(shape))], np.int64)
        raise self.fail(node, f"the value of {name!r} is not known statically", NotStatic)

    def forward_producer(self, grad: str, op_types: Sequence[str], node: onnx.NodeProto) -> onnx.NodeProto:
        """The forward node whose output's gradient is ``grad``."""
        match = GRAD_NAME.match(grad)
        source = self.producer.get(match.group(1)) if match else None
        if source is None or source.op_type not in op_types:
            raise self.fail(node, f"its forward {'/'.join(op_types)} node (from {grad!r}) was not found")
        return source

    # --- writing ------------------------------------------------------------
    def scalar(self, value: float, like: str) -> str:
        """A 0-d constant of ``like``'s dtype."""
        elem = self.elem(like)
        if elem:
            return self.w.constant(np.array(value, helper.tensor_dtype_to_np_dtype(elem)))
        return self.w.op("CastLike", self.w.constant(np.array(value, np.float32)), like)

    def ints(self, values: Sequence[int]) -> str:
        return self.w.constant(np.array(list(values), np.int64))

    def zeros(self, shape: str, like: str) -> str:
        """Zeros of shape tensor ``shape`` and ``like``'s dtype."""
        elem = self.elem(like)
        if elem:
            value = numpy_helper.from_array(np.zeros(1, helper.tensor_dtype_to_np_dtype(elem)))
            return self.w.op("ConstantOfShape", shape, value=value)
        return self.w.op("Expand", self.scalar(0.0, like), shape)

    def reduce_to(self, x: str, from_shape: Sequence[int], to_shape: Sequence[int], out: str | None = None) -> str:
        """Sums a broadcast result back to an operand's shape."""
        lead = len(from_shape) - len(to_shape)
        axes = list(range(lead)) + [
            lead + i for i, d in enumerate(to_shape) if d == 1 and from_shape[lead + i] != 1
        ]
        if axes:
            x = self.w.reduce("ReduceSum", x, axes, keepdims=True)
        if tuple(from_shape) != tuple(to_shape) or out is not None:
            if out is None:
                return self.w.op("Reshape", x, self.ints(to_shape))
            self.w.node("Reshape", [x, self.ints(to_shape)], [out])
            return out
        return x

    def emit(self, op_type: str, inputs: Sequence[str], out: str, **attrs) -> None:
        """A node writing the lowered node's output ``out``."""
        self.w.node(op_type, inputs, [out], **attrs)
