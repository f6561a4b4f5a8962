"""The one module that calls onnxruntime-training's gradient graph builder.

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

from onnxgrad import _builder_env, _builder_worker, _custom_gradients, _rewrites, _standard_gradients  # noqa: F401 (registers)
from onnxgrad._graph import infer_types
from onnxgrad.errors import GradientBuildError, UnsupportedGradientError

__all__ = ["GRAD_SUFFIX", "grad_name", "build_gradient_graph", "definitions_json"]

logger = logging.getLogger(__name__)

#: The builder names the gradient of tensor ``x`` ``x + GRAD_SUFFIX``.
GRAD_SUFFIX = "_grad"

_registered: set[str] = set()
_lock = threading.Lock()
_build_lock = threading.Lock()


def grad_name(x: str) -> str:
    """The output name holding the gradient of tensor ``x``."""
    return x + GRAD_SUFFIX


def _attribute_json(name: str, value) -> dict:
    """One attribute as the builder's GradientNodeAttributeDefinition fields."""
    if isinstance(value, (bool, int)):
        value_json, dtype = json.dumps(int(value)), "int"
    elif isinstance(value, float):
        value_json, dtype = json.dumps(value), "float"
    elif isinstance(value, str):
        value_json, dtype = json.dumps(value), "string"
    else:
        value_json, dtype = json.dumps([int(v) for v in value]), "int"
    return {"name": name, "value_json": value_json, "dtype": dtype}


def definitions_json() -> list[dict]:
    """Every custom gradient definition, JSON-ready (the form the builder subprocess takes)."""
    return [
        {
            "key": gradient.key,
            "nodes": [
                {
                    "op_type": spec.op_type, "domain": spec.domain, "inputs": list(spec.inputs),
                    "outputs": list(spec.outputs),
                    "attributes": [_attribute_json(k, v) for k, v in spec.attributes.items()],
                }
                for spec in gradient.nodes
            ],
        }
        for gradient in _custom_gradients.all_gradients()
    ]


def _register_custom_gradients(C) -> None:
    with _lock:
        _builder_worker.register_definitions(C, definitions_json(), _registered)


def _build_in_process(model: bytes, loss: str, xs: list[str]) -> bytes:
    from onnxgrad._ort import pybind as C

    _register_custom_gradients(C)
    try:
        options = C.SessionOptions()
        options.log_severity_level = 3  # the builder logs every graph transformer at INFO
        with _build_lock:  # one build at a time: the builder and its registry are process-wide
            builder = C.GradientGraphBuilder(model, {loss}, set(xs), loss, options)
            builder.build()
            return builder.get_model()
    except Exception as err:  # pybind raises RuntimeError/Fail with ORT's text
        raise _builder_env.BuildFailure(str(err)) from err


_NO_GRADIENT = re.compile(r"has not been registered: (\S+) for node (\S*)")
# The builder names the nodes of a forward node's gradient "<forward node>_Grad/...".
_FAILED_GRADIENT = re.compile(r"\(([^()\s/]+)_Grad/")
_GRADIENT_BUILDER_FRAME = re.compile(r"gradient_builder\.cc:\d+ .*Get(\w+)Gradient")


def build_gradient_graph(model: onnx.ModelProto, loss: str, xs: Iterable[str]) -> onnx.ModelProto:
    """Adds backward nodes computing d(loss)/d(x) for each ``x`` in ``xs``.

    Builds in this process when its onnxruntime has the builder, else in the
    builder environment (``_builder_env``).

    Args:
        model: a prepared model with a scalar output ``loss``.
        loss: the scalar to differentiate.
        xs: tensor names (graph inputs or intermediate tensors) that reach ``loss``.

    Returns:
        A new model: the same outputs plus ``grad_name(x)`` for each x.

    Raises:
        UnsupportedGradientError: an op on the path has no gradient.
        GradientBuildError: the builder failed otherwise, or there is none.
    """
    xs = list(xs)
    try:
        if _builder_env.use_subprocess():
            built = _builder_env.build(model.SerializeToString(), loss, xs, definitions_json())
        else:
            built = _build_in_process(model.SerializeToString(), loss, xs)
        return onnx.load_from_string(built)
    except _builder_env.BuildFailure as err:
        text = str(err)
        missing = _NO_GRADIENT.search(text)
        if missing:
            op, node = missing.groups()
            raise UnsupportedGradientError(
                f"onnxruntime-training has no gradient for op {op} (node {node or '<unnamed>'!r}), which lies "
                f"between the differentiated inputs/weights and the outputs.{_why_kept(model, op, node)} Replace "
                "the op in the model (or ask only for gradients that do not pass through it); `onnxgrad inspect` "
                "lists the blocking nodes.",
                op_type=op,
                node=node,
            ) from err
        failed = _FAILED_GRADIENT.search(text)
        frame = _GRADIENT_BUILDER_FRAME.search(text)
        if failed or frame:
            if failed:
                name = failed.group(1)
                op = next((n.op_type for n in model.graph.node if n.name == name), name)
            elif frame:
                op = frame.group(1)
                name = next((n.name for n in model.graph.node if n.op_type == op), "") or "<unnamed>"
            raise UnsupportedGradientError(
                f"onnxruntime-training cannot build the gradient of {op} (node {name!r}) here: {_short(text)}. "
                "Replace the op in the model (or change its input dtypes), or ask only for gradients that do not "
                "pass through it.",
                op_type=op,
                node=name,
            ) from err
        raise GradientBuildError(
            f"onnxruntime-training could not build the gradient graph: {_short(text)}. "
            "Check the model with `onnxgrad inspect`; if it is valid ONNX, please report this."
        ) from err


def _why_kept(model: onnx.ModelProto, op: str, name: str) -> str:
    """`` onnxgrad rewrites <op> ..., but not this node: <why>.`` when a rewrite of ``op`` exists and
    says what (an attribute, a shape) kept the node, else ''."""
    if op not in _rewrites.REWRITES:
        return ""
    nodes = [n for n in model.graph.node if n.op_type == op and (n.name == name or not name)]
    if not nodes:
        return ""
    reason = _rewrites.explain_kept(nodes[0], model.graph, infer_types(model))
    if reason is None:
        return ""
    return f" onnxgrad rewrites {op} into ops with gradients, but not this node: {reason}."


def _short(text: str) -> str:
    # ORT prefixes messages with its source location (and a C++ signature); keep the meaningful part.
    if not text.strip():
        return "no message"
    line = text.strip().splitlines()[-1].split(" : ")[-1]
    return _SOURCE_LOCATION.sub("", line)[:500]


_SOURCE_LOCATION = re.compile(r"^/\S+:\d+\s+(?:.*?\)\s*(?:const\s+)?)?")
