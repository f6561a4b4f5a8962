"""Bringing models within what onnxruntime-training's gradient builder accepts."""

from __future__ import annotations

import onnx
from onnx import version_converter

from onnxgrad._graph import default_opset, is_default_domain
from onnxgrad._validate import walk_nodes
from onnxgrad.errors import ModelError

__all__ = ["MAX_IR_VERSION", "MAX_OPSET", "normalize", "clamp_ir_version"]

#: The newest IR version and default-domain opset onnxruntime-training 1.19 builds gradients for.
MAX_IR_VERSION = 10
MAX_OPSET = 21
#: The oldest default-domain opset gradient graphs are lowered at: ScatterElements and ScatterND
#: accumulate (``reduction="add"``) from opset 16, which the standard-op gradients of Gather,
#: GatherElements and MaxPool need.
MIN_OPSET = 16
#: The newest default-domain opset onnxgrad converts down: opsets 23 and 24 changed existing ops
#: only by new element types (float4e2m1, float8e8m0, bfloat16 for TopK and SplitToSequence), so
#: a model without those types and without the ops they added is the same model at opset 22.
NEWEST_CONVERTED_OPSET = 24
_OPS_SINCE_23 = frozenset({"Attention", "RMSNormalization", "RotaryEmbedding", "TensorScatter", "Swish"})
# Their opset-23/24 versions change more than types (or are not known to this onnx): refused.
_CHANGED_SINCE_23 = frozenset({"QuantizeLinear", "DequantizeLinear"})
_TYPES_SINCE_23 = frozenset({23, 24})  # FLOAT4E2M1, FLOAT8E8M0


def normalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Converts an (onnxgrad-owned) model down to IR <= 10 and opset <= 21.

    Returns the same object when nothing needs converting.

    Raises:
        ModelError: the model uses ops that cannot be expressed in opset 21.
    """
    try:
        opset = default_opset(model)
    except ValueError as err:
        raise ModelError("The model imports no default ONNX opset: add an opset_import for domain ''.") from err
    if opset > 22:
        model = _relabel_newer(model, opset)
        opset = 22
    if opset > MAX_OPSET or opset < MIN_OPSET:
        target = min(max(opset, MIN_OPSET), MAX_OPSET)
        try:
            converted = _relabel_opset_22(model) if opset == 22 else None
            if converted is None:
                converted = version_converter.convert_version(model, target)
        except Exception as err:
            raise ModelError(
                f"The model uses opset {opset}; onnxgrad builds gradients at opsets {MIN_OPSET} to {MAX_OPSET} and "
                f"the conversion to opset {target} failed ({err}). Re-export the model with an opset in that range."
            ) from err
        # The converter drops what it does not know: metadata (parameter maps) and other domains.
        del converted.metadata_props[:]
        converted.metadata_props.extend(model.metadata_props)
        known = {o.domain for o in converted.opset_import}
        converted.opset_import.extend(o for o in model.opset_import if o.domain not in known)
        model = converted
    clamp_ir_version(model)
    return model


def _uses_types(graph: onnx.GraphProto, types: frozenset[int]) -> bool:
    values = [*graph.input, *graph.output, *graph.value_info]
    if any(v.type.tensor_type.elem_type in types for v in values) or any(i.data_type in types for i in graph.initializer):
        return True
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type in ("Cast", "CastLike", "EyeLike", "RandomNormal", "RandomUniform") and attr.i in types:
                return True
            if attr.HasField("t") and attr.t.data_type in types:
                return True
            if any(_uses_types(g, types) for g in ([attr.g] if attr.HasField("g") else list(attr.graphs))):
                return True
    return False


def _uses_bfloat16(graph: onnx.GraphProto) -> bool:
    return _uses_types(graph, frozenset({onnx.TensorProto.BFLOAT16}))


def _relabel_newer(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """An opset-23/24 model as the same model at opset 22 (see NEWEST_CONVERTED_OPSET), or a ModelError."""
    if opset > NEWEST_CONVERTED_OPSET:
        raise ModelError(
            f"The model uses opset {opset}; onnxgrad converts opsets up to {NEWEST_CONVERTED_OPSET} down to "
            f"{MAX_OPSET}. Re-export the model with opset {MAX_OPSET} (e.g. torch.onnx.export(..., "
            f"opset_version={MAX_OPSET}))."
        )
    nodes = [*walk_nodes(model.graph.node), *(n for f in model.functions for n in walk_nodes(f.node))]
    ops = {n.op_type for n in nodes if is_default_domain(n.domain)}
    newer = sorted(ops & (_OPS_SINCE_23 | _CHANGED_SINCE_23))
    if newer:
        raise ModelError(
            f"The model uses opset {opset} and {newer}, which onnxgrad cannot express at opset {MAX_OPSET}: "
            f"re-export the model with opset {MAX_OPSET} (the exporter then decomposes these ops)."
        )
    if _uses_types(model.graph, _TYPES_SINCE_23):
        raise ModelError(
            f"The model uses opset {opset} and float4e2m1/float8e8m0 tensors, which opset {MAX_OPSET} lacks: "
            "use float16, bfloat16 or float32 tensors."
        )
    relabeled = onnx.ModelProto()
    relabeled.CopyFrom(model)
    for entry in relabeled.opset_import:
        if is_default_domain(entry.domain):
            entry.version = 22
    for function in relabeled.functions:
        for entry in function.opset_import:
            if is_default_domain(entry.domain) and entry.version > 22:
                entry.version = 22
    return relabeled


def _relabel_opset_22(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """Opset 22 only added bfloat16 to its ops' types (and the converter lacks some 22 -> 21
    adapters, GlobalMaxPool's among them): a model without bfloat16 is the same at opset 21."""
    if _uses_bfloat16(model.graph):
        return None
    relabeled = onnx.ModelProto()
    relabeled.CopyFrom(model)
    for opset in relabeled.opset_import:
        if is_default_domain(opset.domain):
            opset.version = MAX_OPSET
    onnx.checker.check_model(relabeled)
    return relabeled


def clamp_ir_version(model: onnx.ModelProto) -> None:
    """Sets an (onnxgrad-owned) model above IR 10 to IR 10, in place."""
    if model.ir_version > MAX_IR_VERSION:
        # IR 11 adds nothing a converted opset-21 graph needs; the field is what the builder checks.
        model.ir_version = MAX_IR_VERSION
