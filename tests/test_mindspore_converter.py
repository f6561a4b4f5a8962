"""The MindSpore converter: the ONNX it exports computes what the Cell computes,
the parameter map holds by value, the user's Cell is left as it was, and every
failure says what to do. Pins what MindSpore 2.10's exporter does (see the
docstring of ``onnxgrad.converters.mindspore``)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from typing import Any, Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

ms = pytest.importorskip("mindspore")
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops  # noqa: E402
from mindspore.ops import operations as P  # noqa: E402

import onnxgrad  # noqa: E402
import onnxgrad.nn  # noqa: E402
from _support.tolerances import tolerance  # noqa: E402
from onnxgrad import _frontend  # noqa: E402
from onnxgrad.converters import mindspore as converter  # noqa: E402
from onnxgrad.errors import ConversionError, InputError  # noqa: E402

TOLERANCE = tolerance("mindspore:export").kwargs()


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(size=shape).astype(np.float32)


# --- Cells (MindSpore compiles construct() from source, so they live in a file) ---


class SeedNet(nn.Cell):
    """The seed example: a P.MatMul with a Parameter."""

    def __init__(self):
        super(SeedNet, self).__init__()
        self.weight = Parameter(Tensor(np.arange(4).reshape(2, 2).astype(np.float32) - 1.5), name="weight")
        self.matmul = P.MatMul()

    def construct(self, x):
        return self.matmul(x, self.weight)


class ConvReLU(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, has_bias=True, weight_init="normal", bias_init="normal")
        self.relu = nn.ReLU()

    def construct(self, x):
        return self.relu(self.conv(x))


def batchnorm() -> nn.Cell:
    """BatchNorm2d with non-trivial statistics, so eval mode is visible in the values."""
    rng = np.random.default_rng(1)
    cell = nn.BatchNorm2d(3)
    cell.gamma.set_data(Tensor(_f32(rng, 3)))
    cell.beta.set_data(Tensor(_f32(rng, 3)))
    cell.moving_mean.set_data(Tensor(_f32(rng, 3)))
    cell.moving_variance.set_data(Tensor(rng.uniform(0.5, 2.0, 3).astype(np.float32)))
    return cell


class TwoInputs(nn.Cell):
    """Not symmetric in its inputs, so swapped graph inputs would show."""

    def __init__(self):
        super().__init__()
        self.w = Parameter(Tensor(np.linspace(-1, 1, 6).reshape(2, 3).astype(np.float32)), name="w")

    def construct(self, a, b):
        return ops.matmul(a, self.w) - 2 * b


class Unused(nn.Cell):
    """An unused input between used ones, and an unused parameter."""

    def __init__(self):
        super().__init__()
        self.w = Parameter(Tensor(np.linspace(-1, 1, 4).reshape(2, 2).astype(np.float32)), name="w")
        self.unused_w = Parameter(Tensor(np.ones(2, np.float32)), name="unused_w")

    def construct(self, a, ignored, b):
        return ops.matmul(a, self.w) + b


class TwoOutputs(nn.Cell):
    def __init__(self):
        super().__init__()
        self.fc = nn.Dense(3, 2, weight_init="normal", bias_init="normal")

    def construct(self, x):
        y = self.fc(x)
        return y, ops.tanh(y)


class Backbone(nn.Cell):
    def __init__(self):
        super().__init__()
        self.fc = nn.Dense(3, 4, weight_init="normal", bias_init="normal")

    def construct(self, x):
        return self.fc(x)


class ConvBN(nn.Cell):
    """A sub-cell the user may put in another mode than its parent."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, weight_init="normal")
        self.bn = nn.BatchNorm2d(3)

    def construct(self, x):
        return self.bn(self.conv(x))


class Erf(nn.Cell):
    """Erf has no converter in MindSpore 2.10's ONNX exporter."""

    def construct(self, x):
        return ops.erf(x)


# --- Cases: data, not if-statements ------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """A cell, its example inputs, and which trainable parameters the graph must lack."""

    make_cell: Callable[[], nn.Cell]
    make_inputs: Callable[[np.random.Generator], list[np.ndarray]]
    unused_params: tuple[str, ...] = ()


