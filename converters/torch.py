"""PyTorch front-end: ``nn.Module`` to ONNX, and the :class:`~onnxgrad._frontend.Frontend` the facade uses.

**Exporter.** :func:`to_onnx` uses PyTorch's TorchScript-based exporter,
``torch.onnx.export(..., dynamo=False)``, at opset :data:`OPSET` (it writes
IR version 8). The torch.export-based exporter, the default since PyTorch 2.9,
needs ``onnxscript``, which onnxgrad does not depend on; the TorchScript one
is deprecated but still part of PyTorch 2.13, needs nothing else, and writes
an IR version and opset that onnxruntime-training's gradient builder accepts.
Opset 17 is the first with a ``LayerNormalization`` op (earlier opsets get
a decomposition).

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
  to a Python boolean"). Raised from the user's code, that warning makes
  :func:`to_onnx` fail (it cannot tell a value from a shape: under tracing,
  ``x.shape[0]`` is a tensor too); raised inside PyTorch itself (shape checks
  in ``nn.functional.multi_head_attention_forward``) it is dropped. Other
  tracer warnings from user code are passed on.
- On a failed export, PyTorch 2.13 prints "Torch IR graph at exception: ..."
  to stdout from C++ (its ``setup_onnx_logging`` tests a function object for
  truth); onnxgrad leaves that alone.

PyTorch is imported on first use, so importing this module does not need it.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper

from onnxgrad._frontend import BUFFER_MAP_KEY, Frontend, set_parameter_map
from onnxgrad.converters._common import initializer_mismatch, rearranged_copy
from onnxgrad._graph import TensorInfo, default_opset
from onnxgrad._versions import MAX_IR_VERSION, MAX_OPSET
from onnxgrad.errors import ConversionError, InputError

__all__ = ["OPSET", "TorchFrontend", "frontend", "to_onnx"]

logger = logging.getLogger(__name__)

#: The default-domain opset :func:`to_onnx` exports (IR version 8).
OPSET = 17

#: Graph output names: ``output_0``, ``output_1``, ... in forward's return order.
OUTPUT_NAME = "output_{}"

_EXPORT_YOURSELF = "or export the model to ONNX yourself and pass the .onnx file to onnxgrad.load."

# Deprecation notices the TorchScript exporter gives on every call: noise for
# onnxgrad's users, who did not choose the exporter.
_EXPORTER_NOISE = (
    "You are using the legacy TorchScript-based ONNX export",
    "The feature will be removed",
)

# The tracer's warning for `if tensor:`, `bool(tensor)`, `assert tensor`...
_BRANCH_ON_TENSOR = "Converting a tensor to a Python boolean"

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


def to_onnx(module: Any, *example_inputs: Any) -> onnx.ModelProto:
    """Exports a PyTorch module to ONNX, with a verified parameter map.

    The module is exported in eval mode; every submodule's training flag is
    restored afterwards, whether the export succeeds or not.

    Args:
        module: a ``torch.nn.Module``.
        *example_inputs: forward's positional arguments: torch tensors, numpy
            arrays or Python scalars (a float becomes float32, an int int64).
            The model is exported for their shapes and dtypes.

    Returns:
        A model (IR version 8, opset :data:`OPSET`) taking one graph input per
        example input, in order and named after forward's arguments, including
        ones forward does not read, and giving one graph output per tensor
        forward returns (``output_0``, ``output_1``, ... in the order of a
        returned tuple, nested tuples flattened). Its metadata maps each
        parameter with ``requires_grad`` that the outputs depend on to an
        initializer holding the parameter's value unchanged
        (:func:`onnxgrad._frontend.parameter_map`), in ``named_parameters()``
        order; parameters the outputs do not depend on (per autograd) are
        absent from the graph and from the map.

    Raises:
        ConversionError: ``module`` is not a module, an example input or
            output is not a tensor, forward fails on the example inputs, the
            exporter refuses an op, forward branches on a tensor's value, or
            the exported graph does not hold a parameter unchanged. The
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
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(
            f"to_onnx converts a torch.nn.Module, got {type(module).__name__}: wrap the computation in a Module."
        )
    inputs = _example_tensors(module, example_inputs)
    input_names = _input_names(module, len(inputs))
    with _eval_mode(module), _without_fastpath(), _replayed_warnings(module):
        outputs = _example_outputs(module, inputs)
        output_names = [OUTPUT_NAME.format(i) for i in range(len(outputs))]
        model = _export(module, inputs, input_names, output_names)
    _restore_inputs(module, model, input_names, inputs)
    set_parameter_map(model, _parameter_map(module, model, _reached_leaves(outputs)))
    set_parameter_map(model, _buffer_map(module, model), BUFFER_MAP_KEY)
    return model


