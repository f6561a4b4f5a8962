"""MindSpore front-end: ``nn.Cell`` to ONNX, and the :class:`~onnxgrad._frontend.Frontend` the facade uses.

:func:`to_onnx` exports a Cell with ``mindspore.export(..., file_format="ONNX")``
and checks the result before anyone differentiates it. What MindSpore 2.10's
exporter does, as observed (``tests/test_mindspore_converter.py`` pins it):

- It writes IR version 4, opset 11 (left as is: ``onnxgrad.load`` normalises).
- Initializers carry the parameters' names (``fc.weight``, ``0.bias``) and
  their values unchanged: weights used transposed get a ``Transpose`` node or
  ``Gemm(transB=1)``, casts and scalings stay nodes. :func:`to_onnx` still
  checks every mapped initializer against its parameter by shape, dtype and value.
- Parameters the output does not depend on are left out of the graph; they are
  left out of the parameter map too (their gradient is zero).
- Graph inputs are the ``construct`` arguments in order, named after them
  (``args0``, ``args1`` for ``*args``; ``x_$`` when a parameter is called ``x``),
  unused ones included; integer inputs (``nn.Embedding``'s ids) keep their dtype.
- Shapes are static: the exporter refuses dynamic shapes, and its ``Reshape``
  nodes hold the example's batch size, so the batch dimension stays fixed.
  The facade exports once per argument signature anyway.
- Ops without an ONNX converter (``Erf``, ``Atan``, ``Expm1``, ``Mish``, and
  every loss op such as ``SoftmaxCrossEntropyWithLogits``) make the export fail;
  a ``WithLossCell`` is therefore exported as its backbone plus a loss from
  :mod:`onnxgrad.nn` (see :data:`_LOSSES`).
- A failed export leaves the cell in eval mode and ``jit_syntax_level`` at
  STRICT; :func:`to_onnx` restores both either way.
- Exporting the same cell twice for the same signature fails in MindSpore
  (its compile cache); :func:`to_onnx` clears the cached export first.
- Two int ops get an output dtype their ONNX node does not compute (ONNX Runtime
  refuses such a model): ``x.sum()`` of int32 is declared int64 (MindSpore sums
  into int64), which :func:`to_onnx` repairs by casting the sum's input to int64;
  and int ``x / y`` (MindSpore's true division: float32) is an int ``Div`` under a
  float output, which :func:`to_onnx` refuses naming the node.
- ``mindspore.export(file_format="ONNX")`` logs that it will be replaced by
  ``mindspore.onnx.export``, which writes the same model and has the same
  cache problem; onnxgrad calls ``mindspore.onnx.export`` where it exists.

MindSpore is imported on first use, so importing this module does not need it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import tempfile
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import onnx
from onnx import helper

import onnxgrad.nn
from onnxgrad import _frontend
from onnxgrad.converters import _common
from onnxgrad.errors import ConversionError, InputError

__all__ = ["MindSporeFrontend", "frontend", "to_onnx"]

logger = logging.getLogger(__name__)

#: Prefix of the temporary directory each export writes into (removed afterwards).
TEMP_PREFIX = "onnxgrad-mindspore-"

# The compile phase mindspore.export uses for ONNX (a prefix of the cached phase names).
_EXPORT_PHASE = "export.onnx"
# MindSpore's message for a primitive its ONNX exporter has no converter for.
_UNSUPPORTED_OP = re.compile(r"Can not find key (\w+) in convert map")

_EXPORT_YOURSELF = (
    "or export the model to ONNX yourself (mindspore.onnx.export, or another tool) "
    "and pass the .onnx file to onnxgrad.load."
)


def _mindspore() -> Any:
    """Imports MindSpore on first use (it is an optional dependency)."""
    try:
        import mindspore
    except ImportError as err:
        raise ConversionError(
            "Converting a MindSpore Cell needs MindSpore: pip install 'onnxgrad[mindspore]'."
        ) from err
    return mindspore


# --- Export -----------------------------------------------------------------


def to_onnx(cell: Any, *example_inputs: Any) -> onnx.ModelProto:
    """Exports a MindSpore Cell to ONNX, with a verified parameter map.

    The cell is exported in eval mode; every sub-cell's training flag is
    restored afterwards. An ``nn.WithLossCell`` is exported as its backbone,
    on all example inputs but the last, followed by the matching loss from
    :mod:`onnxgrad.nn`, whose label input takes the last example's dtype.

    Args:
        cell: a ``mindspore.nn.Cell``.
        *example_inputs: the ``construct`` arguments (MindSpore Tensors,
            numpy arrays, or scalars, which take MindSpore's dtypes); the
            model is exported for their shapes and dtypes.

    Returns:
        A model taking one graph input per example input, in order, whose
        metadata maps each trainable parameter the outputs depend on to its
        initializer (:func:`onnxgrad._frontend.parameter_map`), in
        ``cell.trainable_params()`` order. Parameters the outputs do not
        depend on are absent from the graph and from the map.

    Raises:
        ConversionError: MindSpore cannot export the cell (the message names an
            unsupported op), the loss has no counterpart in :mod:`onnxgrad.nn`,
            or the exported graph does not hold a parameter unchanged.

    Example:
        >>> import numpy as np
        >>> from mindspore import nn
        >>> from onnxgrad._frontend import parameter_map
        >>> model = to_onnx(nn.Dense(4, 3), np.ones((2, 4), np.float32))
        >>> parameter_map(model)
        {'weight': 'weight', 'bias': 'bias'}
    """
    ms = _mindspore()
    if not isinstance(cell, ms.nn.Cell):
        raise ConversionError(
            f"to_onnx converts a mindspore.nn.Cell, got {type(cell).__name__}: wrap the computation in a Cell."
        )
    _refuse_custom_bprop(cell)
    inputs = [_as_array(x) for x in example_inputs]
    with _eval_mode(cell):
        if isinstance(cell, ms.nn.WithLossCell):
            return _export_with_loss(cell, inputs)
        model = _export(cell, inputs)
    _frontend.set_parameter_map(model, _parameter_map(cell, model))
    _frontend.set_parameter_map(model, _buffer_map(cell, model), _frontend.BUFFER_MAP_KEY)
    return model


def _refuse_custom_bprop(cell: Any) -> None:
    """A custom ``bprop`` is MindSpore's gradient for its cell; the ONNX export holds only
    ``construct``, whose gradient would silently replace it."""
    for path, sub in cell.cells_and_names():
        if any("bprop" in vars(klass) for klass in type(sub).__mro__):
            where = f" (at {path!r})" if path else ""
            raise ConversionError(
                f"{type(sub).__name__}{where} defines a custom bprop, which an ONNX export cannot carry: onnxgrad "
                "would differentiate its construct() instead and give other gradients than MindSpore. Remove "
                "the bprop, or differentiate this cell with MindSpore itself."
            )


def _export_with_loss(cell: Any, inputs: list[np.ndarray]) -> onnx.ModelProto:
    """The backbone's graph on the data inputs, then the loss from onnxgrad.nn."""
    if len(inputs) < 2:
        raise ConversionError(
            f"A WithLossCell takes the data then the label; got {len(inputs)} example input(s): pass both."
        )
    loss_fn = _loss_for(cell._loss_fn)
    backbone = _export(cell._backbone, inputs[:-1])
    # The map is built on the backbone's graph: the loss adds no parameters.
    _frontend.set_parameter_map(backbone, _parameter_map(cell, backbone))
    _frontend.set_parameter_map(backbone, _buffer_map(cell, backbone), _frontend.BUFFER_MAP_KEY)
    return onnxgrad.nn.attach_loss(backbone, loss_fn, inputs[-1].dtype)


def _onnx_exporter() -> Any:
    """``mindspore.onnx`` where this MindSpore has it (it replaces ``mindspore.export(file_format="ONNX")``)."""
    try:
        return importlib.import_module("mindspore.onnx")
    except ImportError:
        return None


def _export(cell: Any, inputs: list[np.ndarray]) -> onnx.ModelProto:
    """``mindspore.export`` into a temporary directory, checked and loaded."""
    ms = _mindspore()
    tensors = [ms.Tensor(x) for x in inputs]
    _forget_previous_exports(cell)
    # mindspore.export sets jit_syntax_level to STRICT and only restores it on success.
    syntax_level = ms.get_context("jit_syntax_level")
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as tmp:
        path = os.path.join(tmp, "model")
        try:
            exporter = _onnx_exporter()
            if exporter is not None:  # MindSpore's replacement: no deprecation warning
                exporter.export(cell, *tensors, file_name=path)
            else:
                ms.export(cell, *tensors, file_name=path, file_format="ONNX")
        except Exception as err:  # MindSpore raises RuntimeError, TypeError, KeyError, ValueError...
            raise _export_error(cell, err) from err
        finally:
            ms.set_context(jit_syntax_level=syntax_level)
        model = onnx.load(path + ".onnx")
    logger.debug(
        "MindSpore exported %s: IR %d, opsets %s",
        type(cell).__name__, model.ir_version, {o.domain or "ai.onnx": o.version for o in model.opset_import},
    )
    _check_inputs(cell, model, inputs)
    _repair_declared_int_types(cell, model)
    return model


def _forget_previous_exports(cell: Any) -> None:
    """Makes MindSpore compile the cell afresh for this export.

    MindSpore 2.10 caches the graph it compiled for an export, per cell and
    argument signature, and fails to export a cached graph a second time
    ("i: 3 out of range" for a Dense). Dropping the cached export phases from
    the cell's compile cache makes it compile again.
    """
    cache = getattr(cell, "compile_cache", None)
    if isinstance(cache, set):
        cache.difference_update([phase for phase in cache if phase.startswith(_EXPORT_PHASE)])


@contextlib.contextmanager
def _eval_mode(cell: Any) -> Iterator[None]:
    """Eval mode for the export; every sub-cell's own flag back afterwards.

    ``cell.set_train(previous)`` would not do: it overwrites sub-cells a user
    put in another mode on purpose (a frozen BatchNorm in a training net).
    """
    modes = [(sub, sub.training) for _, sub in cell.cells_and_names()]
    phase = cell.phase
    cell.set_train(False)
    try:
        yield
    finally:
        for sub, training in modes:
            sub.add_flags(training=training)
        cell.phase = phase


def _export_error(cell: Any, err: Exception) -> ConversionError:
    """A ConversionError that names the refused op and says what to do."""
    ms = _mindspore()
    # The first line says what failed; the C++ stack and source traceback stay in __cause__.
    first_line = str(err).strip().split("\n", 1)[0]
    summary = f"{type(err).__name__}: {first_line}"
    name = type(cell).__name__
    unsupported = _UNSUPPORTED_OP.search(summary)
    if unsupported is None:
        return ConversionError(
            f"MindSpore could not export {name} to ONNX: {summary}. Check that the example inputs match "
            f"construct()'s arguments and that construct() compiles in graph mode, {_EXPORT_YOURSELF}"
        )
    hint = "Replace that op in construct() with ops the exporter supports,"
    if any(isinstance(sub, ms.nn.LossBase) for _, sub in cell.cells_and_names()):
        # Every MindSpore loss op is refused; WithLossCell is how onnxgrad takes losses.
        hint = (
            "If it belongs to the loss, pass nn.WithLossCell(backbone, loss_fn) instead: onnxgrad exports the "
            f"backbone and adds the loss itself ({_supported_losses()}). Otherwise replace that op in "
            "construct() with ops the exporter supports,"
        )
    return ConversionError(
        f"MindSpore cannot export {name} to ONNX: its exporter does not support the operator "
        f"{unsupported.group(1)}. {hint} {_EXPORT_YOURSELF}"
    )


def _as_array(value: Any) -> np.ndarray:
    """A Tensor, array or scalar as an array; scalars and lists get MindSpore's dtypes (1.0: float32)."""
    ms = _mindspore()
    if isinstance(value, ms.Tensor):
        return value.asnumpy()
    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value)
    return ms.Tensor(value).asnumpy()


