"""PyTorch front-end: ``nn.Module`` to ONNX, and the :class:`~onnxgrad._frontend.Frontend` the facade uses.

**Exporter.** :func:`to_onnx` uses PyTorch's TorchScript-based exporter,
``torch.onnx.export(..., dynamo=False)``, at opset :data:`OPSET` (it writes
IR version 8), unless ``exporter="dynamo"`` asks for the torch.export-based
one (``dynamo=True``, opset :data:`DYNAMO_OPSET`, needs ``onnxscript``).
TorchScript stays the default by measurement: on the Hugging Face models of
``tests/test_hf_models.py`` it gives autograd's gradients for all nine, the
dynamo exporter for six (it writes GPT-2's tied LM head as a transposed copy
of the embedding, and cannot decompose T5's and Swin's graphs), in twice the
time. Opset 17 is the first with a ``LayerNormalization`` op.

**Calls.** Keyword arguments are exported as graph inputs after the
positional ones, in forward's signature order; ``bool``/``None``/``str``
keywords are passed as they are. The module is called through a flat wrapper
sharing its parameter dicts (so initializer names are the module's own) that
returns the output tensors in ``torch.utils._pytree`` order; the structure is
stored in the model's metadata (:data:`OUTPUT_STRUCTURE_KEY`) and the facade
returns values in it.

**After export**: shape arithmetic on static shapes is folded to constants
(:func:`~onnxgrad.converters._common.fold_static_shapes`); lookups of an
``nn.Embedding``'s ``padding_idx`` row get no gradient; unpadded
``AveragePool``s divide as PyTorch does; and the graph is run once on the
example inputs and compared with forward's own outputs, refusing an export
that computes something else.

What the exporter does, as observed with PyTorch 2.13
(``tests/test_torch_converter.py`` pins it), and the settings that follow:

- ``do_constant_folding=False``: with folding, an eval-mode export fuses
  ``Conv`` + ``BatchNorm2d`` into a new ``Conv`` whose weight and bias are
  fresh initializers (``onnx::Conv_16``), and folds a transposed weight that
  feeds a ``MatMul`` (``nn.MultiheadAttention``'s ``in_proj_weight``,
  ``nn.Linear`` on 3-d inputs) into a transposed copy (``onnx::MatMul_165``).
  Without folding the ``Transpose`` stays a node, ``BatchNormalization`` stays
  an op, and every initializer is a parameter or buffer, unchanged.
- ``keep_initializers_as_inputs=True``, then the initializers are taken off
  the graph inputs again: otherwise the exporter merges initializers with
  equal *values* when the module is in eval mode, so ``TransformerEncoderLayer``'s
  ``norm1.bias`` (zeros) came out as ``self_attn.out_proj.bias``: one
  initializer for two parameters, whose gradients would be summed.
- ``training=TrainingMode.PRESERVE``: the default (``EVAL``) calls
  ``module.train(previous)`` afterwards, which overwrites the flag of every
  submodule. :func:`to_onnx` puts the module in eval mode itself and restores
  each submodule's own flag.
- Initializers carry the ``named_parameters()`` names (the first name of a
  tied parameter, ``parametrizations.weight.original0`` for a parametrized
  one); buffers (BatchNorm's running statistics) are initializers too, and
  stay out of the parameter map. Parameters the outputs do not depend on are
  left out of the graph and of the map (their gradient is zero). Which ones
  those are is checked with autograd on an eager run of forward: a parameter
  autograd reaches must be an initializer, unchanged, or the export fails.
- Inputs forward does not read are dropped from the graph; :func:`to_onnx`
  puts them back, so the graph takes exactly the example inputs, in order,
  named after forward's arguments. Integer inputs keep their dtype. Shapes are
  static (those of the example inputs); the facade exports once per argument
  signature anyway.
- The "fast path" of ``nn.TransformerEncoderLayer`` / ``nn.MultiheadAttention``
  (taken in eval mode under ``torch.no_grad()`` or with frozen parameters)
  traces to ``aten::_transformer_encoder_layer_fwd`` or
  ``aten::_nested_tensor_from_mask``, which have no ONNX export; it is switched
  off (``torch.backends.mha.set_fastpath_enabled``) during the export.
- The tracer records only the branch a Python ``if`` on a tensor took for the
  example inputs, and says so with a ``TracerWarning`` ("Converting a tensor
  to a Python boolean", "... integer"). It cannot tell a value from a shape
  (under tracing, ``x.shape[0]`` is a tensor too), so when the user's code
  raises one, ``torch.export`` (non-strict, static shapes) decides: it
  specialises shape conditions and raises ``GuardOnDataDependentSymNode`` on
  a value, and then :func:`to_onnx` fails naming the file and line. Raised
  inside PyTorch itself (shape checks in
  ``nn.functional.multi_head_attention_forward``) the warning is dropped.
  Other tracer warnings from user code are passed on.
- On a failed export, PyTorch 2.13 prints "Torch IR graph at exception: ..."
  to stdout from C++ (its ``setup_onnx_logging`` tests a function object for
  truth); onnxgrad leaves that alone.

PyTorch is imported on first use, so importing this module does not need it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper

from onnxgrad import _frontend, _graph
from onnxgrad._graph import TensorInfo
from onnxgrad._versions import MAX_IR_VERSION, MAX_OPSET
from onnxgrad.converters import _common
from onnxgrad.errors import ConversionError, InputError

__all__ = ["DEFAULT_EXPORTER", "DYNAMO_OPSET", "EXPORTERS", "OPSET", "TorchFrontend", "frontend", "to_onnx"]

logger = logging.getLogger(__name__)

#: The default-domain opset the TorchScript exporter writes (IR version 8).
OPSET = 17
#: The default-domain opset the dynamo exporter writes (IR version 10).
DYNAMO_OPSET = 18

#: The exporters :func:`to_onnx` can use: ``torch.onnx.export(dynamo=False)`` and ``(dynamo=True)``.
EXPORTERS = ("torchscript", "dynamo")
#: The exporter used unless one is asked for; see "Exporter" in the module docstring for why.
DEFAULT_EXPORTER = "torchscript"

#: Graph output names: ``output_0``, ``output_1``, ... in forward's return order.
OUTPUT_NAME = "output_{}"
#: ``metadata_props`` key holding forward's output structure (``torch.utils._pytree.treespec_dumps``).
OUTPUT_STRUCTURE_KEY = "onnxgrad.torch.output_structure"

_EXPORT_YOURSELF = "or export the model to ONNX yourself and pass the .onnx file to onnxgrad.load."

# Deprecation notices the TorchScript exporter gives on every call: noise for
# onnxgrad's users, who did not choose the exporter.
_EXPORTER_NOISE = (
    "You are using the legacy TorchScript-based ONNX export",
    "The feature will be removed",
    # onnxgrad gives the padding row no gradient itself (_mask_padding_rows).
    "Warning: ONNX export of embedding with padding_idx >= 0",
    # torch.export's own use of a deprecated pytree API (PyTorch 2.13).
    "`isinstance(treespec, LeafSpec)` is deprecated",
)

# The tracer's warnings for `if tensor:`, `bool(tensor)`, `int(tensor)`, `range(tensor)`...: a
# tensor (a value, or a size: under the tracer sizes are tensors too) became a Python value.
# `torch.tensor(x.shape[0])` is recorded as a constant, with a warning of its own.
_BRANCH_ON_TENSOR = ("Converting a tensor to a Python ", "torch.tensor results are registered as constants")

_ANSI_COLOR = re.compile(r"\x1b\[[0-9;]*m")

# torch.onnx.errors.UnsupportedOperatorError's message names the aten op.
_UNSUPPORTED_OP = re.compile(r"operator '([^']+)'")


def _torch() -> Any:
    """Imports PyTorch on first use (it is an optional dependency)."""
    try:
        import torch
    except ImportError as err:
        raise ConversionError(
            "Converting a PyTorch module needs PyTorch: pip install 'onnxgrad[torch]'."
        ) from err
    return torch


# --- Export -----------------------------------------------------------------


def to_onnx(
    module: Any,
    *example_inputs: Any,
    keywords: Mapping[str, Any] | None = None,
    exporter: str = DEFAULT_EXPORTER,
) -> onnx.ModelProto:
    """Exports a PyTorch module to ONNX, with a verified parameter map.

    The module is exported in eval mode; every submodule's training flag is
    restored afterwards, whether the export succeeds or not. Python control
    flow on shapes and sizes is exact for the example's shapes and accepted;
    a branch on a tensor's value is refused (see the module docstring).

    Args:
        module: a ``torch.nn.Module``.
        *example_inputs: forward's positional arguments: torch tensors, numpy
            arrays or Python scalars (a float becomes float32, an int int64).
            The model is exported for their shapes and dtypes.
        keywords: forward's keyword arguments: tensors or arrays (graph
            inputs, after the positional ones, in forward's signature order),
            or Python ``bool``/``None``/``str`` values, which are passed to
            forward as they are and are not graph inputs.
        exporter: ``"torchscript"`` (``torch.onnx.export(dynamo=False)``) or
            ``"dynamo"`` (``torch.onnx.export(dynamo=True)``, needs
            ``onnxscript``); see :data:`EXPORTERS`.

    Returns:
        A model (IR version <= 10, opset :data:`OPSET` for TorchScript,
        :data:`DYNAMO_OPSET` for dynamo) taking one graph input per tensor
        argument, named after forward's arguments, including ones forward does
        not read, and giving one graph output per tensor forward returns
        (``output_0``, ``output_1``, ... in :func:`output_structure` order).
        Its metadata maps each parameter with ``requires_grad`` that the
        outputs depend on to an initializer holding the parameter's value
        unchanged (:func:`onnxgrad._frontend.parameter_map`), in
        ``named_parameters()`` order; parameters the outputs do not depend on
        (per autograd) are absent from the graph and from the map.

    Raises:
        ConversionError: ``module`` is not a module, an example input or
            output is not a tensor, forward fails on the example inputs, the
            exporter refuses an op, forward branches on a tensor's value,
            the exported graph does not hold a parameter unchanged, or it
            computes something else than forward on the example inputs. The
            message says what to change; torch's exception is the cause.

    Example:
        >>> import numpy as np
        >>> from torch import nn
        >>> from onnxgrad._frontend import parameter_map
        >>> model = to_onnx(nn.Linear(4, 3), np.ones((2, 4), np.float32))
        >>> parameter_map(model)
        {'weight': 'weight', 'bias': 'bias'}
    """
    torch = _torch()
    keywords = dict(keywords or {})
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(
            f"to_onnx converts a torch.nn.Module, got {type(module).__name__}: wrap the computation in a Module."
        )
    if exporter not in EXPORTERS:
        raise ConversionError(f"Unknown exporter {exporter!r}: pass one of {sorted(EXPORTERS)}.")
    static = {k: v for k, v in keywords.items() if _is_static(v)}
    tensor_keywords = _in_signature_order(module, [k for k in keywords if k not in static])
    inputs = _example_tensors(module, [*example_inputs, *(keywords[k] for k in tensor_keywords)])
    input_names = _input_names(module, len(example_inputs), tensor_keywords)
    flat = _flat_call(module, len(example_inputs), tensor_keywords, static)
    with _eval_mode(module), _without_fastpath():
        with _replayed_warnings() as branches:
            outputs, structure = _example_outputs(module, flat, inputs)
            output_names = [OUTPUT_NAME.format(i) for i in range(len(outputs))]
            if exporter == "dynamo":
                model = _export_dynamo(module, flat, inputs, input_names, output_names)
            else:
                model = _export(module, flat, inputs, input_names, output_names)
        if branches:
            _check_branches(module, flat, inputs, branches)
    _restore_inputs(module, model, input_names, inputs)
    state = {name for name, _ in module.named_parameters()} | {name for name, _ in module.named_buffers()}
    folded = _common.fold_static_shapes(model, state)
    logger.debug("folded %d static shape computations of %s", folded, type(module).__name__)
    _exact_average_pools(model)
    _verify_forward(module, model, inputs, outputs, structure)
    parameters = _parameter_map(module, model, _reached_leaves(outputs))
    _frontend.set_parameter_map(model, parameters)
    buffers = _buffer_map(module, model)
    buffers.update(_mask_padding_rows(module, model, parameters))
    _frontend.set_parameter_map(model, buffers, _frontend.BUFFER_MAP_KEY)
    _record_structure(model, structure)
    return model


def _record_structure(model: onnx.ModelProto, structure: Any) -> None:
    """Stores the output structure (a serialized pytree TreeSpec) under :data:`OUTPUT_STRUCTURE_KEY`."""
    try:
        text = _torch().utils._pytree.treespec_dumps(structure)
    except Exception as err:  # a container type registered without a serialized name
        logger.debug("output structure not serializable (%s); values come back as a flat tuple", err)
        return
    model.metadata_props.add(key=OUTPUT_STRUCTURE_KEY, value=text)


def _export(
    module: Any, flat: Any, inputs: list[Any], input_names: list[str], output_names: list[str]
) -> onnx.ModelProto:
    """``torch.onnx.export`` (TorchScript) into memory; see the module docstring for the settings."""
    torch = _torch()
    buffer = io.BytesIO()
    try:
        torch.onnx.export(
            flat,
            tuple(inputs),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=input_names,
            output_names=output_names,
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=False,
            keep_initializers_as_inputs=True,
            export_params=True,
        )
    except Exception as err:  # UnsupportedOperatorError, SymbolicValueError, RuntimeError from the tracer...
        raise _export_error(module, err) from err
    return _checked_versions(module, onnx.load_from_string(buffer.getvalue()))


def _export_dynamo(
    module: Any, flat: Any, inputs: list[Any], input_names: list[str], output_names: list[str]
) -> onnx.ModelProto:
    """``torch.onnx.export(dynamo=True)``: torch.export, then onnxscript's translation, unoptimised.

    ``optimize=True`` folds parameters that meet constants (BERT's position
    embeddings become ``embedding_1``), so their gradients could not be mapped.
    """
    torch = _torch()
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's dependency)
    except ImportError as err:
        raise ConversionError(
            "exporter='dynamo' needs onnxscript: pip install 'onnxgrad[torch]', or use exporter='torchscript'."
        ) from err
    try:
        with _quiet_torch_logs(), contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(
                flat, tuple(inputs), dynamo=True, opset_version=DYNAMO_OPSET, optimize=False, verbose=False,
                external_data=False, report=False, dynamic_shapes=None,
            )
    except Exception as err:
        raise _export_error(module, err) from err
    model = program.model_proto
    graph_inputs = [v.name for v in model.graph.input if v.name not in {i.name for i in model.graph.initializer}]
    renames = dict(zip(graph_inputs, input_names))
    renames.update(zip([v.name for v in model.graph.output], output_names))
    _rename_values(model.graph, renames)
    return _checked_versions(module, model)


def _rename_values(graph: onnx.GraphProto, renames: dict[str, str]) -> None:
    """Renames graph inputs and outputs (and their uses, in subgraphs too)."""
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs]:
                _rename_values(subgraph, renames)


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """torch.export logs graph dumps and "torchvision is not installed" at WARNING; the user did not ask."""
    torch_logger = logging.getLogger("torch")
    level = torch_logger.level
    torch_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        torch_logger.setLevel(level)


def _checked_versions(module: Any, model: onnx.ModelProto) -> onnx.ModelProto:
    opset = _graph.default_opset(model)
    logger.debug("PyTorch exported %s: IR %d, opset %d", type(module).__name__, model.ir_version, opset)
    if model.ir_version > MAX_IR_VERSION or opset > MAX_OPSET:
        # Only a future PyTorch could do this; the gradient builder would refuse the model.
        raise ConversionError(
            f"PyTorch exported {type(module).__name__} with IR version {model.ir_version} and opset {opset}; "
            f"onnxruntime-training needs IR <= {MAX_IR_VERSION} and opset <= {MAX_OPSET}. Install "
            f"'onnxgrad[torch]' (the PyTorch version onnxgrad is tested with), {_EXPORT_YOURSELF}"
        )
    return model


@contextlib.contextmanager
def _eval_mode(module: Any) -> Iterator[None]:
    """Eval mode for the export; every submodule's own flag back afterwards.

    ``module.train(previous)`` would not do: it overwrites submodules a user
    put in another mode on purpose (a frozen BatchNorm in a training net).
    """
    modes = [(sub, sub.training) for sub in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for sub, training in modes:
            sub.training = training


@contextlib.contextmanager
def _without_fastpath() -> Iterator[None]:
    """Switches off the fused multi-head-attention kernels, which have no ONNX export."""
    mha = _torch().backends.mha
    enabled = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(enabled)


def _example_tensors(module: Any, example_inputs: Sequence[Any]) -> list[Any]:
    """The example inputs as tensors on the module's device."""
    torch = _torch()
    tensors = []
    for index, value in enumerate(example_inputs):
        if isinstance(value, torch.Tensor):
            tensor = value.detach().clone()  # forward may work in place on its inputs
        elif isinstance(value, (np.ndarray, np.generic)):
            # A copy: torch.from_numpy warns on read-only arrays and shares memory otherwise.
            tensor = torch.from_numpy(np.array(value))
        elif isinstance(value, (bool, int, float)):
            tensor = torch.as_tensor(value)
        else:
            raise ConversionError(
                f"Example input {index} of {type(module).__name__} is a {type(value).__name__}; to_onnx takes "
                "tensors, numpy arrays or Python numbers. Fix other arguments of forward() with "
                "functools.partial or a wrapper Module, and pass only the tensors."
            )
        tensors.append(tensor)
    first = next(_tensors_of(module), None)
    if first is not None:  # a module moved to a GPU takes its inputs there
        tensors = [t.to(first.device) for t in tensors]
    return tensors