CASES = {
    "seed_matmul": Case(SeedNet, lambda rng: [_f32(rng, 3, 2)]),
    "dense": Case(lambda: nn.Dense(4, 3, weight_init="normal", bias_init="normal"), lambda rng: [_f32(rng, 2, 4)]),
    "sequential": Case(
        lambda: nn.SequentialCell([nn.Dense(4, 5, weight_init="normal"), nn.ReLU(), nn.Dense(5, 2)]),
        lambda rng: [_f32(rng, 3, 4)],
    ),
    "conv_relu": Case(ConvReLU, lambda rng: [_f32(rng, 2, 3, 8, 8)]),
    "batchnorm_eval": Case(batchnorm, lambda rng: [_f32(rng, 2, 3, 4, 4)]),
    "two_inputs": Case(TwoInputs, lambda rng: [_f32(rng, 4, 2), _f32(rng, 4, 3)]),
    "unused_input_and_param": Case(
        Unused, lambda rng: [_f32(rng, 3, 2), _f32(rng, 5), _f32(rng, 3, 2)], unused_params=("unused_w",)
    ),
    "embedding_int32": Case(
        lambda: nn.Embedding(10, 4), lambda rng: [rng.integers(0, 10, size=(2, 3)).astype(np.int32)]
    ),
    "two_outputs": Case(TwoOutputs, lambda rng: [_f32(rng, 5, 3)]),
}


def _make(name: str) -> tuple[nn.Cell, list[np.ndarray]]:
    case = CASES[name]
    return case.make_cell(), case.make_inputs(np.random.default_rng(0))


def _run_onnx(model: onnx.ModelProto, inputs: list[np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {value.name: x for value, x in zip(session.get_inputs(), inputs)}
    return session.run(None, feeds)


def _as_list(outputs: Any) -> list[np.ndarray]:
    if isinstance(outputs, (tuple, list)):
        return [o.asnumpy() for o in outputs]
    return [outputs.asnumpy()]


def _assert_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    np.testing.assert_allclose(actual, expected, err_msg=what, **TOLERANCE)


def _initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    raise AssertionError(f"no initializer {name!r} in the model")


# --- Forward values, parameter map, inputs -------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_forward_matches_the_cell(name):
    cell, inputs = _make(name)
    expected = _as_list(cell(*[Tensor(x) for x in inputs]))
    model = converter.to_onnx(cell, *inputs)
    actual = _run_onnx(model, inputs)
    assert len(actual) == len(expected), f"{name}: {len(actual)} outputs, MindSpore gives {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        _assert_close(a, e, f"{name} output[{i}]")


@pytest.mark.parametrize("name", sorted(CASES))
def test_parameter_map_names_each_used_parameter_and_holds_its_value(name):
    cell, inputs = _make(name)
    model = converter.to_onnx(cell, *inputs)
    mapping = _frontend.parameter_map(model)
    used = [p for p in cell.trainable_params() if p.name not in CASES[name].unused_params]
    # MindSpore 2.10 names initializers after the parameters; the map keeps parameter order.
    assert list(mapping.items()) == [(p.name, p.name) for p in used]
    for param in used:
        array = _initializer(model, mapping[param.name])
        value = param.asnumpy()
        assert array.shape == value.shape and array.dtype == value.dtype, f"initializer of {param.name}"
        np.testing.assert_array_equal(array, value, err_msg=f"initializer of {param.name}")
    initializers = {i.name for i in model.graph.initializer}
    assert not initializers & set(CASES[name].unused_params), "unused parameters are not exported"


@pytest.mark.parametrize("name", sorted(CASES))
def test_graph_inputs_are_the_example_inputs_in_order(name):
    cell, inputs = _make(name)
    model = converter.to_onnx(cell, *inputs)
    graph_inputs = model.graph.input
    assert len(graph_inputs) == len(inputs), "one graph input per example input, unused ones included"
    for value, x in zip(graph_inputs, inputs):
        tensor_type = value.type.tensor_type
        assert helper.tensor_dtype_to_np_dtype(tensor_type.elem_type) == x.dtype, value.name
        assert [d.dim_value for d in tensor_type.shape.dim] == list(x.shape), value.name


def test_inputs_are_named_after_construct_arguments():
    model = converter.to_onnx(Unused(), *CASES["unused_input_and_param"].make_inputs(np.random.default_rng(0)))
    assert [v.name for v in model.graph.input] == ["a", "ignored", "b"]


def test_same_cell_and_signature_export_twice():
    # MindSpore 2.10 alone fails the second time (its compile cache); the converter works around it.
    cell, inputs = _make("sequential")
    first = converter.to_onnx(cell, *inputs)
    second = converter.to_onnx(cell, *inputs)
    # Only the graph's name (MindSpore's compile counter) may differ.
    second.graph.name = first.graph.name
    assert first == second


def test_mindspore_writes_ir4_opset11():
    # Recorded, not changed by the converter: onnxgrad.load normalises IR and opset.
    cell, inputs = _make("dense")
    model = converter.to_onnx(cell, *inputs)
    assert model.ir_version == 4
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 11)]


