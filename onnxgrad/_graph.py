"""The one graph toolkit: small helpers for reading and writing ONNX graphs.

Reading: tensor metadata (:class:`TensorInfo`), the type table shape inference
gives (:class:`TypeTable`), attributes (:func:`attr`), constant values
(:func:`constant_value`), default-domain tests, what a Cast produces
(:func:`cast_to`, :func:`float_casts`). Writing: unique names
(:func:`unique_name`), concrete input shapes (:func:`concretize_inputs`), and
:class:`GraphWriter`, whose node emitters follow the model's opset (ReduceSum
and Unsqueeze moved ``axes`` from an attribute to an input in opset 13).

Everything here is private to onnxgrad: ``GraphWriter`` is not part of the
public API, which is why ``onnxgrad.nn.LossFn`` is closed to subclasses.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper, shape_inference

__all__ = [
    "TensorInfo", "GraphWriter", "default_opset", "tensor_infos", "FLOAT_TYPES", "TensorType", "TypeTable",
    "infer_types", "DEFAULT_DOMAINS", "is_default_domain", "attr", "attrs", "constant_value", "unique_name",
    "concretize_inputs", "cast_to", "float_casts",
]

#: The names of ONNX's default operator domain.
DEFAULT_DOMAINS = ("", "ai.onnx")

#: ONNX element types treated as differentiable.
FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
)


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Name, shape and dtype of a graph input or output.

    Attributes:
        name: the ONNX tensor name.
        shape: one entry per axis: an ``int`` for a fixed size, a ``str`` for a
            named symbolic size, ``None`` for an unknown one; ``None`` instead of a
            tuple when even the rank is unknown.
        dtype: the numpy dtype.
    """

    name: str
    shape: tuple[int | str | None, ...] | None
    dtype: np.dtype

    @property
    def elem_type(self) -> int:
        """The ONNX ``TensorProto`` element type."""
        return helper.np_dtype_to_tensor_dtype(self.dtype)

    @property
    def is_float(self) -> bool:
        """Whether gradients can flow through this tensor."""
        return self.elem_type in FLOAT_TYPES

    def accepts(self, shape: Sequence[int]) -> bool:
        """Whether a concrete ``shape`` fits this (possibly symbolic) shape."""
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(
            not isinstance(want, int) or want == got for want, got in zip(self.shape, shape)
        )

    def shape_text(self) -> str:
        """The shape as a user would write it, symbolic sizes by name."""
        if self.shape is None:
            return "any shape"
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"

    @classmethod
    def from_value_info(cls, value_info: onnx.ValueInfoProto) -> TensorInfo:
        """Reads a graph input or output declaration."""
        tensor_type = value_info.type.tensor_type
        shape: tuple[int | str | None, ...] | None = None
        if tensor_type.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim
            )
        return cls(value_info.name, shape, np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)))


class TensorType(NamedTuple):
    """A tensor's element type and shape, as inference knows them.

    Attributes:
        elem: the ONNX ``TensorProto`` element type; 0 when unknown.
        shape: one size per axis (None where unknown); None when even the rank is unknown.
    """

    elem: int
    shape: tuple[int | None, ...] | None


#: What the table says of a tensor it does not know.
UNKNOWN = TensorType(0, None)


class TypeTable(dict):
    """``{tensor name: TensorType}`` for one graph, read through small typed accessors.

    A plain dict of ``(elem, shape)`` tuples underneath, so code that unpacks
    entries keeps working; read it with :meth:`elem`, :meth:`shape` and friends
    rather than ``types.get(name, (0, None))[0]``.
    """

    def type_of(self, name: str) -> TensorType:
        """The tensor's type; :data:`UNKNOWN` when the table does not know it."""
        return self.get(name, UNKNOWN)

    def elem(self, name: str) -> int:
        """The tensor's ONNX element type; 0 when unknown."""
        return self.get(name, UNKNOWN)[0]

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        """The tensor's shape (None entries for unknown sizes); None when the rank is unknown."""
        return self.get(name, UNKNOWN)[1]

    def static_shape(self, name: str) -> tuple[int, ...] | None:
        """The tensor's shape when every size is known, else None."""
        shape = self.shape(name)
        if shape is None:
            return None
        sizes = tuple(d for d in shape if d is not None)
        return sizes if len(sizes) == len(shape) else None

    def rank(self, name: str) -> int | None:
        """The tensor's rank; None when unknown."""
        shape = self.shape(name)
        return None if shape is None else len(shape)

    def is_float(self, name: str) -> bool:
        """Whether the tensor is known to have a differentiable (float) type."""
        return self.elem(name) in FLOAT_TYPES


