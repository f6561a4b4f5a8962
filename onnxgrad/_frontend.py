"""How the facade talks to framework front-ends without importing a framework.

A front-end (``onnxgrad.converters.mindspore``, ``onnxgrad.converters.torch``)
wraps one framework object (a MindSpore ``Cell``, a PyTorch ``nn.Module``) in a
:class:`Frontend`. The facade asks it to turn call arguments into numpy arrays,
to export ONNX for a given argument signature, to copy the current parameter
values into the network's buffers before each call, and to turn numpy results
back into framework tensors.

Converted models carry the map from framework parameter names to ONNX
initializer names in ``metadata_props`` under :data:`PARAMETER_MAP_KEY`
(a JSON object ``{framework_name: initializer_name}``, in parameter order);
:func:`onnxgrad.load` reads it to decide which initializers are trainable.
"""

from __future__ import annotations

import abc
import importlib
import json
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from onnxgrad.errors import InputError

__all__ = ["Frontend", "PARAMETER_MAP_KEY", "BUFFER_MAP_KEY", "frontend_for", "parameter_map", "set_parameter_map"]

#: ``metadata_props`` key holding the JSON map framework parameter name -> initializer name.
PARAMETER_MAP_KEY = "onnxgrad.parameter_map"
#: Same for non-trainable state the framework may change between calls (BatchNorm
#: statistics, frozen parameters): bound like parameters, never differentiated.
BUFFER_MAP_KEY = "onnxgrad.buffer_map"

# (top-level module of the object's class, module implementing its Frontend)
_FRONTENDS = (
    ("mindspore", "onnxgrad.converters.mindspore"),
    ("torch", "onnxgrad.converters.torch"),
)


class Frontend(abc.ABC):
    """One framework object, seen by the facade."""

    @abc.abstractmethod
    def to_numpy(self, args: Sequence[Any]) -> list[np.ndarray]:
        """Turns call arguments (framework tensors or array-likes) into numpy arrays."""

    @abc.abstractmethod
    def export(self, args: Sequence[np.ndarray], call: Any = None) -> onnx.ModelProto:
        """Exports the object for these argument shapes and dtypes (and the call :meth:`arguments` described).

        The result carries the parameter map (see :func:`set_parameter_map`) and
        takes the arguments as graph inputs, in order. For a loss cell the last
        input is the label and the single output is the loss.
        """

    def arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[list[Any], Any]:
        """The call's graph arguments in graph-input order, and a hashable description of the call.

        The description is None for a plain positional call; otherwise the
        facade passes it to :meth:`export` and keys exported graphs by it.
        Front-ends that take keyword arguments override this.

        Raises:
            InputError: keyword arguments, which this front-end does not take.
        """
        if kwargs:
            raise InputError(
                f"Keyword arguments {sorted(kwargs)} are not supported for this network: pass its inputs "
                "positionally, in order."
            )
        return list(args), None

    def nest_outputs(self, model: onnx.ModelProto, values: Sequence[Any]) -> Any:
        """The forward value as the framework returns it: the one output, or a tuple of them."""
        return values[0] if len(values) == 1 else tuple(values)

    @abc.abstractmethod
    def parameter_values(self) -> dict[str, np.ndarray]:
        """Current values of the framework parameters, keyed by framework name."""

    def buffer_values(self) -> dict[str, np.ndarray]:
        """Current values of the non-trainable state in the buffer map, keyed by framework name."""
        return {}

    @abc.abstractmethod
    def weight_names(self, weights: Any) -> list[str]:
        """Framework names of ``weights`` (framework Parameters, a ParameterTuple, or names)."""

    @abc.abstractmethod
    def wants_framework_tensors(self, args: Sequence[Any]) -> bool:
        """Whether results should be returned as framework tensors (the arguments were)."""

    @abc.abstractmethod
    def from_numpy(self, array: np.ndarray) -> Any:
        """Turns one numpy result into a framework tensor."""


def frontend_for(obj: Any) -> Frontend | None:
    """Returns the Frontend for a framework object, or None if ``obj`` is not one.

    Only looks at the class's module name, so no framework gets imported unless
    the object already comes from it.
    """
    for cls in type(obj).__mro__:
        top = cls.__module__.split(".", 1)[0]
        for framework, module_name in _FRONTENDS:
            if top == framework:
                module = importlib.import_module(module_name)
                return module.frontend(obj)
    return None


def parameter_map(model: onnx.ModelProto, key: str = PARAMETER_MAP_KEY) -> dict[str, str] | None:
    """Reads the framework-name -> initializer-name map a converter stored, if any."""
    for prop in model.metadata_props:
        if prop.key == key:
            return json.loads(prop.value)
    return None


def set_parameter_map(model: onnx.ModelProto, mapping: dict[str, str], key: str = PARAMETER_MAP_KEY) -> None:
    """Stores the framework-name -> initializer-name map on a (converter-owned) model."""
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = json.dumps(mapping)
            return
    model.metadata_props.add(key=key, value=json.dumps(mapping))