def test_accepts_mindspore_tensors_as_example_inputs():
    cell, inputs = _make("two_inputs")
    model = converter.to_onnx(cell, *[Tensor(x) for x in inputs])
    expected = cell(*[Tensor(x) for x in inputs]).asnumpy()
    _assert_close(_run_onnx(model, inputs)[0], expected, "two_inputs from Tensors")


# --- The user's Cell and file system are left as they were -----------------------


def _modes(cell: nn.Cell) -> dict[str, bool]:
    return {name: sub.training for name, sub in cell.cells_and_names()}


@pytest.mark.parametrize("cell_factory,fails", [(ConvBN, False), (Erf, True)], ids=["exported", "refused"])
def test_training_flags_and_context_are_restored(cell_factory, fails):
    cell = cell_factory()
    cell.set_train(True)
    if isinstance(cell, ConvBN):
        cell.bn.set_train(False)  # a frozen BatchNorm inside a training net
    before = _modes(cell)
    syntax_level = ms.get_context("jit_syntax_level")
    x = np.ones((1, 3, 2, 2), np.float32)
    if fails:
        with pytest.raises(ConversionError):
            converter.to_onnx(cell, x)
    else:
        converter.to_onnx(cell, x)
    assert _modes(cell) == before
    assert cell.phase == "train"
    # mindspore.export sets STRICT and, when it fails, leaves it set.
    assert ms.get_context("jit_syntax_level") == syntax_level


class _RecordingTemporaryDirectory(tempfile.TemporaryDirectory):
    created: list[str] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.created.append(self.name)


@pytest.mark.parametrize("cell_factory,fails", [(SeedNet, False), (Erf, True)], ids=["exported", "refused"])
def test_no_temporary_files_are_left(cell_factory, fails, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(_RecordingTemporaryDirectory, "created", [])
    monkeypatch.setattr(tempfile, "TemporaryDirectory", _RecordingTemporaryDirectory)
    x = np.ones((3, 2), np.float32)
    if fails:
        with pytest.raises(ConversionError):
            converter.to_onnx(cell_factory(), x)
    else:
        converter.to_onnx(cell_factory(), x)
    created = _RecordingTemporaryDirectory.created
    assert len(created) == 1 and os.path.basename(created[0]).startswith(converter.TEMP_PREFIX)
    assert os.path.dirname(created[0]) == str(tmp_path), "the export should write under the temp dir"
    assert os.listdir(tmp_path) == [], "the export's temporary directory must be removed"


# --- Errors that say what to do ------------------------------------------------


def test_unsupported_op_is_named_with_what_to_do():
    message = r"does not support the operator Erf\. Replace that op.*onnxgrad\.load"
    with pytest.raises(ConversionError, match=message) as info:
        converter.to_onnx(Erf(), np.ones(3, np.float32))
    assert isinstance(info.value.__cause__, RuntimeError), "MindSpore's error is kept as the cause"
    assert "C++ Call Stack" not in str(info.value)


def test_bare_loss_cell_points_to_with_loss_cell():
    logits = np.ones((2, 3), np.float32)
    message = r"SoftmaxCrossEntropyWithLogits\. If it belongs to the loss, pass nn\.WithLossCell\(backbone, loss_fn\)"
    with pytest.raises(ConversionError, match=message):
        converter.to_onnx(nn.SoftmaxCrossEntropyWithLogits(), logits, logits)


def test_wrong_example_inputs_are_a_conversion_error():
    with pytest.raises(ConversionError, match=r"could not export SeedNet.*TypeError.*example inputs match"):
        converter.to_onnx(SeedNet(), np.ones((3, 2), np.float32), np.ones((3, 2), np.float32))


def test_not_a_cell_is_refused():
    with pytest.raises(ConversionError, match=r"converts a mindspore\.nn\.Cell, got function"):
        converter.to_onnx(ops.tanh, np.ones(3, np.float32))


def _seed_model() -> tuple[nn.Cell, onnx.ModelProto]:
    cell = SeedNet()
    return cell, converter.to_onnx(cell, np.ones((3, 2), np.float32))


def _replace_initializer(model: onnx.ModelProto, name: str, array: np.ndarray, new_name: str | None = None) -> None:
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, new_name or name))
            return
    raise AssertionError(name)