def _tensors_of(module: Any) -> Iterator[Any]:
    yield from module.parameters()
    yield from module.buffers()


def _is_static(value: Any) -> bool:
    """Keyword values passed to forward as they are: flags and options, not data."""
    return value is None or isinstance(value, (bool, str))


def _forward_parameters(module: Any) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):  # builtins, some C extensions
        return []


def _in_signature_order(module: Any, names: Sequence[str]) -> list[str]:
    """Keyword argument names in forward's order (names only ``**kwargs`` takes last, as given)."""
    order = {p.name: index for index, p in enumerate(_forward_parameters(module))}
    return sorted(names, key=lambda name: order.get(name, len(order)))


def _input_names(module: Any, count: int, keywords: Sequence[str] = ()) -> list[str]:
    """Graph input names: forward's argument names (``x``; ``args_0`` for ``*args``), then the keywords; unique."""
    parameters = _forward_parameters(module)
    positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var_positional = next((p.name for p in parameters if p.kind == p.VAR_POSITIONAL), None)
    # An input named like a parameter or buffer would clash with its initializer.
    taken = {name for name, _ in module.named_parameters()} | {name for name, _ in module.named_buffers()}
    taken.update(OUTPUT_NAME.format(i) for i in range(count + len(keywords) + 1))
    names = []
    for index in range(count + len(keywords)):
        if index >= count:
            name = keywords[index - count]
        elif index < len(positional):
            name = positional[index]
        elif var_positional is not None:
            name = f"{var_positional}_{index - len(positional)}"
        else:
            name = f"input_{index}"
        while name in taken:
            name += "_input"
        taken.add(name)
        names.append(name)
    return names


