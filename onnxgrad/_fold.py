"""Folding of static shape arithmetic: ``Shape`` of a statically shaped tensor and the integer
ops on it become constants.

Exporters that trace (PyTorch's TorchScript exporter, and anyone's hand export) record ``x.shape``
as ``Shape`` nodes and the arithmetic on it as ops even when every shape is static. Gradient
lowerings need the shapes those ops compute. The PyTorch converter folds its own exports; graph
preparation folds any model whose inputs all have static shapes for the call.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["fold_static_shapes"]


# Ops whose outputs are folded when all their inputs are constants: the shape arithmetic
# exporters write (TF-style "same" padding, window partitions) on top of Shape.
_FOLDABLE = frozenset({
    "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Floor", "Ceil", "Sqrt", "Max", "Min", "Pow",
    "Cast", "Gather", "Slice", "Concat", "Unsqueeze", "Squeeze", "Reshape", "Identity", "Range",
    "ConstantOfShape", "Equal", "Less", "Greater", "Not", "And", "Or", "Where", "ReduceProd", "ReduceSum",
    "ReduceMax", "ReduceMin", "Expand", "Size", "Transpose",
})
# Folded results larger than this stay computed: a constant this big costs more than the ops.
_MAX_FOLDED_ELEMENTS = 1 << 16


def fold_static_shapes(model: onnx.ModelProto, variable: set[str]) -> int:
    """Replaces computations of static shapes with constants, in place; returns how many nodes it folded.

    Exporters that trace (PyTorch's TorchScript exporter) record ``x.shape``
    as ``Shape`` nodes and the arithmetic on it as ops, even when every shape
    is static. Gradient graphs need the shapes those ops compute (a ``Pad``
    whose pads come from ``Shape`` has an output shape nobody knows), so each
    ``Shape`` of a statically shaped tensor, and each op of :data:`_FOLDABLE`
    whose inputs are all constants, becomes a ``Constant``. Initializers in
    ``variable`` (parameters, buffers) are never constants.
    """
    from onnx import reference, shape_inference

    graph = model.graph
    constants: dict[str, np.ndarray] = {
        i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name not in variable
    }
    folded = 0
    for _ in range(8):  # each round may make more shapes static
        inferred = shape_inference.infer_shapes(_without_initializer_data(model))
        shapes = {}
        for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
            dims = value.type.tensor_type.shape.dim
            if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
                shapes[value.name] = [d.dim_value for d in dims]
        for init in graph.initializer:
            shapes[init.name] = list(init.dims)
        changed = 0
        for index in range(len(graph.node)):
            node = graph.node[index]
            if node.domain not in ("", "ai.onnx") or len(node.output) != 1:
                continue
            if node.op_type == "Constant":
                constants.setdefault(node.output[0], _constant_value(node))
                continue
            if node.op_type == "Shape" and node.input[0] in shapes:
                start = next((a.i for a in node.attribute if a.name == "start"), 0)
                end = next((a.i for a in node.attribute if a.name == "end"), None)
                value = np.array(shapes[node.input[0]][start:end], np.int64)
            elif node.op_type in _FOLDABLE and all(not name or name in constants for name in node.input):
                try:
                    value = np.asarray(_evaluate(reference, node, constants, model)[0])
                except Exception:  # an op the reference evaluator cannot run: leave it computed
                    continue
            else:
                continue
            if value.size > _MAX_FOLDED_ELEMENTS:
                continue
            graph.node[index].CopyFrom(
                helper.make_node("Constant", [], [node.output[0]], value=numpy_helper.from_array(value))
            )
            constants[node.output[0]] = value
            changed += 1
        folded += changed
        if not changed:
            break
    return folded


def _without_initializer_data(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with initializers as typed graph inputs: shape inference without copying the weights."""
    graph = model.graph
    inputs = list(graph.input) + [
        helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in graph.initializer
    ]
    light = helper.make_model(
        helper.make_graph(graph.node, graph.name, inputs, graph.output, value_info=graph.value_info),
        opset_imports=list(model.opset_import), ir_version=model.ir_version,
    )
    light.functions.extend(model.functions)
    return light


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    attribute = node.attribute[0]
    value = helper.get_attribute_value(attribute)
    return numpy_helper.to_array(value) if attribute.name == "value" else np.asarray(value)


def _evaluate(reference, node: onnx.NodeProto, constants: dict[str, np.ndarray], model: onnx.ModelProto):
    names = [name for name in node.input if name]
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(constants[n].dtype), None)
              for n in names]
    outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in node.output]
    single = helper.make_model(
        helper.make_graph([node], "fold", inputs, outputs), opset_imports=list(model.opset_import),
        ir_version=model.ir_version,
    )
    return reference.ReferenceEvaluator(single).run(None, {n: constants[n] for n in names})
