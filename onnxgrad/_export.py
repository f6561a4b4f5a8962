"""Standalone ONNX files: the gradient graph ``onnxgrad grad`` writes, and the
plain inference model ``onnxgrad train`` writes.

The exported gradient graph runs in a training build of ONNX Runtime (its
backward nodes use ``com.microsoft`` kernels such as ``ReluGrad``) with nothing
from onnxgrad. Its contract:

**Inputs**, in this order:

1. the network's inputs, by their names; with a loss attached the backbone's
   inputs and then :data:`onnxgrad.nn.LABEL` (``label``);
2. with sensitivities, ``<output>`` + :data:`SENS_SUFFIX` (``logits_sens``)
   for each floating-point output, shaped and typed like that output: the
   gradient fed into the output (MindSpore's ``sens``). Without them the seed
   is ones: the gradients are those of ``sum(outputs)``;
3. with ``weights_as_inputs``, every trainable weight by its initializer name.
   Otherwise the weights are initializers holding their current values.

Every input has a concrete shape (symbolic sizes are fixed at export, see
:func:`concrete_shapes`): the file computes gradients for that shape only.

**Outputs**, in this order:

1. the network's outputs;
2. :data:`LOSS` (``onnxgrad/loss``): the scalar that is differentiated,
   ``sum_k ReduceSum(output_k * sens_k)``;
3. ``<x>_grad`` (:func:`onnxgrad._gradient.grad_name`) for each differentiated
   input, then each differentiated weight, in the order asked for. A tensor no
   output depends on has no ``_grad`` output (its gradient is zero).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Mapping, Sequence

import onnx
from onnx import numpy_helper

from onnxgrad import _engine, _files, _gradient
from onnxgrad._graph import TensorInfo, tensor_infos, unique_name
from onnxgrad._network import Network
from onnxgrad._prepare import LOSS
from onnxgrad.errors import InputError, ModelError

__all__ = [
    "ALL",
    "LOSS",
    "SENS_SUFFIX",
    "ExportedGradient",
    "concrete_shapes",
    "export_gradient",
    "inference_model",
    "save_model",
]

logger = logging.getLogger(__name__)

#: Selects every float input (``inputs=``) or every trainable weight (``weights=``).
ALL = "all"
#: The sensitivity input of output ``y`` is named ``y + SENS_SUFFIX``.
SENS_SUFFIX = "_sens"


@dataclasses.dataclass
class ExportedGradient:
    """A standalone forward+backward graph and its interface.

    Attributes:
        model: the graph (see the module docstring for the contract).
        inputs: the graph inputs, in order, with concrete shapes.
        outputs: the graph outputs, in order (gradient shapes as inferred).
        notes: what the export decided on the caller's behalf (symbolic sizes
            fixed, tensors left out because no output depends on them).
    """

    model: onnx.ModelProto
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    notes: list[str]


def concrete_shapes(
    network: Network, overrides: Mapping[str, Sequence[int]] | None = None
) -> tuple[list[tuple[int, ...]], list[str]]:
    """A concrete shape for every network input.

    A size comes from ``overrides``, else from another input whose size of the
    same name (``N``) is known, else it is 1.

    Args:
        network: the network.
        overrides: ``{input name: shape}`` for inputs the caller sizes.

    Returns:
        ``(shapes, notes)``: one shape per input, in order, and one note per
        symbolic size set to 1.

    Raises:
        InputError: an unknown input name, a shape that contradicts the model,
            a named size given two values, or an input of unknown rank without
            an override.
    """
    overrides = dict(overrides or {})
    names = [info.name for info in network.inputs]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise InputError(f"No input named {unknown[0]!r}: the inputs are {names}. Fix the name in the shape.")
    bound: dict[str, int] = {}
    for info in network.inputs:
        if info.name not in overrides:
            continue
        shape = tuple(int(d) for d in overrides[info.name])
        if not info.accepts(shape) or any(d < 0 for d in shape):
            raise InputError(
                f"Input {info.name!r} has shape {info.shape_text()}; {list(shape)} does not fit it: "
                "give one size per axis, keeping the fixed ones."
            )
        for want, got in zip(info.shape or (), shape):
            if isinstance(want, str):
                if bound.setdefault(want, got) != got:
                    raise InputError(
                        f"Size {want!r} is {bound[want]} in one input and {got} in {info.name!r}: "
                        "inputs that share a named size need the same value."
                    )

    shapes: list[tuple[int, ...]] = []
    notes: list[str] = []
    for info in network.inputs:
        if info.name in overrides:
            shapes.append(tuple(int(d) for d in overrides[info.name]))
            continue
        if info.shape is None:
            raise InputError(f"Input {info.name!r} has no declared shape: give its shape (NAME=D1,D2,...).")
        sizes: list[int] = []
        for axis, dim in enumerate(info.shape):
            if isinstance(dim, int):
                sizes.append(dim)
            elif isinstance(dim, str) and dim in bound:
                sizes.append(bound[dim])
            else:
                label = repr(dim) if dim else f"axis {axis}"
                notes.append(f"input {info.name!r}: symbolic size {label} set to 1")
                if dim:
                    bound[dim] = 1
                sizes.append(1)
        shapes.append(tuple(sizes))
    return shapes, notes


def _positions(network: Network, inputs: Sequence[str] | str) -> list[int]:
    float_positions = [i for i, info in enumerate(network.inputs) if info.is_float]
    if inputs == ALL:
        return float_positions
    names = [info.name for info in network.inputs]
    positions = []
    for name in inputs:
        if name not in names:
            raise InputError(f"No input named {name!r}: the inputs are {names}. Fix the name.")
        pos = names.index(name)
        if pos not in float_positions:
            raise InputError(
                f"Input {name!r} has dtype {network.inputs[pos].dtype} and no gradient of its own: "
                "differentiate floating-point inputs only."
            )
        positions.append(pos)
    return list(dict.fromkeys(positions))


def _weight_names(network: Network, weights: Sequence[str] | str) -> list[str]:
    params = network.parameters_dict()
    if weights == ALL:
        return list(params)
    for name in weights:
        if name not in params:
            raise InputError(f"No trainable weight named {name!r}; the weights are {list(params)}. Fix the name.")
    return list(dict.fromkeys(weights))


def _rename_input(graph: onnx.GraphProto, old: str, new: str) -> None:
    for value in graph.input:
        if value.name == old:
            value.name = new
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _bake_weights(model: onnx.ModelProto, network: Network) -> None:
    """Turns the weights and buffers (graph inputs) back into initializers with their current values."""
    params = {**network.parameters_dict(), **network.buffers_dict()}
    graph = model.graph
    kept = [v for v in graph.input if v.name not in params]
    used = {v.name for v in graph.input if v.name in params}
    del graph.input[:]
    graph.input.extend(kept)
    for name, param in params.items():
        if name in used:
            graph.initializer.append(numpy_helper.from_array(param.value, name))


def _prune_opsets(model: onnx.ModelProto) -> None:
    """Drops the opset imports the builder adds but no node uses."""
    used = {"", "ai.onnx"}
    used.update(node.domain for node in model.graph.node)
    for function in model.functions:
        used.add(function.domain)
        used.update(node.domain for node in function.node)
    kept = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)


def _describe(values, docs: Mapping[str, str]) -> None:
    for value in values:
        if value.name in docs:
            value.doc_string = docs[value.name]


def export_gradient(
    network: Network,
    inputs: Sequence[str] | str = (),
    weights: Sequence[str] | str = ALL,
    sens: bool = False,
    shapes: Mapping[str, Sequence[int]] | None = None,
    weights_as_inputs: bool = False,
) -> ExportedGradient:
    """Builds the standalone forward+backward graph of ``network``.

    Args:
        network: the network (a loss cell to export a training step).
        inputs: names of the float inputs to differentiate, or :data:`ALL`.
        weights: names of the trainable weights to differentiate, or :data:`ALL`.
        sens: take the sensitivities as inputs (else the seed is ones).
        shapes: concrete shapes for inputs with symbolic sizes (see
            :func:`concrete_shapes`).
        weights_as_inputs: keep every trainable weight as a graph input instead
            of an initializer.

    Returns:
        The graph and its interface (module docstring).

    Raises:
        InputError: unknown or int inputs, unknown weights, nothing to
            differentiate, or bad shapes.
        UnsupportedGradientError: an op on the path has no gradient.

    Example:
        >>> net = onnxgrad.nn.WithLossCell(onnxgrad.load("models/digits_mlp.onnx"),
        ...                                onnxgrad.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
        ...                                label_dtype=np.int64)
        >>> exported = export_gradient(net, shapes={"x": [32, 64]})
        >>> [o.name for o in exported.outputs][:3]
        ['loss', 'onnxgrad/loss', 'fc1.weight_grad']
    """
    positions = _positions(network, inputs)
    weight_names = _weight_names(network, weights)
    if not positions and not weight_names:
        raise InputError(
            "Nothing to differentiate: name float inputs and/or trainable weights "
            f"(inputs {[i.name for i in network.inputs]}, weights {list(network.parameters_dict())})."
        )
    input_shapes, notes = concrete_shapes(network, shapes)
    spec = _engine.GradSpec(inputs=tuple(positions), weights=tuple(weight_names), sens=sens)
    built = _engine.gradient_model(network, spec, input_shapes)
    prepared = built.layout
    model = onnx.ModelProto()
    model.CopyFrom(built.model)  # the built graph is shared through the gradient cache
    graph = model.graph
    if not prepared.xs:
        raise InputError(
            "No output depends on the inputs and weights asked for (or no output is floating point): "
            "there is no gradient to export."
        )

    docs: dict[str, str] = {}
    for info in network.inputs:
        docs[info.name] = "network input"
    # Sensitivities: onnxgrad/sens_<k> -> <output>_sens.
    taken = {v.name for v in graph.input} | {v.name for v in graph.output}
    taken |= {name for node in graph.node for name in (*node.input, *node.output)}
    sens_names = []
    for k, old in sorted(prepared.sens_inputs.items()):
        output = network.outputs[k].name
        new = unique_name(output + SENS_SUFFIX, taken)
        _rename_input(graph, old, new)
        sens_names.append(new)
        docs[new] = f"sensitivity of output {output!r}: the gradient fed into it (shaped like it)"

    # Outputs: network outputs, the loss, then the gradients in the order asked for.
    grads = []
    for pos in positions:
        targets = prepared.input_targets.get(pos, [])
        name = network.inputs[pos].name
        if targets:
            grads.append(targets[0])
        else:
            notes.append(f"input {name!r}: no output depends on it, so it has no gradient output")
    for name in weight_names:
        if name in prepared.weight_targets:
            grads.append(name)
        else:
            notes.append(f"weight {name!r}: no output depends on it, so it has no gradient output")
    outputs = {v.name: v for v in graph.output}
    order = [o.name for o in network.outputs] + [LOSS] + [_gradient.grad_name(x) for x in grads]
    new_outputs = []
    for name in order:
        value = onnx.ValueInfoProto()
        value.CopyFrom(outputs[name])
        new_outputs.append(value)
    del graph.output[:]
    graph.output.extend(new_outputs)
    for o in network.outputs:
        docs[o.name] = "network output"
    docs[LOSS] = "the scalar differentiated: sum over outputs of ReduceSum(output * sensitivity)"
    for x in grads:
        docs[_gradient.grad_name(x)] = f"gradient of {LOSS} with respect to {x!r}"

    # Inputs: network inputs, sensitivities, then (optionally) the weights.
    params = network.parameters_dict()
    by_name = {v.name: v for v in graph.input}
    order = [i.name for i in network.inputs] + sens_names
    if weights_as_inputs:
        order += [name for name in params if name in by_name]
        docs.update({name: "trainable weight" for name in params})
    new_inputs = []
    for name in order:
        value = onnx.ValueInfoProto()
        value.CopyFrom(by_name[name])
        new_inputs.append(value)
    if not weights_as_inputs:
        _bake_weights(model, network)
    del graph.input[:]
    graph.input.extend(new_inputs)
    _describe(graph.input, docs)
    _describe(graph.output, docs)
    _prune_opsets(model)

    from onnxgrad import __version__

    model.producer_name, model.producer_version = "onnxgrad", __version__
    graph.name = f"{graph.name}_grad"
    model.doc_string = (
        "Forward and backward graph written by onnxgrad (see onnxgrad/_export.py). Inputs: "
        + ", ".join(order)
        + ". Outputs: "
        + ", ".join(o.name for o in graph.output)
        + ". Runs in a training build of ONNX Runtime."
    )
    for note in notes:
        logger.info("%s", note)
    return ExportedGradient(model, list(tensor_infos(graph.input)), _output_infos(model), notes)


def _output_infos(model: onnx.ModelProto) -> list[TensorInfo]:
    """Output infos with the shapes ONNX shape inference finds (gradients are declared shapeless)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # inference is a help, never a requirement
        inferred = model
    known = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
    infos = []
    for value in model.graph.output:
        info = TensorInfo.from_value_info(value)
        other = known.get(value.name)
        if info.shape is None and other is not None:
            info = TensorInfo.from_value_info(other)
        infos.append(info)
    return infos