def _flat_call(module: Any, positional: int, keywords: Sequence[str], static: dict[str, Any]) -> Any:
    """A Module taking the tensor arguments positionally and returning a flat tuple of output tensors.

    It shares the module's parameter, buffer and submodule dicts, so its
    ``named_parameters()`` (the initializer names) are the module's own.
    """
    torch = _torch()
    name = type(module).__name__

    class FlatCall(torch.nn.Module):
        def call(self, *tensors: Any) -> Any:
            """forward's own result for the tensor arguments."""
            kwargs = dict(zip(keywords, tensors[positional:]))
            kwargs.update(static)
            return module(*tensors[:positional], **kwargs)

        def forward(self, *tensors: Any) -> tuple[Any, ...]:
            leaves, _ = _flatten_outputs(name, self.call(*tensors))
            return tuple(leaves)

    flat = FlatCall().eval()  # the module's own flags are set by _eval_mode
    flat._parameters = module._parameters
    flat._buffers = module._buffers
    flat._non_persistent_buffers_set = module._non_persistent_buffers_set
    flat._modules = module._modules
    return flat


def _example_outputs(module: Any, flat: Any, inputs: list[Any]) -> tuple[list[Any], Any]:
    """Runs forward once: its output tensors and structure, that it runs at all, and (by autograd) what they depend on."""
    torch = _torch()
    name = type(module).__name__
    try:
        with torch.enable_grad():
            result = flat.call(*inputs)
    except Exception as err:
        raise ConversionError(
            f"{name}.forward failed on the example inputs ({type(err).__name__}: {_first_line(err)}). Pass "
            "example inputs with the shapes and dtypes forward() expects, one per argument."
        ) from err
    return _flatten_outputs(name, result)


