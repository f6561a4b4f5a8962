"""The one module that uses onnxruntime-training's gradient graph builder.

``build_gradient_graph`` takes a prepared model (see ``_prepare``) whose scalar
loss is ``loss`` and returns it with a ``<x>_grad`` output for each name in
``xs``. The builder seeds ``<loss>_grad`` with a scalar 1.0, which is why the
loss must be a scalar; it lists its gradient outputs in no stable order, so
callers find them by name with :func:`grad_name`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Iterable

import onnx

from onnxgrad import _custom_gradients
from onnxgrad.errors import GradientBuildError, UnsupportedGradientError

__all__ = ["GRAD_SUFFIX", "grad_name", "build_gradient_graph"]

logger = logging.getLogger(__name__)

#: The builder names the gradient of tensor ``x`` ``x + GRAD_SUFFIX``.
GRAD_SUFFIX = "_grad"

_registered: set[str] = set()
_lock = threading.Lock()


def grad_name(x: str) -> str:
    """The output name holding the gradient of tensor ``x``."""
    return x + GRAD_SUFFIX


def _pybind():
    # The pybind module, not onnxruntime.training: that one imports torch.
    from onnxgrad._ort import pybind as _pybind_state

    if not hasattr(_pybind_state, "GradientGraphBuilder"):
        raise GradientBuildError(
            "This onnxruntime has no gradient builder: uninstall onnxruntime and install "
            "onnxruntime-training-cpu==1.19.2 (only one onnxruntime package may be installed)."
        )
    return _pybind_state


def _attribute(C, name: str, value) -> object:
    attribute = C.GradientNodeAttributeDefinition()
    attribute.name = name
    if isinstance(value, bool) or isinstance(value, int):
        attribute.value_json, attribute.dtype = json.dumps(int(value)), "int"
    elif isinstance(value, float):
        attribute.value_json, attribute.dtype = json.dumps(value), "float"
    elif isinstance(value, str):
        attribute.value_json, attribute.dtype = json.dumps(value), "string"
    else:
        attribute.value_json, attribute.dtype = json.dumps([int(v) for v in value]), "int"
    attribute.is_tensor = False
    return attribute


def _register_custom_gradients(C) -> None:
    with _lock:
        for gradient in _custom_gradients.all_gradients():
            if gradient.key in _registered:
                continue
            definition = []
            for spec in gradient.nodes:
                node = C.GradientNodeDefinition()
                node.op_type, node.domain = spec.op_type, spec.domain
                # List fields must be assigned whole: appending to them is lost.
                node.inputs = list(spec.inputs)
                node.outputs = list(spec.outputs)
                node.attributes = [_attribute(C, k, v) for k, v in spec.attributes.items()]
                definition.append(node)
            # Stop inputs are not registered: ORT 1.19 honours custom stop edges for ATen ops
            # only. onnxgrad never asks for a gradient through them (_prepare.stopped_inputs).
            C.register_gradient_definition(gradient.key, definition)
            _registered.add(gradient.key)


_NO_GRADIENT = re.compile(r"has not been registered: (\S+) for node (\S*)")


def build_gradient_graph(model: onnx.ModelProto, loss: str, xs: Iterable[str]) -> onnx.ModelProto:
    """Adds backward nodes computing d(loss)/d(x) for each ``x`` in ``xs``.

    Args:
        model: a prepared model with a scalar output ``loss``.
        loss: the scalar to differentiate.
        xs: tensor names (graph inputs or intermediate tensors) that reach ``loss``.

    Returns:
        A new model: the same outputs plus ``grad_name(x)`` for each x.

    Raises:
        UnsupportedGradientError: an op on the path has no gradient.
        GradientBuildError: the builder failed otherwise.
    """
    C = _pybind()
    _register_custom_gradients(C)
    try:
        options = C.SessionOptions()
        options.log_severity_level = 3  # the builder logs every graph transformer at INFO
        builder = C.GradientGraphBuilder(model.SerializeToString(), {loss}, set(xs), loss, options)
        builder.build()
        return onnx.load_from_string(builder.get_model())
    except Exception as err:  # pybind raises RuntimeError/Fail with ORT's text
        text = str(err)
        missing = _NO_GRADIENT.search(text)
        if missing:
            op, node = missing.groups()
            raise UnsupportedGradientError(
                f"onnxruntime-training has no gradient for op {op} (node {node or '<unnamed>'!r}), which lies "
                "between the differentiated inputs/weights and the outputs. Replace the op in the model (or ask "
                "only for gradients that do not pass through it); `onnxgrad inspect` lists the blocking nodes.",
                op_type=op,
                node=node,
            ) from err
        raise GradientBuildError(
            f"onnxruntime-training could not build the gradient graph: {_short(text)}. "
            "Check the model with `onnxgrad inspect`; if it is valid ONNX, please report this."
        ) from err


def _short(text: str) -> str:
    # ORT prefixes messages with its source location; keep the last, meaningful part.
    return text.strip().splitlines()[-1].split(" : ")[-1][:500] if text.strip() else "no message"