def infer_types(model: onnx.ModelProto) -> TypeTable:
    """The type of every tensor ONNX shape inference types (graph inputs, values, outputs, initializers)."""
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # inference is a help, never a requirement
        inferred = model
    graph = inferred.graph
    types = TypeTable()
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor = value.type.tensor_type
        shape = None
        if tensor.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        types[value.name] = TensorType(tensor.elem_type, shape)
    for init in graph.initializer:
        types[init.name] = TensorType(init.data_type, tuple(init.dims))
    return types


def tensor_infos(value_infos: Iterable[onnx.ValueInfoProto], exclude: Iterable[str] = ()) -> tuple[TensorInfo, ...]:
    """TensorInfo for each declaration whose name is not in ``exclude``."""
    skip = set(exclude)
    return tuple(TensorInfo.from_value_info(v) for v in value_infos if v.name not in skip)


def is_default_domain(domain: str) -> bool:
    """Whether ``domain`` (a node's or an opset import's) names ONNX's default operator domain."""
    return domain in DEFAULT_DOMAINS


def default_opset(model: onnx.ModelProto) -> int:
    """The model's opset for the default ONNX domain."""
    for opset in model.opset_import:
        if is_default_domain(opset.domain):
            return opset.version
    raise ValueError("model imports no default-domain opset")


def attr(node: onnx.NodeProto, name: str, default=None):
    """The value of one attribute of ``node`` (strings decoded), or ``default`` when absent."""
    for attribute in node.attribute:
        if attribute.name == name:
            value = helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def attrs(node: onnx.NodeProto) -> dict:
    """Every attribute of ``node`` by name (strings left as bytes, as ``make_node`` takes them back)."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def constant_value(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    """The value of ``name`` if an initializer or a default-domain Constant node holds it, else None."""
    if not name:
        return None
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and is_default_domain(node.domain) and node.output[0] == name:
            attribute = node.attribute[0]
            value = helper.get_attribute_value(attribute)
            if attribute.name == "value":
                return numpy_helper.to_array(value)
            if attribute.name in ("value_float", "value_floats", "value_int", "value_ints"):
                return np.asarray(value)
            return None
    return None


def unique_name(name: str, taken: set[str]) -> str:
    """``name`` if not in ``taken``, else the first free ``name_1``, ``name_2``...; added to ``taken``."""
    candidate, k = name, 1
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    taken.add(candidate)
    return candidate


def concretize_inputs(graph: onnx.GraphProto, shapes: dict[str, Sequence[int]]) -> None:
    """Gives the graph inputs named in ``shapes`` those concrete shapes, in place.

    Declared value and output shapes are dropped: written for the symbolic
    shapes, they may disagree with the concrete ones, and inference recomputes them.
    """
    for value in graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for size in shapes[value.name]:
                dims.add().dim_value = int(size)
    del graph.value_info[:]
    for value in graph.output:
        value.type.tensor_type.ClearField("shape")


def cast_to(node: onnx.NodeProto, types: TypeTable) -> int:
    """The element type a default-domain Cast or CastLike node produces; 0 for other nodes or when unknown."""
    if not is_default_domain(node.domain):
        return 0
    if node.op_type == "Cast":
        return attr(node, "to", 0)
    if node.op_type == "CastLike":
        return types.elem(node.output[0]) or (types.elem(node.input[1]) if len(node.input) > 1 else 0)
    return 0


def float_casts(graph: onnx.GraphProto, name: str, types: TypeTable) -> set[str]:
    """The outputs of the Casts (and CastLikes) of ``name`` to a float type: where an int
    tensor's gradient enters float math."""
    return {node.output[0] for node in graph.node if name in node.input[:1] and cast_to(node, types) in FLOAT_TYPES}


