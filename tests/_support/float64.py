"""A float64 copy of a float32 model, for finite differences at full precision."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper


def _retype(value_info: onnx.ValueInfoProto) -> None:
    tensor = value_info.type.tensor_type
    if tensor.elem_type == TensorProto.FLOAT:
        tensor.elem_type = TensorProto.DOUBLE


def to_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every float32 tensor of the main graph becomes float64 (inputs, outputs,
    initializers, Constant values and Cast targets)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    for value in [*graph.input, *graph.output]:
        _retype(value)
    del graph.value_info[:]
    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name))
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.FLOAT:
                attribute.i = TensorProto.DOUBLE
            if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == TensorProto.FLOAT:
                attribute.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attribute.t).astype(np.float64), attribute.t.name))
    return result