# How an exporter could transform a parameter: (new initializer value, new name or None), and the message.
TRANSFORMED = {
    "other_values": (
        lambda w: (w + 1, None),
        r"parameter 'weight' \(its initializer holds other values\)",
    ),
    "other_shape": (
        lambda w: (np.ascontiguousarray(w[:, :1]), None),
        r"parameter 'weight' \(its initializer is float32\[2, 1\], the parameter float32\[2, 2\]\)",
    ),
    "renamed_and_transposed": (
        lambda w: (np.ascontiguousarray(w.T), "folded_const"),
        r"parameter 'weight' \(its values are in initializer 'folded_const', rearranged\)",
    ),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMED))
def test_transformed_parameter_raises_naming_it(name):
    cell, model = _seed_model()
    transform, message = TRANSFORMED[name]
    array, new_name = transform(cell.weight.asnumpy())
    _replace_initializer(model, "weight", array, new_name)
    with pytest.raises(ConversionError, match=message):
        converter._parameter_map(cell, model)


def test_parameter_absent_from_graph_is_left_out_of_the_map():
    cell, model = _seed_model()
    del model.graph.initializer[:]
    assert converter._parameter_map(cell, model) == {}


def test_graph_without_an_example_input_is_refused():
    # MindSpore 2.10 keeps unused inputs; a graph that lost one must not reach the facade.
    cell, inputs = _make("unused_input_and_param")
    model = converter.to_onnx(cell, *inputs)
    del model.graph.input[1]
    message = r"takes inputs \['float32\[3, 2\]', 'float32\[3, 2\]'\].*not the example inputs"
    with pytest.raises(ConversionError, match=message):
        converter._check_inputs(cell, model, inputs)


