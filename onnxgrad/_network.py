"""Networks over ONNX graphs: :func:`load` and :class:`Network` (weights: ``_parameter``).

A Network owns a private copy of the model. Its trainable initializers are
moved out of the graph into :class:`Parameter` buffers and become graph inputs
(after the user inputs), so that every session reads the current values
without copies and an optimizer can update them in place.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from onnxgrad import _engine, _frontend, _validate, _versions
from onnxgrad._gradient import GRAD_SUFFIX
from onnxgrad._graph import FLOAT_TYPES, TensorInfo, tensor_infos, unique_name
from onnxgrad._parameter import Parameter, ParameterTuple
from onnxgrad._prepare import LOSS
from onnxgrad.errors import ModelError, OnnxGradError

__all__ = ["Parameter", "ParameterTuple", "Network", "load"]


class Network:
    """A network over an ONNX graph: MindSpore's ``Cell`` for ONNX models.

    Build one with :func:`load`. Calling it runs the forward pass on ONNX Runtime.

    Attributes:
        inputs: the graph inputs the caller passes, in order.
        outputs: the graph outputs, in order.
    """

    def __init__(
        self, model: onnx.ModelProto, parameters: Sequence[Parameter], buffers: Sequence[Parameter] = ()
    ) -> None:
        self._model = model  # private, weight-free: trainable initializers are graph inputs
        self._parameters = {p.name: p for p in parameters}
        self._buffers = {b.name: b for b in buffers}
        # Old IR versions also list initializers as graph inputs: those are not arguments.
        names = set(self._parameters) | set(self._buffers) | {init.name for init in model.graph.initializer}
        self.inputs: tuple[TensorInfo, ...] = tensor_infos(model.graph.input, exclude=names)
        self.outputs: tuple[TensorInfo, ...] = tensor_infos(model.graph.output)
        self._digest: str | None = None

    @property
    def model(self) -> onnx.ModelProto:
        """The network's graph, with trainable weights as graph inputs (do not modify)."""
        return self._model

    @property
    def digest(self) -> str:
        """A hash of the weight-free graph: equal graphs share built gradient graphs."""
        if self._digest is None:
            self._digest = hashlib.sha256(self._model.SerializeToString(deterministic=True)).hexdigest()
        return self._digest

    def trainable_params(self) -> list[Parameter]:
        """The trainable weights, in graph order."""
        return list(self._parameters.values())

    def parameters_dict(self) -> dict[str, Parameter]:
        """The trainable weights by initializer name."""
        return dict(self._parameters)

    def buffers_dict(self) -> dict[str, Parameter]:
        """Non-trainable state bound like the parameters (a converter's BatchNorm statistics,
        frozen weights), by initializer name: never differentiated, but updates are seen."""
        return dict(self._buffers)

    # Hooks the engine calls and a loss cell overrides: the network to run for arguments of
    # these dtypes (a loss cell's label dtype), and a check of argument values before each call.
    def _for_dtypes(self, dtypes: Sequence[np.dtype | None]) -> Network:
        return self

    _value_check: Callable[[Sequence[Any]], None] | None = None

    #: The engine's compiled sessions for this network: opaque, read and written only by ``_engine``.
    _engine_state: Any = None

    def __call__(self, *inputs: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        """Runs the forward pass; returns one array, or a tuple for several outputs."""
        return _engine.forward(self, inputs)

    def __repr__(self) -> str:
        ins = ", ".join(f"{i.name}: {i.dtype}{i.shape_text()}" for i in self.inputs)
        outs = ", ".join(f"{o.name}: {o.dtype}{o.shape_text()}" for o in self.outputs)
        return f"Network(({ins}) -> ({outs}), {len(self._parameters)} parameters)"


def _read_model(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ModelError(f"No model file at {path!r}: check the path.")
        try:
            proto = onnx.load(path, load_external_data=False)
        except Exception as err:  # protobuf DecodeError and friends
            raise ModelError(
                f"{path!r} is not a readable ONNX model ({type(err).__name__}: {err}): "
                "pass a .onnx file written by onnx.save or an exporter."
            ) from err
        # External data only from real files inside the model's folder (symlinks resolved first).
        folder = os.path.dirname(os.path.abspath(path))
        _validate.check_external_data(proto, folder)
        try:
            onnx.load_external_data_for_model(proto, folder)
        except Exception as err:
            raise ModelError(
                f"The external data of {path!r} cannot be read ({type(err).__name__}: {err}): "
                "keep the data files onnx.save wrote beside the model, unmodified."
            ) from err
        return proto
    raise ModelError(
        f"load() takes a path or an onnx.ModelProto, got {type(model).__name__}: "
        "for a MindSpore Cell or PyTorch module pass it to ForwardValueAndGrad directly."
    )


def _unique_outputs(graph: onnx.GraphProto) -> None:
    """Renames repeated graph outputs (``return t, t``) through Identity nodes."""
    seen: set[str] = set()
    taken = {name for node in graph.node for name in node.output} | {v.name for v in graph.input}
    for value in graph.output:
        if value.name in seen:
            new = unique_name(value.name, taken)
            graph.node.append(onnx.helper.make_node("Identity", [value.name], [new], name=f"onnxgrad_output_{new}"))
            value.name = new
        seen.add(value.name)


def _rename_reserved(graph: onnx.GraphProto) -> dict[str, str]:
    """Renames the tensors whose names onnxgrad's gradient graphs use, in place.

    The builder names the gradient of ``t`` ``t + GRAD_SUFFIX`` and preparation adds tensors
    under ``onnxgrad/`` (see ``_prepare``): a user tensor named ``x_grad`` beside ``x``, or
    ``onnxgrad/loss``, would be defined twice. Such a tensor becomes ``user/<name>.`` (made
    unique if taken), which neither ends in the suffix nor starts with the prefix.

    Returns:
        ``{old name: new name}`` for the renamed tensors (graph inputs, outputs and weights
        included: their new names are what ``Network.inputs``, ``outputs`` and parameters show).
    """
    internal = LOSS[: LOSS.index("/") + 1]
    graphs = list(_validate.all_graphs(graph))
    names: set[str] = set()
    for g in graphs:
        names.update(v.name for v in [*g.input, *g.output, *g.value_info, *g.initializer])
        names.update(n for node in g.node for n in [*node.input, *node.output])
    renamed: dict[str, str] = {}
    taken = set(names)
    for name in sorted(names):
        if name.endswith(GRAD_SUFFIX) or name.startswith(internal):
            renamed[name] = unique_name(f"user/{name}.", taken)
    if not renamed:
        return renamed
    for g in graphs:
        for value in [*g.input, *g.output, *g.value_info, *g.initializer]:
            value.name = renamed.get(value.name, value.name)
        for node in g.node:
            node.input[:] = [renamed.get(n, n) for n in node.input]
            node.output[:] = [renamed.get(n, n) for n in node.output]
    return renamed


def load(model: str | os.PathLike | onnx.ModelProto, parameters: Sequence[str] | None = None) -> Network:
    """Loads an ONNX model as a :class:`Network`.

    Neither the file nor the ModelProto is modified. Models above IR version 10
    or opset 21 are converted down to what onnxruntime-training accepts.

    Args:
        model: a path to an ``.onnx`` file (external data next to it is read) or
            an ``onnx.ModelProto``.
        parameters: names of the initializers that are trainable weights. By
            default, the names recorded by an onnxgrad converter, or else every
            floating-point initializer.

    Returns:
        The network.

    Raises:
        ModelError: the file cannot be read, the model is invalid or cannot be
            converted to a supported IR/opset, or ``parameters`` names an unknown
            initializer.

    Example:
        >>> net = onnxgrad.load("models/seed_net.onnx")
        >>> [p.name for p in net.trainable_params()]
        ['weight']
    """
    proto = _read_model(model)
    try:
        return _network_from(proto, parameters)
    except OnnxGradError:
        raise
    except Exception as err:  # a model the checks above missed: still a typed error, never a raw one
        raise ModelError(
            f"The model cannot be loaded ({type(err).__name__}: {err}). Check it with onnx.checker.check_model "
            "(full_check=True); if it passes, please report this with the model."
        ) from err


def _network_from(proto: onnx.ModelProto, parameters: Sequence[str] | None) -> Network:
    # Crashes, hangs and exhausted memory further on are refused before native code sees the model.
    _validate.validate(proto)
    # This onnx's checker refuses IR versions newer than it knows: clamp the IR first.
    _versions.clamp_ir_version(proto)
    try:
        onnx.checker.check_model(proto)
    except Exception as err:
        raise ModelError(f"The model is not valid ONNX: {err}. Fix the model (onnx.checker.check_model).") from err
    proto = _versions.normalize(proto)

    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    if parameters is None:
        mapped = _frontend.parameter_map(proto)
        if mapped is not None:
            parameters = list(mapped.values())
        else:
            parameters = [i.name for i in graph.initializer if i.data_type in FLOAT_TYPES]
    unknown = [name for name in parameters if name not in initializers]
    if unknown:
        raise ModelError(f"parameters {unknown} are not initializers of the model; known: {sorted(initializers)}.")
    wanted = set(parameters)
    buffer_names = set((_frontend.parameter_map(proto, _frontend.BUFFER_MAP_KEY) or {}).values()) - wanted
    buffer_names &= set(initializers)

    def take(names: set[str]) -> list[Parameter]:
        return [Parameter(numpy_helper.to_array(initializers[name]), name) for name in initializers if name in names]

    renamed = _rename_reserved(graph)
    if renamed:
        wanted = {renamed.get(name, name) for name in wanted}
        buffer_names = {renamed.get(name, name) for name in buffer_names}
        initializers = {init.name: init for init in graph.initializer}
    params, buffers = take(wanted), take(buffer_names)
    _unique_outputs(graph)
    # Trainable initializers (and buffers) become graph inputs, after the user inputs.
    declared = {v.name for v in graph.input}
    kept = [init for init in graph.initializer if init.name not in wanted | buffer_names]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for p in [*params, *buffers]:
        if p.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(p.name, initializers[p.name].data_type, p.shape))
    return Network(proto, params, buffers)