def _flatten_outputs(name: str, value: Any) -> tuple[list[Any], Any]:
    """The output tensors in :func:`output_structure` order, and the structure (a pytree TreeSpec)."""
    torch = _torch()
    pytree = torch.utils._pytree
    leaves_with_paths, spec = pytree.tree_flatten_with_path(value)
    for path, leaf in leaves_with_paths:
        if not isinstance(leaf, torch.Tensor):
            where = f"output{pytree.keystr(path)}"
            raise ConversionError(
                f"{name}.forward returns a {type(leaf).__name__} at {where}; ONNX graphs output tensors only. "
                "Return tensors in tuples, lists, dicts or ModelOutputs (compute a loss inside forward, drop the "
                "non-tensor values, or turn off what returns them, e.g. use_cache=False)."
            )
    return [leaf for _, leaf in leaves_with_paths], spec


def _reached_leaves(outputs: list[Any]) -> set[int]:
    """``id()`` of every tensor with requires_grad that autograd reaches from ``outputs``.

    This is what "the outputs depend on a parameter" means for the map: a
    parameter reached here must be in the exported graph, unchanged.
    """
    leaves = {id(out) for out in outputs if out.requires_grad and out.grad_fn is None}
    pending = [out.grad_fn for out in outputs if out.grad_fn is not None]
    seen = set()
    while pending:
        function = pending.pop()
        if function is None or function in seen:
            continue
        seen.add(function)
        variable = getattr(function, "variable", None)  # AccumulateGrad holds the leaf it accumulates into
        if variable is not None:
            leaves.add(id(variable))
        pending.extend(next_function for next_function, _ in function.next_functions)
    return leaves