class GraphWriter:
    """Emits nodes into a graph with unique names, following the graph's opset.

    Args:
        graph: the graph to append nodes and initializers to.
        opset: the default-domain opset of the model.
        prefix: prefix for generated tensor names.
        model: the model owning ``graph``, needed to add functions.
        inline_constants: emit constants as Constant nodes (function bodies
            cannot hold initializers).
    """

    def __init__(
        self,
        graph: onnx.GraphProto,
        opset: int,
        prefix: str = "onnxgrad",
        model: onnx.ModelProto | None = None,
        inline_constants: bool = False,
    ) -> None:
        self.graph = graph
        self.inline_constants = inline_constants
        self.opset = opset
        self.model = model
        #: Where new nodes go; point it at another list to splice nodes in elsewhere.
        self.nodes = graph.node
        self._prefix = prefix
        self._taken = {name for node in graph.node for name in itertools.chain(node.input, node.output)}
        self._taken.update(v.name for v in itertools.chain(graph.input, graph.output, graph.initializer))
        self._taken.update(node.name for node in graph.node)  # fresh() also names nodes
        self._counter = itertools.count()

    def claim(self, name: str) -> str:
        """``name`` itself if the graph does not use it yet, else a fresh name from it; either is now taken."""
        if name in self._taken:
            return self.fresh(name)
        self._taken.add(name)
        return name

    def fresh(self, hint: str) -> str:
        """A tensor name not used in the graph yet."""
        while True:
            name = f"{self._prefix}/{hint}_{next(self._counter)}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def node(self, op_type: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1, **attrs) -> list[str]:
        """Appends one node; returns its output names (fresh ones when ``outputs`` is a count)."""
        domain = attrs.pop("domain", "")
        if isinstance(outputs, int):
            outputs = [self.fresh(op_type.lower()) for _ in range(outputs)]
        else:
            self._taken.update(outputs)
        self.nodes.append(
            helper.make_node(op_type, list(inputs), list(outputs), name=self.fresh(op_type), domain=domain, **attrs)
        )
        return list(outputs)

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        """Appends a one-output node and returns the output's name."""
        return self.node(op_type, inputs, 1, **attrs)[0]

    def constant(self, value: np.ndarray | float | int | Sequence, dtype: np.dtype | type | None = None) -> str:
        """Adds an initializer holding ``value``; returns its name."""
        array = np.asarray(value, dtype=dtype)
        name = self.fresh("const")
        if self.inline_constants:
            self.node("Constant", [], [name], value=numpy_helper.from_array(array, name))
        else:
            self.graph.initializer.append(numpy_helper.from_array(array, name))
        return name

    def reduce(self, op_type: str, x: str, axes: Sequence[int] | None, keepdims: bool) -> str:
        """A Reduce* node over ``axes`` (all axes when None), in the right opset form."""
        keep = int(keepdims)
        # ReduceSum moved axes to an input in opset 13, the other reductions in 18.
        axes_as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if axes is None:
            return self.op(op_type, x, keepdims=keep)
        if axes_as_input:
            return self.op(op_type, x, self.constant(list(axes), np.int64), keepdims=keep)
        return self.op(op_type, x, axes=list(axes), keepdims=keep)

    def unsqueeze(self, x: str, axes: Sequence[int]) -> str:
        """Unsqueeze in the right opset form."""
        if self.opset >= 13:
            return self.op("Unsqueeze", x, self.constant(list(axes), np.int64))
        return self.op("Unsqueeze", x, axes=list(axes))

    def squeeze(self, x: str, axes: Sequence[int]) -> str:
        """Squeeze in the right opset form."""
        if self.opset >= 13:
            return self.op("Squeeze", x, self.constant(list(axes), np.int64))
        return self.op("Squeeze", x, axes=list(axes))

    def add_function(self, function: onnx.FunctionProto) -> None:
        """Adds a model-local function (once) and imports its domain."""
        if self.model is None:
            raise ValueError("this GraphWriter has no model to add functions to")
        if any(f.domain == function.domain and f.name == function.name for f in self.model.functions):
            return
        self.model.functions.append(function)
        if all(o.domain != function.domain for o in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid(function.domain, 1))

    def softplus(self, x: str, dtype: np.dtype) -> str:
        """``log(1 + exp(x))`` as ``(x + |x|) / 2 + log(1 + exp(-|x|))``.

        Stable for large ``|x|``, and its gradient at 0 is the true 0.5 (a Relu
        for the first term would give 0 there, and is float32-only in ORT).
        """
        abs_x = self.op("Abs", x)
        positive = self.op("Mul", self.op("Add", x, abs_x), self.constant(0.5, dtype))
        log_term = self.op("Log", self.op("Add", self.op("Exp", self.op("Neg", abs_x)), self.constant(1.0, dtype)))
        return self.op("Add", positive, log_term)

    def cast(self, x: str, dtype: npt.DTypeLike) -> str:
        """Cast to a numpy dtype."""
        return self.op("Cast", x, to=helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))