def _export(module: Any, inputs: list[Any], input_names: list[str], output_names: list[str]) -> onnx.ModelProto:
    """``torch.onnx.export`` (TorchScript) into memory; see the module docstring for the settings."""
    torch = _torch()
    buffer = io.BytesIO()
    try:
        torch.onnx.export(
            module,
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
    model = onnx.load_from_string(buffer.getvalue())
    opset = default_opset(model)
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


def _input_names(module: Any, count: int) -> list[str]:
    """Graph input names: forward's argument names (``x``; ``args_0`` for ``*args``), made unique."""
    try:
        parameters = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):  # builtins, some C extensions
        parameters = []
    positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var_positional = next((p.name for p in parameters if p.kind == p.VAR_POSITIONAL), None)
    # An input named like a parameter or buffer would clash with its initializer.
    taken = {name for name, _ in module.named_parameters()} | {name for name, _ in module.named_buffers()}
    taken.update(OUTPUT_NAME.format(i) for i in range(count + 1))
    names = []
    for index in range(count):
        if index < len(positional):
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


def _example_outputs(module: Any, inputs: list[Any]) -> list[Any]:
    """Runs forward once: how many tensors it returns, that it runs at all, and (by autograd) what they depend on."""
    torch = _torch()
    name = type(module).__name__
    try:
        with torch.enable_grad():
            result = module(*inputs)
    except Exception as err:
        raise ConversionError(
            f"{name}.forward failed on the example inputs ({type(err).__name__}: {_first_line(err)}). Pass "
            "example inputs with the shapes and dtypes forward() expects, one per positional argument."
        ) from err
    return _flatten_outputs(name, result, "output")


def _flatten_outputs(name: str, value: Any, path: str) -> list[Any]:
    torch = _torch()
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        flat = []
        for index, item in enumerate(value):
            flat.extend(_flatten_outputs(name, item, f"{path}[{index}]"))
        return flat
    raise ConversionError(
        f"{name}.forward returns a {type(value).__name__} at {path}; ONNX graphs output tensors only. Return a "
        "tensor or a tuple of tensors (compute a loss inside forward, or drop the non-tensor values)."
    )


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
def _replayed_warnings(module: Any) -> Iterator[None]:
    """Holds back the warnings of the example forward and the export, then sorts them.

    The exporter's deprecation notices are dropped, a branch on a tensor's
    value in the user's code becomes a ConversionError, and every other
    warning is passed on once (forward runs twice: eagerly, then traced).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    _replay_warnings(module, caught)


def _replay_warnings(module: Any, caught: list[warnings.WarningMessage]) -> None:
    torch = _torch()
    torch_dir = os.path.dirname(torch.__file__) + os.sep
    seen = set()
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
                raise ConversionError(
                    f"{type(module).__name__}.forward branches on a tensor's value "
                    f"({warning.filename}:{warning.lineno}); the ONNX graph would hold only the branch the example "
                    "inputs took, giving wrong values and gradients for other inputs. Compute both branches and "
                    "select with torch.where. If the condition only checks shapes, skip it while exporting: "
                    "`if not torch.onnx.is_in_onnx_export(): ...`."
                )
        warnings.warn_explicit(
            warning.message, warning.category, warning.filename, warning.lineno, source=warning.source
        )


def _export_error(module: Any, err: Exception) -> ConversionError:
    """A ConversionError that names the refused op and says what to do."""
    torch = _torch()
    name = type(module).__name__
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
    text = str(err).strip()
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


# --- Parameter map ----------------------------------------------------------


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
        if initializer is not None and initializer_mismatch(tensor.detach().cpu().numpy(), initializer) is None:
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
            copy = rearranged_copy(value, unclaimed)
            if copy is not None:
                raise _transformed(name, f"its values are in initializer {copy!r}, rearranged")
            raise _transformed(
                name, "the outputs depend on it, but no initializer holds it: it was folded into a constant"
            )
        mismatch = initializer_mismatch(value, initializer)
        if mismatch:
            raise _transformed(name, mismatch)
        mapping[name] = initializer.name
    return mapping


def _transformed(name: str, detail: str) -> ConversionError:
    return ConversionError(
        f"PyTorch's ONNX exporter transformed parameter {name!r} ({detail}), so its gradient cannot be mapped "
        f"back to it. Make forward() use the parameter itself, not a copy computed from it, {_EXPORT_YOURSELF}"
    )


# --- Frontend ---------------------------------------------------------------


class TorchFrontend(Frontend):
    """A PyTorch module seen by the facade (``ForwardValueAndGrad``, ``value_and_grad``).

    Args:
        module: the ``torch.nn.Module``; its parameters are read at every call,
            so updates by a PyTorch optimizer are seen.
    """

    def __init__(self, module: Any) -> None:
        self.module = module

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

    def export(self, args: Sequence[np.ndarray]) -> onnx.ModelProto:
        """The module exported for these arguments (see :func:`to_onnx`)."""
        return to_onnx(self.module, *args)

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
        return {name: t.detach().cpu().numpy() for name, t in _state(self.module).items()}

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