@contextlib.contextmanager
def _replayed_warnings() -> Iterator[list[tuple[str, int]]]:
    """Holds back the warnings of the example forward and the export, then sorts them.

    Yields a list that, on exit, holds the places (file, line) where the
    user's code turned a tensor into a Python bool under the tracer. The
    exporter's deprecation notices are dropped, and every other warning is
    passed on once (forward runs twice: eagerly, then traced).
    """
    branches: list[tuple[str, int]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield branches
    branches.extend(_replay_warnings(caught))


def _replay_warnings(caught: list[warnings.WarningMessage]) -> list[tuple[str, int]]:
    torch = _torch()
    torch_dir = os.path.dirname(torch.__file__) + os.sep
    seen = set()
    branches = []
    for warning in caught:
        message = str(warning.message)
        key = (warning.category, message, warning.filename, warning.lineno)
        if key in seen:
            continue
        seen.add(key)
        if message.startswith(_EXPORTER_NOISE):
            continue
        if issubclass(warning.category, torch.jit.TracerWarning):
            if warning.filename.startswith(torch_dir):
                # PyTorch's own shape checks: correct for the exported (static) shapes.
                logger.debug("tracer warning inside PyTorch: %s:%d: %s", warning.filename, warning.lineno, message)
                continue
            if message.startswith(_BRANCH_ON_TENSOR):
                branches.append((warning.filename, warning.lineno))
                continue
        warnings.warn_explicit(
            warning.message, warning.category, warning.filename, warning.lineno,
            module=_module_name(warning.filename), source=warning.source,
        )
    return branches


def _module_name(filename: str) -> str | None:
    """The module a file was imported as, so ``-W ignore::UserWarning:torch.onnx`` style filters still match."""
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            return name
    return None  # warn_explicit derives one from the file name


def _check_branches(module: Any, flat: Any, inputs: list[Any], branches: list[tuple[str, int]]) -> None:
    """Accepts the traced Python branches if they test shapes only; refuses a branch on a tensor's value.

    Under the tracer a size is a tensor too, so its warning cannot tell
    ``if x.shape[0] > 2`` from ``if x.sum() > 0``. ``torch.export`` can: with
    static shapes it evaluates shape conditions to constants, and raises
    ``GuardOnDataDependentSymNode`` on a condition that needs a tensor's value.
    """
    torch = _torch()
    places = ", ".join(f"{file}:{line}" for file, line in branches)
    try:
        with _quiet_torch_logs(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.export.export(flat, tuple(inputs), strict=False)
    except Exception as err:
        dependent = _data_dependent(err)
        place = _user_frame(dependent) if dependent is not None else None
        if dependent is None:
            logger.debug("torch.export could not check the branches at %s: %s", places, _first_line(err))
        raise ConversionError(
            f"{type(module).__name__}.forward branches on a tensor's value ({place or places}); the ONNX graph "
            "would hold only the branch the example inputs took, giving wrong values and gradients for other "
            "inputs. Compute both branches and select with torch.where."
            + ("" if dependent is not None else
               " (torch.export could not confirm the branches test shapes only: "
               f"{type(err).__name__}: {_first_line(err)})")
        ) from err
    logger.debug("branches at %s test shapes only (torch.export specialised them)", places)


def _data_dependent(err: BaseException) -> BaseException | None:
    """The GuardOnDataDependentSymNode (a branch on a tensor's value) in an exception's chain, if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if type(err).__name__ in ("GuardOnDataDependentSymNode", "DataDependentOutputException"):
            return err
        err = err.__cause__ or err.__context__
    return None


def _user_frame(err: BaseException) -> str | None:
    """``file:line`` of the innermost frame outside PyTorch and onnxgrad in the exception's traceback."""
    torch_dir = os.path.dirname(_torch().__file__) + os.sep
    ours = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frames = [
        frame for frame in traceback.extract_tb(err.__traceback__)
        if not frame.filename.startswith((torch_dir, ours))
    ]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def _export_error(module: Any, err: Exception) -> ConversionError:
    """A ConversionError that names the refused op and says what to do."""
    torch = _torch()
    name = type(module).__name__
    dependent = _data_dependent(err)
    if dependent is not None:  # the dynamo exporter met a branch on a tensor's value
        return ConversionError(
            f"{name}.forward branches on a tensor's value ({_user_frame(dependent) or 'see the cause'}); the ONNX "
            "graph would hold only one branch. Compute both branches and select with torch.where."
        )
    if isinstance(err, torch.onnx.errors.UnsupportedOperatorError):
        op = _UNSUPPORTED_OP.search(str(err))
        what = f"the operator {op.group(1)}" if op else "an operator"
        return ConversionError(
            f"PyTorch cannot export {name} to ONNX opset {OPSET}: its exporter does not support {what}. Replace "
            f"that op in forward() with ops the exporter supports, {_EXPORT_YOURSELF}"
        )
    return ConversionError(
        f"PyTorch could not export {name} to ONNX: {type(err).__name__}: {_first_line(err)}. forward() must be "
        f"traceable (tensors in, tensors out, no data-dependent Python control flow), {_EXPORT_YOURSELF}"
    )


def _first_line(err: Exception) -> str:
    """The first line of an exception's message; the rest (C++ stacks, IR dumps) stays in ``__cause__``."""
    text = _ANSI_COLOR.sub("", str(err)).strip()  # the dynamo exporter colours its messages
    return text.split("\n", 1)[0] if text else "(no message)"


def _restore_inputs(module: Any, model: onnx.ModelProto, names: list[str], inputs: list[Any]) -> None:
    """Makes the graph inputs exactly the example inputs, in order.

    ``keep_initializers_as_inputs`` listed every initializer as a graph input
    too; they are constants here, so they leave. Inputs forward never read were
    dropped by the exporter and come back with the example's dtype and shape.
    """
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    exported = {v.name: v for v in graph.input if v.name not in initializers}
    unexpected = sorted(set(exported) - set(names))
    if unexpected:
        raise ConversionError(
            f"PyTorch's ONNX export of {type(module).__name__} has inputs {unexpected} besides forward's "
            f"arguments {names}: pass exactly the positional arguments of forward(), {_EXPORT_YOURSELF}"
        )
    restored = []
    for name, tensor in zip(names, inputs):
        dtype = _numpy_dtype(tensor)
        value = exported.get(name)
        if value is None:
            logger.debug("input %s is not read by forward; adding it back to the graph", name)
            value = helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(dtype), list(tensor.shape))
        info = TensorInfo.from_value_info(value)
        if info.dtype != dtype or info.shape != tuple(tensor.shape):
            raise ConversionError(
                f"PyTorch's ONNX export of {type(module).__name__} takes input {name!r} as "
                f"{info.dtype}{info.shape_text()}, but the example input is {dtype}{list(tensor.shape)}. "
                f"Pass the example inputs forward() expects, {_EXPORT_YOURSELF}"
            )
        restored.append(value)
    del graph.input[:]
    graph.input.extend(restored)


def _numpy_dtype(tensor: Any) -> np.dtype:
    torch = _torch()
    try:
        return torch.empty((), dtype=tensor.dtype).numpy().dtype
    except TypeError as err:  # bfloat16 and other dtypes numpy lacks
        raise ConversionError(
            f"Example input dtype {tensor.dtype} has no numpy counterpart: cast the input to float32 or float64."
        ) from err


def _exact_average_pools(model: onnx.ModelProto) -> None:
    """``count_include_pad=0`` on unpadded ``AveragePool``s, which is what PyTorch computes.

    With ``ceil_mode`` a window can reach past the input (``nn.AvgPool2d(k,
    ceil_mode=True)`` used as a global pool, as EfficientNet does). PyTorch
    then divides by the elements inside the input; onnxruntime, given the
    exporter's ``count_include_pad=1``, by the whole kernel. Without padding,
    ``count_include_pad=0`` means PyTorch's divisor for every window.
    """
    for node in model.graph.node:
        if node.op_type != "AveragePool" or node.domain not in ("", "ai.onnx"):
            continue
        attributes = {a.name: a for a in node.attribute}
        pads = list(attributes["pads"].ints) if "pads" in attributes else []
        if any(pads) or attributes.get("auto_pad", helper.make_attribute("auto_pad", b"NOTSET")).s != b"NOTSET":
            continue
        if "count_include_pad" in attributes:
            attributes["count_include_pad"].i = 0


def _verify_forward(
    module: Any, model: onnx.ModelProto, inputs: list[Any], outputs: list[Any], structure: Any
) -> None:
    """Runs the exported graph on the example inputs and compares it with forward's own outputs.

    Exporters and onnxruntime disagree on some ops' semantics (pooling
    windows, integer rounding); a graph that does not compute what forward
    computed is refused rather than differentiated.
    """
    from onnxgrad._network import load

    arrays = [tensor.detach().cpu().numpy() for tensor in inputs]
    try:
        results = load(model)(*arrays)
    except Exception as err:
        raise ConversionError(
            f"The ONNX export of {type(module).__name__} does not run on the example inputs "
            f"({type(err).__name__}: {_first_line(err)}), {_EXPORT_YOURSELF}"
        ) from err
    results = results if isinstance(results, tuple) else (results,)
    paths = [_torch().utils._pytree.keystr(path) for path, _ in _torch().utils._pytree.tree_flatten_with_path(
        _torch().utils._pytree.tree_unflatten(list(range(len(outputs))), structure))[0]]
    for path, actual, expected in zip(paths, results, outputs):
        expected = expected.detach().cpu().numpy()
        if expected.dtype.kind != "f":
            close = np.array_equal(actual, expected)
        else:
            scale = float(np.max(np.abs(expected), initial=1.0))
            close = np.allclose(actual, expected, rtol=_VERIFY_RTOL, atol=_VERIFY_RTOL * scale, equal_nan=True)
        if not close:
            raise ConversionError(
                f"The ONNX export of {type(module).__name__} computes output{path} differently from PyTorch on the "
                f"example inputs (largest difference {float(np.max(np.abs(actual - expected))):.3g}): the exporter "
                "and onnxruntime disagree on an op's semantics, so the gradients could not be trusted. Rewrite the "
                f"op forward() uses there (e.g. a pooling window larger than its input), {_EXPORT_YOURSELF}"
            )


# Forward parity of an export: float32 kernels of PyTorch and onnxruntime sum in other orders.
_VERIFY_RTOL = 1e-3


# --- Parameter map ----------------------------------------------------------

# Suffix of the non-trainable copy of a padded embedding's weight (see _mask_padding_rows).
_PADDING_COPY = ".padding_idx_copy"


def _state(module: Any) -> dict[str, Any]:
    """Buffers and frozen parameters: state the user may change between calls."""
    state = {name: b for name, b in module.named_buffers() if b.is_floating_point()}
    state.update({name: p for name, p in module.named_parameters() if not p.requires_grad})
    return state


def _buffer_map(module: Any, model: onnx.ModelProto) -> dict[str, str]:
    """``{buffer or frozen parameter name: initializer name}`` for those kept as they are.

    Only exact, value-checked initializers are mapped; state the exporter folded
    into constants stays baked in (it cannot be updated without a re-export).
    """
    initializers = {i.name: i for i in model.graph.initializer}
    mapping = {}
    for name, tensor in _state(module).items():
        initializer = initializers.get(name)
        if initializer is not None and _common.initializer_mismatch(tensor.detach().cpu().numpy(), initializer) is None:
            mapping[name] = name
    return mapping


def _parameter_map(module: Any, model: onnx.ModelProto, reached: set[int]) -> dict[str, str]:
    """``{parameter name: initializer name}``, each checked by shape, dtype and value.

    The exporter names initializers after the parameters. A parameter with
    requires_grad and no initializer of its name must be one the outputs do
    not depend on (autograd did not reach it, see :func:`_reached_leaves`);
    otherwise the exporter folded or transformed it.
    """
    initializers = {i.name: i for i in model.graph.initializer}
    # Names of all parameters and buffers, frozen ones included: the rest are exporter-made constants.
    claimed = {name for name, _ in module.named_parameters()} | {name for name, _ in module.named_buffers()}
    unclaimed = [i for name, i in initializers.items() if name not in claimed]
    mapping: dict[str, str] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        value = param.detach().cpu().numpy()
        initializer = initializers.get(name)
        if initializer is None:
            if id(param) not in reached:
                logger.debug("parameter %s is not in the exported graph: the outputs do not depend on it", name)
                continue
            copy = _common.rearranged_copy(value, unclaimed)
            if copy is not None:
                raise _transformed(name, f"its values are in initializer {copy!r}, rearranged")
            raise _transformed(
                name, "the outputs depend on it, but no initializer holds it: it was folded into a constant"
            )
        mismatch = _common.initializer_mismatch(value, initializer)
        if mismatch:
            raise _transformed(name, mismatch)
        mapping[name] = initializer.name
    return mapping


def _padded_embeddings(module: Any) -> dict[str, int]:
    """``{weight name: padding_idx}`` of the ``nn.Embedding``s with a padding_idx and a trainable weight."""
    torch = _torch()
    names = {id(p): name for name, p in module.named_parameters()}
    return {
        names[id(sub.weight)]: sub.padding_idx
        for sub in module.modules()
        if isinstance(sub, torch.nn.Embedding) and sub.padding_idx is not None and id(sub.weight) in names
        and sub.weight.requires_grad
    }


def _mask_padding_rows(module: Any, model: onnx.ModelProto, parameters: dict[str, str]) -> dict[str, str]:
    """Gives a padded embedding's lookups of ``padding_idx`` no gradient, as ``nn.Embedding`` does.

    ONNX has no ``padding_idx``: both exporters write a plain ``Gather``,
    whose gradient would update the padding row. Each such ``Gather(W, ids)``
    becomes ``Where(ids == padding_idx, Gather(W_copy, ids), Gather(W, ids))``,
    where ``W_copy`` is a non-trainable initializer bound to W's current value
    at every call (the returned buffer-map entries). Values are unchanged;
    the padding row's gradient is what other uses of W (a tied LM head) give.
    """
    graph = model.graph
    added = {}
    for name, padding_idx in _padded_embeddings(module).items():
        weight = parameters.get(name)
        if weight is None:
            continue
        copy = f"{weight}{_PADDING_COPY}"
        for index in reversed(range(len(graph.node))):
            node = graph.node[index]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or node.input[0] != weight or axis:
                continue
            ids, looked_up = node.input[1], node.output[0]
            prefix = f"{looked_up}{_PADDING_COPY}"
            node.output[0] = f"{prefix}/trained"
            graph.node.insert(index + 1, helper.make_node(
                "Where", [f"{prefix}/is_padding", f"{prefix}/copy", node.output[0]], [looked_up]
            ))
            for offset, new in enumerate([
                helper.make_node("Cast", [ids], [f"{prefix}/ids"], to=onnx.TensorProto.INT64),
                helper.make_node("Equal", [f"{prefix}/ids", f"{prefix}/padding_idx"], [f"{prefix}/equal"]),
                helper.make_node("Unsqueeze", [f"{prefix}/equal", f"{prefix}/last_axis"], [f"{prefix}/is_padding"]),
                helper.make_node("Gather", [copy, ids], [f"{prefix}/copy"]),
            ]):
                graph.node.insert(index + 1 + offset, new)
            graph.initializer.extend([
                helper.make_tensor(f"{prefix}/padding_idx", onnx.TensorProto.INT64, [], [padding_idx]),
                helper.make_tensor(f"{prefix}/last_axis", onnx.TensorProto.INT64, [1], [-1]),
            ])
            if name + _PADDING_COPY not in added:
                initializer = next(i for i in graph.initializer if i.name == weight)
                graph.initializer.add().CopyFrom(initializer)
                graph.initializer[-1].name = copy
                added[name + _PADDING_COPY] = copy
            logger.debug("Gather %s of %s: padding row %d gets no gradient", node.name, name, padding_idx)
    return added


def _transformed(name: str, detail: str) -> ConversionError:
    return ConversionError(
        f"PyTorch's ONNX exporter transformed parameter {name!r} ({detail}), so its gradient cannot be mapped "
        f"back to it. Make forward() use the parameter itself, not a copy computed from it, {_EXPORT_YOURSELF}"
    )


# --- Frontend ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Call:
    """How forward was called: tensor keywords (the last graph inputs) and flags passed as they are."""

    keywords: tuple[str, ...]
    static: tuple[tuple[str, Any], ...]


class TorchFrontend(_frontend.Frontend):
    """A PyTorch module seen by the facade (``ForwardValueAndGrad``, ``value_and_grad``).

    Pass one to the facade instead of the module to choose the exporter:
    ``ForwardValueAndGrad(TorchFrontend(model, exporter="dynamo"), ...)``.

    Args:
        module: the ``torch.nn.Module``. Its CPU parameters and buffers are
            bound by memory, not copied per call: in-place updates (a PyTorch
            optimizer's step) are seen, and a replaced tensor (``p.data = t``,
            a new ``nn.Parameter``) is bound anew at the next call.
        exporter: one of :data:`EXPORTERS`; default :data:`DEFAULT_EXPORTER`.
    """

    def __init__(self, module: Any, exporter: str = DEFAULT_EXPORTER) -> None:
        if exporter not in EXPORTERS:
            raise InputError(f"Unknown exporter {exporter!r}: pass one of {sorted(EXPORTERS)}.")
        self.module = module
        self.exporter = exporter
        # Deserialized output structures, by their OUTPUT_STRUCTURE_KEY text.
        self._structures: dict[str, Any] = {}

    def arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[list[Any], Any]:
        """Graph arguments in order (positional, then tensor keywords in forward's order) and how to call forward.

        ``bool``, ``None`` and ``str`` keyword values (``use_cache=False``,
        ``return_dict=True``) are passed to forward as they are; they are part
        of the signature a graph is exported for, not graph inputs.

        Raises:
            InputError: a keyword forward does not take, or one also given positionally.
        """
        if not kwargs:
            return list(args), None
        parameters = _forward_parameters(self.module)
        names = [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters) or not parameters
        positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        for name in kwargs:
            if name not in names and not takes_any:
                raise InputError(
                    f"{type(self.module).__name__}.forward takes no argument {name!r}; it takes {names}."
                )
            if name in positional[: len(args)]:
                raise InputError(
                    f"Argument {name!r} of {type(self.module).__name__}.forward is given both positionally and by "
                    "keyword: pass it once."
                )
        static = tuple((k, v) for k, v in kwargs.items() if _is_static(v))
        keywords = tuple(_in_signature_order(self.module, [k for k in kwargs if not _is_static(kwargs[k])]))
        return [*args, *(kwargs[k] for k in keywords)], _Call(keywords, static)

    def nest_outputs(self, model: onnx.ModelProto, values: Sequence[Any]) -> Any:
        """The output values in forward's own structure (tuple, dict, ModelOutput...).

        The structure is the one :func:`to_onnx` recorded; without one (a
        container PyTorch cannot serialize) the values come as the base class gives them.
        """
        text = next((p.value for p in model.metadata_props if p.key == OUTPUT_STRUCTURE_KEY), None)
        if text is None:
            return super().nest_outputs(model, values)
        pytree = _torch().utils._pytree
        structure = self._structures.get(text)
        if structure is None:
            structure = self._structures[text] = pytree.treespec_loads(text)
        return pytree.tree_unflatten(list(values), structure)

    def to_numpy(self, args: Sequence[Any]) -> list[np.ndarray]:
        """Turns tensors, arrays and Python numbers or lists into numpy arrays.

        Tensors are detached and copied to the CPU. Python numbers and lists
        take the dtype ``torch.as_tensor`` gives them (``1.0`` is float32, ``1``
        is int64).

        Raises:
            InputError: an argument is none of these.
        """
        torch = _torch()
        arrays = []
        for index, arg in enumerate(args):
            if isinstance(arg, torch.Tensor):
                arrays.append(arg.detach().cpu().numpy())
            elif isinstance(arg, (np.ndarray, np.generic)):
                arrays.append(np.asarray(arg))
            else:
                try:
                    arrays.append(torch.as_tensor(arg).numpy())
                except (TypeError, ValueError, RuntimeError) as err:
                    raise InputError(
                        f"Argument {index} is a {type(arg).__name__}, which is not a tensor: pass torch tensors, "
                        "numpy arrays or Python numbers."
                    ) from err
        return arrays

    def export(self, args: Sequence[np.ndarray], call: Any = None) -> onnx.ModelProto:
        """The module exported for these arguments (see :func:`to_onnx`); ``call`` from :meth:`arguments`."""
        keywords, static = (call.keywords, dict(call.static)) if call is not None else ((), {})
        positional = len(args) - len(keywords)
        keywords = dict(zip(keywords, args[positional:])) | static
        return to_onnx(self.module, *args[:positional], keywords=keywords, exporter=self.exporter)

    def parameter_values(self) -> dict[str, np.ndarray]:
        """Current values of the parameters with ``requires_grad``, as read-only arrays.

        For CPU parameters the arrays share the parameters' memory.
        """
        values = {}
        for name, param in self.module.named_parameters():
            if param.requires_grad:
                value = param.detach().cpu().numpy()
                value.flags.writeable = False
                values[name] = value
        return values

    def buffer_values(self) -> dict[str, np.ndarray]:
        """Current values of the floating-point buffers and frozen parameters."""
        values = {name: t.detach().cpu().numpy() for name, t in _state(self.module).items()}
        parameters = dict(self.module.named_parameters())
        for name in _padded_embeddings(self.module):  # see _mask_padding_rows
            values[name + _PADDING_COPY] = parameters[name].detach().cpu().numpy()
        return values

    def live_tensors(self, names: Iterable[str]) -> dict[str, Any]:
        """The module's tensors behind ``names`` (parameter, buffer or padding-copy names), uncopied.

        The facade binds them by memory (:meth:`host_array`) instead of
        copying :meth:`parameter_values` at every call. Names the module no
        longer has are left out.
        """
        tensors = dict(self.module.named_parameters())
        tensors.update(self.module.named_buffers())
        found = {}
        for name in names:
            tensor = tensors.get(name.removesuffix(_PADDING_COPY))  # see _mask_padding_rows
            if tensor is not None:
                found[name] = tensor
        return found

    @staticmethod
    def storage_key(tensor: Any) -> tuple:
        """What identifies a tensor's memory: it changes when ``param.data = ...`` or a new
        Parameter replaces it, not when an optimizer updates it in place."""
        return tensor.data_ptr(), tensor.shape, tensor.stride(), tensor.dtype, tensor.device

    @staticmethod
    def host_array(tensor: Any) -> tuple[np.ndarray, bool]:
        """The tensor's values as a C-contiguous numpy array, and whether it shares the tensor's memory.

        CPU tensors with a numpy dtype, contiguous, are shared (the array keeps
        the storage alive); others (on a device, strided, conjugated) are copied.
        """
        value = tensor.detach()
        shared = value.device.type == "cpu" and value.is_contiguous() and not value.is_conj() and not value.is_neg()
        array = value.cpu().resolve_conj().resolve_neg().numpy()
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        return array, shared

    def weight_names(self, weights: Any) -> list[str]:
        """Names of Parameters (matched by identity) or parameter names; one, or an iterable of them.

        Raises:
            InputError: a weight is not a parameter of the module with ``requires_grad``.
        """
        torch = _torch()
        if isinstance(weights, (torch.Tensor, str)):
            weights = [weights]
        elif not isinstance(weights, Iterable):
            raise InputError(
                f"weights is a {type(weights).__name__}: pass module.parameters(), a list of some of them, "
                "or their names."
            )
        by_id = {id(p): name for name, p in self.module.named_parameters() if p.requires_grad}
        known = list(by_id.values())
        names = []
        for weight in weights:
            if isinstance(weight, torch.Tensor):
                name = by_id.get(id(weight))
                described = f"a tensor of shape {list(weight.shape)}"
            else:
                name = weight if isinstance(weight, str) and weight in known else None
                described = repr(weight)
            if name is None:
                raise InputError(
                    f"Weight {described} is not a parameter of {type(self.module).__name__} with requires_grad; "
                    f"known: {sorted(known)}. Pass module.parameters(), some of them, or their names."
                )
            names.append(name)
        return names

    def wants_framework_tensors(self, args: Sequence[Any]) -> bool:
        """True when any argument is a torch tensor."""
        torch = _torch()
        return any(isinstance(arg, torch.Tensor) for arg in args)

    def from_numpy(self, array: np.ndarray) -> Any:
        """A CPU torch tensor holding ``array`` (sharing its memory when it is writable and C-contiguous)."""
        torch = _torch()
        array = np.asarray(array)
        if not (array.flags.writeable and array.flags.c_contiguous):
            # torch.from_numpy warns on read-only arrays; np.array keeps 0-d arrays 0-d.
            array = np.array(array, order="C")
        return torch.from_numpy(array)


def frontend(obj: Any) -> TorchFrontend:
    """The front-end for a PyTorch module (called by ``onnxgrad._frontend.frontend_for``).

    Raises:
        InputError: ``obj`` comes from PyTorch but is not a ``torch.nn.Module``.
    """
    torch = _torch()
    if not isinstance(obj, torch.nn.Module):
        raise InputError(
            f"onnxgrad differentiates PyTorch modules, got a {type(obj).__name__}: pass the network "
            "(a torch.nn.Module)."
        )
    return TorchFrontend(obj)
