"""Networks over ONNX graphs: :func:`load`, :class:`Network`, :class:`Parameter`.

A Network owns a private copy of the model. Its trainable initializers are
moved out of the graph into :class:`Parameter` buffers and become graph inputs
(after the user inputs), so that every session reads the current values
without copies and an optimizer can update them in place.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from onnxgrad import _frontend, _validate, _versions
from onnxgrad._graph import FLOAT_TYPES, TensorInfo, tensor_infos
from onnxgrad.errors import InputError, ModelError, OnnxGradError

__all__ = ["Parameter", "ParameterTuple", "Network", "load"]


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

    @value.setter
    def value(self, new: Any) -> None:
        self.set_data(new)

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
        # Compiled gradient graphs and sessions, keyed by spec and input signature (see _engine).
        self._compiled: dict[Any, Any] = {}
        # (spec, signature of already-checked arguments) -> (variant, compiled), for the hot path.
        self._fast: dict[Any, Any] = {}
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

    def variant(self, dtypes: Sequence[np.dtype]) -> Network:
        """The network to run for arguments of these dtypes (itself, except for loss cells)."""
        return self

    #: Checks argument values before every call (loss cells: label ranges); None for none.
    _value_check = None

    def __call__(self, *inputs: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        """Runs the forward pass; returns one array, or a tuple for several outputs."""
        from onnxgrad import _engine

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
            k = 1
            while f"{value.name}_{k}" in taken:
                k += 1
            new = f"{value.name}_{k}"
            graph.node.append(onnx.helper.make_node("Identity", [value.name], [new], name=f"onnxgrad_output_{new}"))
            taken.add(new)
            value.name = new
        seen.add(value.name)


def _rename_reserved(graph: onnx.GraphProto) -> dict[str, str]:
    """Renames the tensors whose names onnxgrad's gradient graphs use, in place.

    The builder names the gradient of ``t`` ``t + GRAD_SUFFIX`` and preparation adds tensors
    under ``onnxgrad/`` (see ``_prepare``): a user tensor named ``x_grad`` beside ``x``, or
    ``onnxgrad/loss``, would be defined twice. Such a tensor becomes ``user/<name>.``, which
    neither ends in the suffix nor starts with the prefix.

    Returns:
        ``{old name: new name}`` for the renamed tensors (graph inputs, outputs and weights
        included: their new names are what ``Network.inputs``, ``outputs`` and parameters show).
    """
    from onnxgrad._gradient import GRAD_SUFFIX
    from onnxgrad._prepare import LOSS

    internal = LOSS[: LOSS.index("/") + 1]
    graphs = list(_validate.all_graphs(graph))
    names = set()
    for g in graphs:
        names.update(v.name for v in [*g.input, *g.output, *g.value_info, *g.initializer])
        names.update(n for node in g.node for n in [*node.input, *node.output])
    renamed: dict[str, str] = {}
    for name in sorted(names):
        if name.endswith(GRAD_SUFFIX) or name.startswith(internal):
            new = f"user/{name}."
            while new in names or new in renamed.values():
                new += "."
            renamed[name] = new
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