def _check_inputs(cell: Any, model: onnx.ModelProto, inputs: list[np.ndarray]) -> None:
    """The graph must take exactly the example inputs, in order.

    MindSpore 2.10 keeps unused arguments as graph inputs; were a future version
    to drop some, the positional contract with the facade would break
    silently, so this fails loudly instead.
    """
    initializers = {i.name for i in model.graph.initializer}
    graph_inputs = [v for v in model.graph.input if v.name not in initializers]
    expected = [f"{x.dtype}{list(x.shape)}" for x in inputs]
    found = [_describe(v) for v in graph_inputs]
    if found != expected:
        raise ConversionError(
            f"MindSpore's ONNX export of {type(cell).__name__} takes inputs {found} "
            f"({[v.name for v in graph_inputs]}), not the example inputs {expected}: pass exactly the arguments "
            f"of construct(), as Tensors or arrays, {_EXPORT_YOURSELF}"
        )


def _repair_declared_int_types(cell: Any, model: onnx.ModelProto) -> None:
    """Graph outputs whose declared dtype differs from what their node computes, which MindSpore 2.10
    writes for two int ops (ONNX Runtime then refuses the model):

    - ``ReduceSum`` of an int32 tensor declared int64 (MindSpore sums int32 into int64): repaired, in
      place, by casting the ReduceSum's input to the declared dtype, so it sums as MindSpore does;
    - ``x / y`` on int tensors (MindSpore's true division, float32 values and a float32 gradient even
      for an int input) written as an int ``Div`` under a float output: refused, since onnxgrad's
      int gradients take the int input's dtype.

    Any other such mismatch is refused too, naming the node.
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    for value in probe.graph.output:
        value.type.tensor_type.elem_type = onnx.TensorProto.UNDEFINED
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, strict_mode=False).graph.output
    except Exception:  # noqa: BLE001 - inference is a check here, never a requirement
        return
    producer = {out: node for node in model.graph.node for out in node.output}
    for declared, found in zip(model.graph.output, inferred):
        want, got = declared.type.tensor_type.elem_type, found.type.tensor_type.elem_type
        node = producer.get(declared.name)
        if not got or got == want or node is None:
            continue
        want_name, got_name = (helper.tensor_dtype_to_np_dtype(t).name for t in (want, got))
        if node.op_type == "ReduceSum" and want == onnx.TensorProto.INT64 and got == onnx.TensorProto.INT32:
            summed = f"{node.input[0]}/as_int64"
            model.graph.node.insert(
                list(model.graph.node).index(node), helper.make_node("Cast", [node.input[0]], [summed], to=want)
            )
            node.input[0] = summed
            continue
        if node.op_type == "Div" and np.dtype(helper.tensor_dtype_to_np_dtype(got)).kind in "iu":
            fix = ("MindSpore's / on int tensors is true division (float32 values, and a float32 gradient even "
                   "for an int input, which onnxgrad cannot give): cast to float first, e.g. "
                   "ops.cast(x, mindspore.float32) / 2, ")
        else:
            fix = "Change that computation in the Cell, "
        raise ConversionError(
            f"MindSpore's ONNX export of {type(cell).__name__} declares output {declared.name!r} as {want_name}, "
            f"but its {node.op_type} node {node.name or declared.name!r} computes {got_name} (a MindSpore 2.10 "
            f"exporter bug; ONNX Runtime would refuse the model). {fix}{_EXPORT_YOURSELF}"
        )


def _describe(value: onnx.ValueInfoProto) -> str:
    """``float32[3, 2]``: the same spelling as the example inputs get in :func:`_check_inputs`."""
    tensor_type = value.type.tensor_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor_type.shape.dim]
    return f"{dtype}{dims}"


# --- Parameter map ----------------------------------------------------------


def _frozen(cell: Any) -> list[Any]:
    """Non-trainable float parameters (BatchNorm statistics, frozen weights)."""
    trainable = {p.name for p in cell.trainable_params()}
    return [p for p in cell.get_parameters() if p.name not in trainable and p.asnumpy().dtype.kind == "f"]


def _buffer_map(cell: Any, model: onnx.ModelProto) -> dict[str, str]:
    """``{name: initializer}`` for non-trainable parameters exported as they are (value-checked)."""
    initializers = {i.name: i for i in model.graph.initializer}
    return {
        p.name: p.name
        for p in _frozen(cell)
        if p.name in initializers and _common.initializer_mismatch(p.asnumpy(), initializers[p.name]) is None
    }


def _parameter_map(cell: Any, model: onnx.ModelProto) -> dict[str, str]:
    """``{parameter name: initializer name}``, each checked by shape, dtype and value.

    MindSpore names initializers after the parameters. A trainable parameter
    with no initializer of its name is one the outputs do not depend on,
    unless an unclaimed initializer holds its values rearranged, which means
    the exporter transformed it.
    """
    initializers = {i.name: i for i in model.graph.initializer}
    claimed = {p.name for p in cell.get_parameters()}  # non-trainable ones too (BatchNorm statistics)
    mapping: dict[str, str] = {}
    for param in cell.trainable_params():
        value = param.asnumpy()
        initializer = initializers.get(param.name)
        if initializer is None:
            copy = _common.rearranged_copy(value, [i for n, i in initializers.items() if n not in claimed])
            if copy is not None:
                raise _transformed(param.name, f"its values are in initializer {copy!r}, rearranged")
            logger.debug("parameter %s is not in the exported graph: the outputs do not depend on it", param.name)
            continue
        mismatch = _common.initializer_mismatch(value, initializer)
        if mismatch:
            raise _transformed(param.name, mismatch)
        mapping[param.name] = initializer.name
    return mapping


def _transformed(name: str, detail: str) -> ConversionError:
    return ConversionError(
        f"MindSpore's ONNX exporter transformed parameter {name!r} ({detail}), so its gradient cannot be "
        f"mapped back to it. Apply the transformation in construct() instead of to the stored weight, "
        f"{_EXPORT_YOURSELF}"
    )


# --- Losses -----------------------------------------------------------------


def _reduction(loss: Any) -> str:
    # Most losses store `reduction`. MSELoss keeps only LossBase's `reduce` and
    # `average` flags; BCEWithLogitsLoss sets those for the default 'mean'
    # whatever its `reduction`, so `reduction` wins where both exist.
    reduction = getattr(loss, "reduction", None)
    if reduction is not None:
        return reduction
    if not loss.reduce:
        return "none"
    return "mean" if loss.average else "sum"


def _array_or_none(tensor: Any) -> np.ndarray | None:
    return None if tensor is None else _as_array(tensor)


def _nn_loss(name: str, **kwargs: Any) -> onnxgrad.nn.LossFn:
    """``onnxgrad.nn.<name>(**kwargs)``, or a ConversionError if onnxgrad lacks it."""
    loss_class = getattr(onnxgrad.nn, name, None)
    if loss_class is None:
        raise ConversionError(
            f"The loss {name} is not supported yet: onnxgrad.nn has no {name}. Use one of "
            f"{_supported_losses()}, or export the model with its loss to ONNX yourself and pass the file to "
            "onnxgrad.load."
        )
    return loss_class(**kwargs)


def _softmax_cross_entropy(loss: Any) -> onnxgrad.nn.LossFn:
    return _nn_loss("SoftmaxCrossEntropyWithLogits", sparse=loss.sparse, reduction=_reduction(loss))


def _mse(loss: Any) -> onnxgrad.nn.LossFn:
    return _nn_loss("MSELoss", reduction=_reduction(loss))


def _l1(loss: Any) -> onnxgrad.nn.LossFn:
    return _nn_loss("L1Loss", reduction=_reduction(loss))


def _smooth_l1(loss: Any) -> onnxgrad.nn.LossFn:
    return _nn_loss("SmoothL1Loss", beta=loss.beta, reduction=_reduction(loss))


def _huber(loss: Any) -> onnxgrad.nn.LossFn:
    return _nn_loss("HuberLoss", reduction=_reduction(loss), delta=loss.delta)


def _bce_with_logits(loss: Any) -> onnxgrad.nn.LossFn:
    return _nn_loss(
        "BCEWithLogitsLoss",
        reduction=_reduction(loss),
        weight=_array_or_none(loss.weight),
        pos_weight=_array_or_none(loss.pos_weight),
    )


def _cross_entropy(loss: Any) -> onnxgrad.nn.LossFn:
    return _nn_loss(
        "CrossEntropyLoss",
        weight=_array_or_none(loss.weight),
        ignore_index=loss.ignore_index,
        reduction=_reduction(loss),
        label_smoothing=loss.label_smoothing,
    )


def _nll(loss: Any) -> onnxgrad.nn.LossFn:
    return _nn_loss(
        "NLLLoss", weight=_array_or_none(loss.weight), ignore_index=loss.ignore_index, reduction=_reduction(loss)
    )


#: MindSpore loss class (in ``mindspore.nn``) -> the matching :mod:`onnxgrad.nn`
#: loss, built from the MindSpore loss cell's attributes (MindSpore 2.10 names).
_LOSSES: dict[str, Callable[[Any], onnxgrad.nn.LossFn]] = {
    "SoftmaxCrossEntropyWithLogits": _softmax_cross_entropy,
    "MSELoss": _mse,
    "L1Loss": _l1,
    "SmoothL1Loss": _smooth_l1,
    "HuberLoss": _huber,
    "BCEWithLogitsLoss": _bce_with_logits,
    "CrossEntropyLoss": _cross_entropy,
    "NLLLoss": _nll,
}


def _supported_losses() -> str:
    """The MindSpore losses onnxgrad.nn implements today, for error messages."""
    names = sorted(name for name in _LOSSES if hasattr(onnxgrad.nn, name))
    return ", ".join(f"nn.{name}" for name in names)


def _loss_for(loss: Any) -> onnxgrad.nn.LossFn:
    """The onnxgrad.nn loss matching a MindSpore loss cell."""
    ms = _mindspore()
    name = type(loss).__name__
    # Only MindSpore's own classes: a subclass may compute something else.
    if name not in _LOSSES or type(loss) is not getattr(ms.nn, name, None):
        raise ConversionError(
            f"WithLossCell's loss {name} has no counterpart in onnxgrad.nn; the supported MindSpore losses are "
            f"{_supported_losses()}. Use one of them, or make one Cell computing backbone and loss together "
            "from ops MindSpore can export to ONNX and pass that instead."
        )
    return _LOSSES[name](loss)


# --- Frontend ---------------------------------------------------------------


class MindSporeFrontend(_frontend.Frontend):
    """A MindSpore Cell seen by the facade (``ForwardValueAndGrad``, ``value_and_grad``).

    Args:
        cell: the ``mindspore.nn.Cell``; its parameters are read at every call,
            so updates by a MindSpore optimizer are seen.
    """

    def __init__(self, cell: Any) -> None:
        self.cell = cell

    def to_numpy(self, args: Sequence[Any]) -> list[np.ndarray]:
        """Turns Tensors, arrays and Python scalars into numpy arrays.

        Python scalars and lists take the dtype MindSpore's ``Tensor`` gives them
        (``1.0`` is float32, ``1`` is int64).
        """
        return [_as_array(arg) for arg in args]

    def export(self, args: Sequence[np.ndarray]) -> onnx.ModelProto:
        """The cell exported for these arguments (see :func:`to_onnx`).

        Raises:
            ConversionError: a BatchNorm or Dropout sub-cell is in training mode,
                where MindSpore would differentiate batch statistics or dropout
                but the exported graph is the eval-mode one.
        """
        training = [
            name or type(sub).__name__
            for name, sub in self.cell.cells_and_names()
            if sub.training and ("BatchNorm" in type(sub).__name__ or "Dropout" in type(sub).__name__)
        ]
        if training:
            raise ConversionError(
                f"Sub-cells {training} are in training mode, which onnxgrad cannot reproduce: it differentiates "
                "the eval-mode graph (running statistics, no dropout). Call cell.set_train(False) first."
            )
        return to_onnx(self.cell, *args)

    def buffer_values(self) -> dict[str, np.ndarray]:
        """Current values of the non-trainable parameters (BatchNorm statistics, frozen weights)."""
        return {p.name: p.asnumpy() for p in _frozen(self.cell)}

    def parameter_values(self) -> dict[str, np.ndarray]:
        """Every parameter's current value (frozen ones too), as read-only views of MindSpore's buffers."""
        values = {}
        for param in self.cell.get_parameters():
            value = param.asnumpy()  # shares the parameter's memory
            value.flags.writeable = False
            values[param.name] = value
        return values

    def weight_names(self, weights: Any) -> list[str]:
        """Names of a ``ParameterTuple``, a list of Parameters or names, or one Parameter or name.

        Frozen parameters (``requires_grad=False``) are accepted: as in MindSpore, their
        gradients are zeros.

        Raises:
            InputError: a weight is not a parameter of the cell.
        """
        ms = _mindspore()
        if isinstance(weights, (ms.Parameter, str)):
            weights = [weights]
        known = [p.name for p in self.cell.get_parameters()]
        names = []
        for weight in weights:
            name = weight.name if isinstance(weight, ms.Parameter) else weight
            if not isinstance(name, str) or name not in known:
                raise InputError(
                    f"Weight {name!r} is not a parameter of {type(self.cell).__name__}; known: "
                    f"{sorted(known)}. Pass ParameterTuple(cell.trainable_params()) or some of their names."
                )
            names.append(name)
        return names

    def wants_framework_tensors(self, args: Sequence[Any]) -> bool:
        """True when any argument is a MindSpore Tensor."""
        ms = _mindspore()
        return any(isinstance(arg, ms.Tensor) for arg in args)

    def from_numpy(self, array: np.ndarray) -> Any:
        """A MindSpore Tensor holding ``array``."""
        # np.ascontiguousarray would turn a 0-d loss into shape (1,).
        return _mindspore().Tensor(np.require(array, requirements="C"))


def frontend(obj: Any) -> MindSporeFrontend:
    """The front-end for a MindSpore Cell (called by ``onnxgrad._frontend.frontend_for``).

    Raises:
        InputError: ``obj`` comes from MindSpore but is not a Cell.
    """
    ms = _mindspore()
    if not isinstance(obj, ms.nn.Cell):
        raise InputError(
            f"onnxgrad differentiates MindSpore Cells, got a {type(obj).__name__}: pass the network (an nn.Cell)."
        )
    return MindSporeFrontend(obj)