def inference_model(network: Network) -> onnx.ModelProto:
    """The network as a plain inference model: its graph with the current weights as initializers.

    Args:
        network: the network (a backbone, not a loss cell, to get the model's own outputs).

    Returns:
        A new model that a bare ``onnxruntime.InferenceSession`` runs.
    """
    model = onnx.ModelProto()
    model.CopyFrom(network.model)
    _bake_weights(model, network)
    return model


def save_model(model: onnx.ModelProto, path: str | os.PathLike, external_data: bool = False) -> None:
    """Checks and writes a model atomically (a temporary file, checked, then renamed).

    Args:
        model: the model.
        path: the ``.onnx`` file to write.
        external_data: write the tensors to ``<file name>.data`` beside it
            (needed above protobuf's 2 GB limit).

    Raises:
        ModelError: the model fails ``onnx.checker`` (nothing is written).
        OSError: the file cannot be written.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)

    def write_checked(tmp: str) -> None:
        if external_data:
            location = os.path.basename(path) + ".data"
            if os.path.exists(os.path.join(directory, location)):
                os.remove(os.path.join(directory, location))  # onnx appends to an existing data file
            copy = onnx.ModelProto()
            copy.CopyFrom(model)  # onnx.save moves the tensors of the model it is given
            onnx.save(copy, tmp, save_as_external_data=True, all_tensors_to_one_file=True, location=location)
        else:
            onnx.save(model, tmp)
        try:
            onnx.checker.check_model(tmp)
        except Exception as err:
            raise ModelError(
                f"The written model fails onnx.checker ({' '.join(str(err).split())[:300]}); please report this."
            ) from err

    _files.atomic_write(path, write_checked)