def test_importing_the_converter_needs_no_mindspore():
    code = (
        "import sys; sys.modules['mindspore'] = None\n"
        "import numpy as np, onnxgrad.converters.mindspore as c\n"
        "from onnxgrad.errors import ConversionError\n"
        "try:\n    c.to_onnx(object(), np.ones(1))\n"
        "except ConversionError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "pip install 'onnxgrad[mindspore]'" in result.stdout


# --- Loss cells ----------------------------------------------------------------


@pytest.mark.parametrize(
    "sparse,reduction,label",
    [
        (True, "mean", np.array([0, 3, 1, 2, 3], np.int32)),
        (False, "none", np.eye(4, dtype=np.float32)[[1, 0, 3, 3, 2]]),
        (False, "sum", np.random.default_rng(2).dirichlet(np.ones(4), 5).astype(np.float32)),
    ],
    ids=["sparse-mean", "dense-none", "dense-sum"],
)
def test_with_loss_cell_exports_backbone_and_attaches_loss(sparse, reduction, label):
    x = _f32(np.random.default_rng(0), 5, 3)
    cell = nn.WithLossCell(Backbone(), nn.SoftmaxCrossEntropyWithLogits(sparse=sparse, reduction=reduction))
    expected = cell(Tensor(x), Tensor(label)).asnumpy()
    model = converter.to_onnx(cell, x, label)

    assert [v.name for v in model.graph.input] == ["x", "label"]
    assert len(model.graph.output) == 1
    assert _frontend.parameter_map(model) == {"fc.weight": "fc.weight", "fc.bias": "fc.bias"}
    [loss] = _run_onnx(model, [x, label])
    _assert_close(loss, expected, f"SoftmaxCrossEntropyWithLogits(sparse={sparse}, {reduction!r})")


def test_with_loss_cell_export_loads_in_onnxgrad():
    x = _f32(np.random.default_rng(0), 5, 3)
    label = np.array([0, 3, 1, 2, 3], np.int32)
    cell = nn.WithLossCell(Backbone(), nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    expected = cell(Tensor(x), Tensor(label)).asnumpy()
    loss = onnxgrad.load(converter.to_onnx(cell, x, label))(x, label)
    _assert_close(np.asarray(loss), expected, "WithLossCell through onnxgrad.load")


def test_with_loss_cell_needs_the_label():
    cell = nn.WithLossCell(Backbone(), nn.SoftmaxCrossEntropyWithLogits())
    with pytest.raises(ConversionError, match="takes the data then the label"):
        converter.to_onnx(cell, np.ones((2, 3), np.float32))


def test_unknown_loss_lists_the_supported_ones():
    cell = nn.WithLossCell(Backbone(), nn.RMSELoss())
    with pytest.raises(ConversionError, match=r"loss RMSELoss has no counterpart.*nn\.SoftmaxCrossEntropyWithLogits"):
        converter.to_onnx(cell, np.ones((2, 3), np.float32), np.ones((2, 4), np.float32))


def test_loss_missing_from_onnxgrad_nn_is_not_supported_yet(monkeypatch):
    monkeypatch.delattr(onnxgrad.nn, "MSELoss", raising=False)
    cell = nn.WithLossCell(Backbone(), nn.MSELoss())
    with pytest.raises(ConversionError, match="The loss MSELoss is not supported yet"):
        converter.to_onnx(cell, np.ones((2, 3), np.float32), np.ones((2, 4), np.float32))


WEIGHT = np.array([0.5, 2.0, 1.0, 1.5], np.float32)

# MindSpore loss -> the constructor arguments its onnxgrad.nn counterpart must get.
# BCEWithLogitsLoss(reduction='sum') keeps LossBase's flags for 'mean': the
# converter must read `reduction`; MSELoss only has the flags.
LOSS_ARGUMENTS = {
    "SoftmaxCrossEntropyWithLogits": (
        lambda: nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="sum"), dict(sparse=True, reduction="sum")
    ),
    "MSELoss": (lambda: nn.MSELoss(reduction="sum"), dict(reduction="sum")),
    "L1Loss": (lambda: nn.L1Loss(reduction="none"), dict(reduction="none")),
    "SmoothL1Loss": (lambda: nn.SmoothL1Loss(beta=0.5, reduction="mean"), dict(beta=0.5, reduction="mean")),
    "HuberLoss": (lambda: nn.HuberLoss(reduction="sum", delta=2.0), dict(reduction="sum", delta=2.0)),
    "BCEWithLogitsLoss": (
        lambda: nn.BCEWithLogitsLoss(reduction="sum", weight=Tensor(WEIGHT), pos_weight=Tensor(WEIGHT * 2)),
        dict(reduction="sum", weight=WEIGHT, pos_weight=WEIGHT * 2),
    ),
    "CrossEntropyLoss": (
        lambda: nn.CrossEntropyLoss(weight=Tensor(WEIGHT), ignore_index=1, reduction="sum", label_smoothing=0.1),
        dict(weight=WEIGHT, ignore_index=1, reduction="sum", label_smoothing=0.1),
    ),
    "NLLLoss": (lambda: nn.NLLLoss(reduction="none"), dict(weight=None, ignore_index=-100, reduction="none")),
}


def test_every_loss_in_the_table_is_tested():
    assert sorted(LOSS_ARGUMENTS) == sorted(converter._LOSSES)


@pytest.mark.parametrize("name", sorted(LOSS_ARGUMENTS))
def test_loss_table_reads_the_mindspore_loss_attributes(name, monkeypatch):
    received = {}

    class Recorder:
        def __init__(self, **kwargs):
            received.update(kwargs)

    monkeypatch.setattr(onnxgrad.nn, name, Recorder, raising=False)
    make_loss, expected = LOSS_ARGUMENTS[name]
    assert isinstance(converter._loss_for(make_loss()), Recorder)
    assert sorted(received) == sorted(expected)
    for key, value in expected.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(received[key], value, err_msg=f"{name}.{key}")
        else:
            assert received[key] == value, f"{name}.{key}"


# --- The front-end the facade uses ---------------------------------------------


def test_frontend_for_a_cell_is_the_mindspore_frontend():
    cell = SeedNet()
    frontend = _frontend.frontend_for(cell)
    assert isinstance(frontend, converter.MindSporeFrontend)
    assert frontend.cell is cell


def test_frontend_for_a_mindspore_tensor_is_refused():
    with pytest.raises(InputError, match=r"got a Tensor: pass the network"):
        _frontend.frontend_for(Tensor(np.ones(2, np.float32)))


def test_frontend_export_carries_the_parameter_map():
    cell, inputs = _make("two_inputs")
    frontend = converter.frontend(cell)
    model = frontend.export(frontend.to_numpy(inputs))
    assert _frontend.parameter_map(model) == {"w": "w"}


def test_frontend_to_numpy_uses_mindspore_dtypes():
    frontend = converter.frontend(SeedNet())
    arrays = frontend.to_numpy([Tensor(np.ones(2, np.float16)), np.arange(3), 1.5, 2, True, np.float64(3)])
    assert [(a.dtype, a.shape) for a in arrays] == [
        (np.float16, (2,)), (np.arange(3).dtype, (3,)), (np.float32, ()), (np.int64, ()), (np.bool_, ()),
        (np.float64, ()),
    ]


def test_frontend_tensors_in_tensors_out():
    frontend = converter.frontend(SeedNet())
    assert frontend.wants_framework_tensors([np.ones(2), Tensor(np.ones(2))])
    assert not frontend.wants_framework_tensors([np.ones(2), 1.0])
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = frontend.from_numpy(array.T)
    assert isinstance(tensor, Tensor)
    np.testing.assert_array_equal(tensor.asnumpy(), array.T)


def test_frontend_parameter_values_are_current_and_read_only():
    cell = SeedNet()
    frontend = converter.frontend(cell)
    cell.weight.set_data(Tensor(np.full((2, 2), 3.0, np.float32)))
    values = frontend.parameter_values()
    assert list(values) == ["weight"]
    np.testing.assert_array_equal(values["weight"], np.full((2, 2), 3.0, np.float32))
    with pytest.raises(ValueError):
        values["weight"][0, 0] = 0.0  # a view of MindSpore's buffer: must not be written through


@pytest.mark.parametrize(
    "weights",
    [
        lambda cell: ParameterTuple(cell.trainable_params()),
        lambda cell: list(cell.trainable_params()),
        lambda cell: [p.name for p in cell.trainable_params()],
    ],
    ids=["ParameterTuple", "Parameters", "names"],
)
def test_frontend_weight_names(weights):
    cell = nn.SequentialCell([nn.Dense(2, 3), nn.Dense(3, 1)])
    frontend = converter.frontend(cell)
    assert frontend.weight_names(weights(cell)) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_frontend_unknown_weight_lists_the_known_ones():
    frontend = converter.frontend(nn.Dense(2, 3))
    message = r"Weight 'fc\.weight' is not a parameter of Dense; known: \['bias', 'weight'\]"
    with pytest.raises(InputError, match=message):
        frontend.weight_names(["fc.weight"])
