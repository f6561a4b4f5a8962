"""The PyTorch converter: the ONNX it exports computes what the module computes,
the parameter map holds by value, the user's module is left as it was, and every
failure says what to do. Pins what PyTorch 2.13's TorchScript exporter does (see
the docstring of ``onnxgrad.converters.torch``)."""

from __future__ import annotations

import collections
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from _support.tolerances import tolerance  # noqa: E402
from _support.torch_models import MODELS  # noqa: E402
from onnxgrad import _frontend  # noqa: E402
from onnxgrad._graph import TensorInfo, default_opset  # noqa: E402
from onnxgrad.converters import torch as converter  # noqa: E402
from onnxgrad.errors import ConversionError, InputError  # noqa: E402

TOLERANCE = tolerance("torch").kwargs()


def _run(model: onnx.ModelProto, inputs) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.asarray(x) for i, x in zip(session.get_inputs(), inputs)}
    return session.run(None, feeds)


def _torch_outputs(module: nn.Module, inputs) -> list[np.ndarray]:
    with torch.no_grad():
        result = module(*inputs)
    results = result if isinstance(result, tuple) else (result,)
    return [r.numpy() for r in results]


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))


@pytest.fixture(scope="module")
def exported() -> dict[str, tuple[nn.Module, tuple, onnx.ModelProto]]:
    """Every zoo module, its inputs and its export (exporting is the slow part)."""
    results = {}
    for name, case in MODELS.items():
        module, inputs = case.module(), case.inputs()
        results[name] = (module, inputs, converter.to_onnx(module, *inputs))
    return results


# --- Every zoo module -------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_onnx_computes_what_torch_computes(exported, name):
    module, inputs, model = exported[name]
    expected = _torch_outputs(module, inputs)
    actual = _run(model, [x.numpy() for x in inputs])
    assert len(actual) == len(expected), f"{name}: {len(actual)} outputs, torch gives {len(expected)}"
    for index, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape, f"{name} output {index}: shape {a.shape}, torch {e.shape}"
        assert a.dtype == e.dtype, f"{name} output {index}: dtype {a.dtype}, torch {e.dtype}"
        np.testing.assert_allclose(a, e, **TOLERANCE, err_msg=f"{name} output {index}")


@pytest.mark.parametrize("name", MODELS)
def test_versions_inputs_and_outputs(exported, name):
    module, inputs, model = exported[name]
    assert model.ir_version <= 10 and default_opset(model) <= 21
    assert default_opset(model) == converter.OPSET
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    # One graph input per example input, in order, dtypes (int64 ids, targets) kept.
    infos = [TensorInfo.from_value_info(v) for v in model.graph.input]
    assert [(i.dtype, i.shape) for i in infos] == [(x.numpy().dtype, tuple(x.shape)) for x in inputs]
    expected_outputs = len(_torch_outputs(module, inputs))
    assert [o.name for o in model.graph.output] == [f"output_{i}" for i in range(expected_outputs)]


@pytest.mark.parametrize("name", MODELS)
def test_parameter_map_holds_every_parameter_unchanged(exported, name):
    module, _, model = exported[name]
    mapping = _frontend.parameter_map(model)
    used = [n for n, p in module.named_parameters() if p.requires_grad and n not in MODELS[name].unused_parameters]
    assert list(mapping) == used
    # One initializer per parameter: the exporter neither merged equal values nor fused parameters.
    assert len(set(mapping.values())) == len(mapping)
    initializers = _initializers(model)
    params = dict(module.named_parameters())
    for param_name, init_name in mapping.items():
        value = params[param_name].detach().numpy()
        array = initializers[init_name]
        assert array.shape == value.shape and array.dtype == value.dtype, param_name
        np.testing.assert_array_equal(array, value, err_msg=f"initializer of {param_name}")


@pytest.mark.parametrize("name", MODELS)
def test_training_flags_are_restored(name):
    case = MODELS[name]
    module = case.module().train()
    submodules = list(module.modules())
    submodules[-1].eval()  # mixed modes must survive, not just the top-level flag
    before = [m.training for m in submodules]
    converter.to_onnx(module, *case.inputs())
    assert [m.training for m in module.modules()] == before


# --- What the exporter does, pinned ------------------------------------------


def test_batchnorm_is_neither_fused_nor_folded(exported):
    _, _, model = exported["cnn_bn"]
    assert _op_histogram(model) == {"BatchNormalization": 1, "Conv": 1, "Flatten": 1, "Gemm": 1, "Relu": 1}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert list(conv.input[1:]) == ["conv.weight", "conv.bias"]
    batchnorm = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    assert list(batchnorm.input[1:]) == ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"]
    # The running statistics are buffers: initializers, but no parameters.
    assert "bn.running_mean" not in _frontend.parameter_map(model).values()


def test_transposed_weights_stay_transpose_nodes(exported):
    _, _, model = exported["transformer"]
    # Constant folding would store transposed copies named onnx::MatMul_<n>.
    assert all(not name.startswith("onnx::") for name in _initializers(model))
    transposed = {n.input[0] for n in model.graph.node if n.op_type == "Transpose"}
    assert {"layer.self_attn.in_proj_weight", "layer.linear1.weight", "layer.linear2.weight"} <= transposed


def test_equal_valued_parameters_keep_their_own_initializers(exported):
    _, _, model = exported["transformer"]
    mapping = _frontend.parameter_map(model)
    # Both zeros after initialization: the exporter's value-deduplication would merge them.
    assert mapping["layer.norm1.bias"] == "layer.norm1.bias"
    assert mapping["layer.self_attn.out_proj.bias"] == "layer.self_attn.out_proj.bias"


def test_transformer_exports_standard_ops_only(exported):
    _, _, model = exported["transformer"]
    ops = set(_op_histogram(model))
    assert {"MatMul", "Softmax", "LayerNormalization", "Transpose"} <= ops
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)


@pytest.mark.parametrize("frozen", [False, True], ids=["no_grad", "frozen_parameters"])
def test_transformer_fast_path_is_off_during_export(frozen):
    case = MODELS["transformer"]
    module, inputs = case.module(), case.inputs()
    # Either condition sends eval-mode TransformerEncoderLayer down its fused kernel.
    if frozen:
        module.requires_grad_(False)
        model = converter.to_onnx(module, *inputs)
    else:
        with torch.no_grad():
            model = converter.to_onnx(module, *inputs)
    np.testing.assert_allclose(_run(model, inputs)[0], _torch_outputs(module, inputs)[0], **TOLERANCE)
    assert torch.backends.mha.get_fastpath_enabled()
    if frozen:
        assert _frontend.parameter_map(model) == {}


def test_cross_entropy_inside_forward_is_one_op(exported):
    _, _, model = exported["with_loss"]
    assert _op_histogram(model) == {"Gemm": 1, "SoftmaxCrossEntropyLoss": 1}
    assert model.graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_inputs_are_named_after_forward_arguments(exported):
    assert [v.name for v in exported["two_inputs"][2].graph.input] == ["x", "y"]
    assert [v.name for v in exported["embedding"][2].graph.input] == ["ids"]


class UnusedFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, unused, x, scale):
        return self.fc(x) * scale


def test_unused_inputs_are_put_back_in_place():
    inputs = (np.zeros((2, 5), np.float64), np.ones((2, 4), np.float32), np.full((2, 3), 2, np.int64))
    module = UnusedFirst()
    model = converter.to_onnx(module, *inputs)
    infos = [TensorInfo.from_value_info(v) for v in model.graph.input]
    assert [(i.name, i.dtype, i.shape) for i in infos] == [
        ("unused", np.float64, (2, 5)),
        ("x", np.float32, (2, 4)),
        ("scale", np.int64, (2, 3)),
    ]
    expected = _torch_outputs(module, [torch.from_numpy(x) for x in inputs])
    np.testing.assert_allclose(_run(model, inputs)[0], expected[0], **TOLERANCE)


class Passthrough(nn.Module):
    """Returns the same tensor twice, an input, and a nested tuple."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.fc(x)
        return y, (x, y)


def test_repeated_and_passthrough_outputs_are_separate_graph_outputs():
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    module = Passthrough()
    model = converter.to_onnx(module, x)
    assert [o.name for o in model.graph.output] == ["output_0", "output_1", "output_2"]
    y, x_out, y_again = _run(model, [x])
    np.testing.assert_array_equal(x_out, x)
    np.testing.assert_array_equal(y, y_again)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids):
        return self.out(self.embed(ids))


def test_tied_weights_map_to_one_initializer():
    model = converter.to_onnx(Tied(), np.array([[1, 2, 3]]))
    assert _frontend.parameter_map(model) == {"embed.weight": "embed.weight"}


def test_frozen_parameters_are_not_mapped():
    case = MODELS["mlp"]
    module = case.module()
    module.fc1.requires_grad_(False)
    model = converter.to_onnx(module, *case.inputs())
    assert list(_frontend.parameter_map(model)) == ["fc2.weight", "fc2.bias"]
    assert {"fc1.weight", "fc1.bias"} <= set(_initializers(model))  # still in the graph, as constants


def test_numpy_and_python_number_inputs():
    class Scale(nn.Module):
        def forward(self, x, s):
            return x * s

    model = converter.to_onnx(Scale(), np.ones((2,), np.float32), 2.0)
    infos = [TensorInfo.from_value_info(v) for v in model.graph.input]
    assert [(i.dtype, i.shape) for i in infos] == [(np.float32, (2,)), (np.float32, ())]
    assert _frontend.parameter_map(model) == {}


# --- Failures ---------------------------------------------------------------


class Erfcx(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.special.erfcx(self.fc(x))


class Branching(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


class ReturnsDict(nn.Module):
    def forward(self, x):
        return {"y": x * 2, "note": "doubled"}


def test_unsupported_op_names_it():
    module = Erfcx().train()
    with pytest.raises(ConversionError, match=r"does not support the operator aten::special_erfcx\. Replace") as info:
        converter.to_onnx(module, np.ones((2, 4), np.float32))
    assert isinstance(info.value.__cause__, torch.onnx.errors.UnsupportedOperatorError)
    assert module.training  # restored after the failure too


def test_branch_on_tensor_value_is_refused():
    line = Branching.forward.__code__.co_firstlineno + 1
    with pytest.raises(ConversionError, match=rf"branches on a tensor's value \(.*test_torch_converter\.py:{line}\).*torch\.where"):
        converter.to_onnx(Branching(), np.ones((2, 4), np.float32))


class BranchesOnShape(nn.Module):
    """Python control flow on sizes: exact for the exported shapes (transformers' masking_utils does this)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if x.shape[0] > 2:
            return self.fc(x) * 2
        return self.fc(x)


class BranchesOnShapeValue(nn.Module):
    """A branch on a tensor whose value comes from shapes only: still exact per signature."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        rows = torch.tensor(int(x.shape[0])) * 2
        if rows > 5:
            return self.fc(x) * 2
        return self.fc(x)


class BranchesOnShapeArithmetic(BranchesOnShapeValue):
    """The same value reached through a tensor op: torch.export does not see through it, so it is refused."""

    def forward(self, x):
        rows = torch.ones((), dtype=torch.int64) * x.shape[0] * 2
        if rows > 5:
            return self.fc(x) * 2
        return self.fc(x)


@pytest.mark.parametrize("module_class", [BranchesOnShape, BranchesOnShapeValue])
@pytest.mark.parametrize("rows", [2, 3])
def test_branch_on_shapes_is_accepted_and_exact(module_class, rows):
    torch.manual_seed(0)
    module = module_class().eval()
    x = torch.randn(rows, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no tracer warning reaches the user either
        model = converter.to_onnx(module, x)
    other = torch.randn(rows, 4)  # same signature, other values
    (actual,) = _run(model, [other.numpy()])
    np.testing.assert_allclose(actual, _torch_outputs(module, (other,))[0], **TOLERANCE)
    assert ("Mul" in _op_histogram(model)) == (rows > 2)  # the branch the shape selects, nothing else


def test_branch_on_tensor_arithmetic_of_shapes_is_refused_conservatively():
    line = BranchesOnShapeArithmetic.forward.__code__.co_firstlineno + 2
    with pytest.raises(ConversionError, match=rf"branches on a tensor's value \(.*test_torch_converter\.py:{line}\)"):
        converter.to_onnx(BranchesOnShapeArithmetic(), np.ones((3, 4), np.float32))


def test_branch_check_is_what_accepts_shape_branches(monkeypatch):
    """Without torch.export's verdict, a shape branch is indistinguishable from a value branch."""
    monkeypatch.setattr(torch.export, "export", _raise_data_dependent)
    with pytest.raises(ConversionError, match=r"branches on a tensor's value"):
        converter.to_onnx(BranchesOnShape(), np.ones((3, 4), np.float32))


def _raise_data_dependent(*args, **kwargs):
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    raise GuardOnDataDependentSymNode("Could not guard on data-dependent expression")


class ChecksShape(nn.Module):
    """The way out the branch error suggests for shape checks."""

    def forward(self, x):
        if not torch.onnx.is_in_onnx_export():
            if x.shape[-1] != 4:
                raise ValueError("x must have 4 features")
        return x * 2


def test_shape_check_skipped_during_export_is_accepted():
    model = converter.to_onnx(ChecksShape(), np.ones((2, 4), np.float32))
    assert _op_histogram(model) == {"Constant": 1, "Mul": 1}


class Warns(nn.Module):
    def forward(self, x):
        warnings.warn("forward says hello", UserWarning, stacklevel=1)
        return x * 2


def test_other_warnings_are_passed_on_once():
    # forward runs twice (eagerly, then traced); the user sees its warning once.
    with pytest.warns(UserWarning, match="forward says hello") as record:
        converter.to_onnx(Warns(), np.ones(2, np.float32))
    assert [str(w.message) for w in record] == ["forward says hello"]


def test_non_tensor_example_input_is_refused():
    with pytest.raises(ConversionError, match=r"Example input 1 of MLP is a str; .*functools\.partial"):
        converter.to_onnx(MODELS["mlp"].module(), np.ones((2, 4), np.float32), "mean")


def test_non_tensor_output_is_refused():
    with pytest.raises(ConversionError, match=r"ReturnsDict\.forward returns a str at output\['note'\]; .*use_cache"):
        converter.to_onnx(ReturnsDict(), np.ones((2,), np.float32))


def test_forward_failing_on_the_examples_is_reported():
    with pytest.raises(ConversionError, match=r"MLP\.forward failed on the example inputs \(RuntimeError") as info:
        converter.to_onnx(MODELS["mlp"].module(), np.ones((2, 5), np.float32))
    assert isinstance(info.value.__cause__, RuntimeError)


def _doctored(rename: str | None, transpose: bool) -> onnx.ModelProto:
    """The MLP's export with fc1.weight's initializer renamed or dropped, as a folding exporter would leave it."""
    case = MODELS["mlp"]
    model = converter.to_onnx(case.module(), *case.inputs())
    for index, init in enumerate(model.graph.initializer):
        if init.name == "fc1.weight":
            array = numpy_helper.to_array(init)
            del model.graph.initializer[index]
            if rename is not None:
                model.graph.initializer.append(numpy_helper.from_array(array.T if transpose else array * 2, rename))
            return model
    raise AssertionError("no fc1.weight initializer")


@pytest.mark.parametrize(
    "rename, transpose, match",
    [
        ("onnx::MatMul_7", True, r"'fc1\.weight' \(its values are in initializer 'onnx::MatMul_7', rearranged\)"),
        ("onnx::Gemm_7", False, r"'fc1\.weight' \(the outputs depend on it, but no initializer holds it"),
        (None, False, r"'fc1\.weight' \(the outputs depend on it, but no initializer holds it"),
    ],
    ids=["transposed_copy", "folded", "missing"],
)
def test_parameter_the_outputs_need_must_be_an_initializer(rename, transpose, match):
    case = MODELS["mlp"]
    module, inputs = case.module(), case.inputs()
    flat = converter._flat_call(module, len(inputs), (), {})
    outputs, _ = converter._example_outputs(module, flat, list(inputs))
    with pytest.raises(ConversionError, match=match):
        converter._parameter_map(module, _doctored(rename, transpose), converter._reached_leaves(outputs))


def test_not_a_module_is_refused():
    with pytest.raises(ConversionError, match=r"converts a torch\.nn\.Module, got function"):
        converter.to_onnx(torch.nn.functional.relu, np.ones(2, np.float32))


# --- Frontend ---------------------------------------------------------------


def test_frontend_for_returns_the_torch_frontend():
    module = MODELS["mlp"].module()
    front = _frontend.frontend_for(module)
    assert isinstance(front, converter.TorchFrontend) and front.module is module
    with pytest.raises(InputError, match=r"got a Tensor: pass the network"):
        _frontend.frontend_for(torch.ones(2))


def test_frontend_converts_arguments_and_results():
    front = converter.frontend(MODELS["mlp"].module())
    tensor = torch.ones(2, 3, requires_grad=True)
    arrays = front.to_numpy([tensor, np.zeros(2, np.float64), 1.5, 3, [1, 2]])
    assert [(a.dtype, a.shape) for a in arrays] == [
        (np.float32, (2, 3)),
        (np.float64, (2,)),
        (np.float32, ()),
        (np.int64, ()),
        (np.int64, (2,)),
    ]
    with pytest.raises(InputError, match=r"Argument 0 is a object, which is not a tensor"):
        front.to_numpy([object()])
    assert front.wants_framework_tensors([np.ones(1), tensor])
    assert not front.wants_framework_tensors([np.ones(1), 2.0])
    scalar = np.array(2.5, np.float32)
    scalar.flags.writeable = False
    result = front.from_numpy(scalar)
    assert isinstance(result, torch.Tensor) and result.shape == () and result.item() == 2.5


def test_frontend_parameters_and_weight_names():
    module = MODELS["mlp"].module()
    module.fc1.bias.requires_grad_(False)
    front = converter.frontend(module)
    values = front.parameter_values()
    assert list(values) == ["fc1.weight", "fc2.weight", "fc2.bias"]
    np.testing.assert_array_equal(values["fc2.bias"], module.fc2.bias.detach().numpy())
    assert front.weight_names([module.fc2.weight, module.fc1.weight]) == ["fc2.weight", "fc1.weight"]
    assert front.weight_names(p for p in module.parameters() if p.requires_grad) == list(values)
    assert front.weight_names("fc2.bias") == ["fc2.bias"]
    with pytest.raises(InputError, match=r"'fc1.bias' is not a parameter of MLP with requires_grad; known: \["):
        front.weight_names(["fc1.bias"])
    with pytest.raises(InputError, match=r"a tensor of shape \[3\] is not a parameter of MLP"):
        front.weight_names([nn.Parameter(torch.ones(3))])


def test_frontend_export_is_to_onnx():
    case = MODELS["two_inputs"]
    front = converter.frontend(case.module())
    arrays = front.to_numpy(case.inputs())
    model = front.export(arrays)
    assert [v.name for v in model.graph.input] == ["x", "y"]
    assert list(_frontend.parameter_map(model)) == list(front.parameter_values())


# --- Keyword inputs, structured outputs, exact semantics ---------------------


class Keywords(nn.Module):
    """Keyword inputs, a flag, and a dict output (HF-style)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4, padding_idx=0)
        self.fc = nn.Linear(4, 3)

    def forward(self, ids=None, mask=None, embeds=None, scale=None, return_hidden=False):
        hidden = self.embed(ids) if embeds is None else embeds
        hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)
        logits = self.fc(hidden).sum(dim=1)
        if scale is not None:
            logits = logits * scale
        result = {"logits": logits}
        if return_hidden:
            result["hidden"] = (hidden, hidden.mean())
        return result


def _autograd(module, kwargs, float_keys=()):
    module.zero_grad(set_to_none=True)
    kwargs = {k: v.clone().requires_grad_(k in float_keys) for k, v in kwargs.items() if torch.is_tensor(v)} | {
        k: v for k, v in kwargs.items() if not torch.is_tensor(v)}
    out = module(**kwargs)
    sum(leaf.sum() for leaf in torch.utils._pytree.tree_leaves(out)).backward()
    return out, {k: kwargs[k].grad for k in float_keys}, [p.grad for p in module.parameters()]


def test_keyword_inputs_and_structured_outputs_match_autograd():
    import onnxgrad

    torch.manual_seed(0)
    module = Keywords().eval()
    ids = torch.tensor([[0, 3, 5, 0], [2, 0, 9, 1]])  # padding_idx 0 among them
    masks = [torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]), torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]])]
    fvg = onnxgrad.ForwardValueAndGrad(module, list(module.parameters()), get_all=True, get_by_list=True)
    fvg(mask=masks[0], ids=ids, return_hidden=True, scale=torch.tensor(2.0))
    value, (input_grads, weight_grads) = fvg(mask=masks[1], ids=ids, return_hidden=True, scale=torch.tensor(3.0))
    out, refs, weight_refs = _autograd(module, dict(ids=ids, mask=masks[1], scale=torch.tensor(3.0),
                                                   return_hidden=True), ("scale",))
    assert isinstance(value, dict) and list(value) == ["logits", "hidden"] and isinstance(value["hidden"], tuple)
    for actual, expected in zip(torch.utils._pytree.tree_leaves(value), torch.utils._pytree.tree_leaves(out)):
        np.testing.assert_allclose(actual.numpy(), expected.detach().numpy(), **TOLERANCE)
    # Graph inputs in forward's order: ids, mask, scale (return_hidden is a flag, not an input).
    assert [g.dtype for g in input_grads] == [torch.int64, torch.int64, torch.float32]
    assert not input_grads[0].any()
    np.testing.assert_allclose(input_grads[2].numpy(), refs["scale"].numpy(), **TOLERANCE)
    for (name, _), actual, expected in zip(module.named_parameters(), weight_grads, weight_refs):
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), **TOLERANCE, err_msg=f"grad[{name}]")
    assert not weight_grads[0][0].any()  # nn.Embedding's padding row gets no gradient


def test_padding_row_needs_the_padding_rewrite(monkeypatch):
    """Without _mask_padding_rows the padding row's gradient is the plain Gather's: not nn.Embedding's."""
    import onnxgrad

    monkeypatch.setattr(converter, "_mask_padding_rows", lambda module, model, parameters: {})
    module = Keywords().eval()
    ids = torch.tensor([[0, 3, 5, 0]])
    fvg = onnxgrad.ForwardValueAndGrad(module, [module.embed.weight], get_by_list=True)
    _, (grad,) = fvg(ids=ids, mask=torch.ones(1, 4, dtype=torch.int64))
    assert grad[0].abs().sum() > 0


def test_inputs_embeds_get_real_gradients():
    import onnxgrad

    torch.manual_seed(0)
    module = Keywords().eval()
    embeds, mask = torch.randn(2, 4, 4), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    grad_fn = onnxgrad.value_and_grad(module, grad_position=(0, 1))
    value, (d_mask, d_embeds) = grad_fn(embeds=embeds, mask=mask)  # graph order: mask, embeds
    out, refs, _ = _autograd(module, dict(embeds=embeds, mask=mask), ("embeds",))
    np.testing.assert_allclose(value["logits"].numpy(), out["logits"].detach().numpy(), **TOLERANCE)
    assert d_mask.dtype == torch.int64
    np.testing.assert_allclose(d_embeds.numpy(), refs["embeds"].numpy(), **TOLERANCE)


def test_positional_and_keyword_arguments_mix():
    import onnxgrad

    module = Keywords().eval()
    ids, mask = torch.tensor([[1, 2]]), torch.ones(1, 2, dtype=torch.int64)
    fvg = onnxgrad.ForwardValueAndGrad(module, list(module.parameters()), get_by_list=True)
    mixed, _ = fvg(ids, mask=mask)
    keyword, _ = fvg(mask=mask, ids=ids)
    np.testing.assert_array_equal(mixed["logits"].numpy(), keyword["logits"].numpy())
    with pytest.raises(InputError, match=r"takes no argument 'idz'; it takes \['ids', 'mask'"):
        fvg(idz=ids, mask=mask)
    with pytest.raises(InputError, match=r"'ids' of Keywords\.forward is given both positionally and by keyword"):
        fvg(ids, ids=ids, mask=mask)


def test_keyword_arguments_to_an_onnx_network_are_refused():
    import onnxgrad

    model = converter.to_onnx(MODELS["mlp"].module(), *MODELS["mlp"].inputs())
    fvg = onnxgrad.ForwardValueAndGrad(model)
    with pytest.raises(InputError, match=r"Keyword arguments \['x'\] are for PyTorch modules: .*\['x'\]"):
        fvg(x=np.ones((2, 4), np.float32))


class CeilPool(nn.Module):
    """nn.AvgPool2d as a global pool with a kernel past the input (what EfficientNet's pooler does)."""

    def __init__(self, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)
        self.pool = nn.AvgPool2d(4, ceil_mode=True, padding=padding)

    def forward(self, x):
        return self.pool(self.conv(x))


def test_average_pool_past_the_input_divides_as_pytorch():
    import onnxgrad

    torch.manual_seed(0)
    module, x = CeilPool().eval(), torch.randn(2, 2, 3, 3)
    value, grads = onnxgrad.ForwardValueAndGrad(module, list(module.parameters()), get_by_list=True)(x)
    out, _, refs = _autograd(module, {"x": x})
    np.testing.assert_allclose(value.numpy(), out.detach().numpy(), **TOLERANCE)
    for actual, expected in zip(grads, refs):
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), **TOLERANCE)


def test_export_that_computes_otherwise_is_refused(monkeypatch):
    # Without the pooling fix the export's forward differs from PyTorch's, and the check says so.
    monkeypatch.setattr(converter, "_exact_average_pools", lambda model: None)
    with pytest.raises(ConversionError, match=r"computes output differently from PyTorch .*largest difference"):
        converter.to_onnx(CeilPool(), np.ones((2, 2, 3, 3), np.float32))


def test_padded_average_pool_past_the_input_is_refused():
    # With padding, PyTorch's divisor has no ONNX attribute: refused, not differentiated.
    with pytest.raises(ConversionError, match=r"computes output differently from PyTorch"):
        converter.to_onnx(CeilPool(padding=1), np.ones((2, 2, 3, 3), np.float32))


def test_static_shape_arithmetic_is_folded():
    class TFPad(nn.Module):
        """TF-style 'same' padding computed from the input's size (MobileNet, EfficientNet)."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, stride=2)

        def forward(self, x):
            pad = max(3 - x.shape[-1] % 2, 0)
            return self.conv(F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)))

    model = converter.to_onnx(TFPad(), np.ones((1, 2, 5, 5), np.float32))
    assert "Shape" not in _op_histogram(model)
    pads = next(n for n in model.graph.node if n.op_type == "Pad").input[1]
    assert pads in {n.output[0] for n in model.graph.node if n.op_type == "Constant"}


@pytest.mark.parametrize("exporter", converter.EXPORTERS)
def test_both_exporters_give_autograd_gradients(exporter):
    pytest.importorskip("onnxscript")
    import onnxgrad

    torch.manual_seed(0)
    module = Keywords().eval()
    ids, mask = torch.tensor([[0, 3, 5, 2]]), torch.tensor([[1, 1, 1, 0]])
    front = converter.TorchFrontend(module, exporter=exporter)
    value, grads = onnxgrad.ForwardValueAndGrad(front, list(module.parameters()), get_by_list=True)(ids=ids, mask=mask)
    out, _, refs = _autograd(module, dict(ids=ids, mask=mask))
    np.testing.assert_allclose(value["logits"].numpy(), out["logits"].detach().numpy(), **TOLERANCE)
    for actual, expected in zip(grads, refs):
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), **TOLERANCE)


def test_dynamo_exporter_refuses_value_branches():
    pytest.importorskip("onnxscript")
    line = Branching.forward.__code__.co_firstlineno + 1
    with pytest.raises(ConversionError, match=rf"branches on a tensor's value \(.*test_torch_converter\.py:{line}\)"):
        converter.to_onnx(Branching(), np.ones((2, 4), np.float32), exporter="dynamo")


def test_unknown_exporter_is_refused():
    with pytest.raises(InputError, match=r"Unknown exporter 'onnx': pass one of \['dynamo', 'torchscript'\]"):
        converter.TorchFrontend(Keywords(), exporter="onnx")


# --- Parameters bound by memory (issue 14) -------------------------------------


class _BatchNormNet(nn.Module):
    """Parameters and a running-statistics buffer, all read by the graph."""

    def __init__(self):
        super().__init__()
        self.fc1, self.bn, self.fc2 = nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.bn(self.fc1(x))))


def _check_against_autograd(fvg, module, x):
    """fvg's loss and every parameter gradient equal autograd's on the module as it is now."""
    value, grads = fvg(x)
    module.zero_grad(set_to_none=True)
    out = module(x)
    out.sum().backward()
    np.testing.assert_allclose(value.numpy(), out.detach().numpy(), **TOLERANCE)
    assert len(grads) == len(list(module.parameters()))
    for (name, param), grad in zip(module.named_parameters(), grads):
        # atol: near tanh's saturation 1 - tanh² is a difference of nearly equal float32 numbers.
        np.testing.assert_allclose(grad.numpy(), param.grad.numpy(), rtol=1e-5, atol=1e-5, err_msg=f"grad[{name}]")


def _bound_network(fvg):
    (network, _, _), = fvg._fn._target._networks.values()
    return network


def test_in_place_parameter_updates_are_seen_without_copies(monkeypatch):
    import onnxgrad
    from onnxgrad._network import Parameter

    torch.manual_seed(0)
    module, x = _BatchNormNet().eval(), torch.randn(5, 4)
    fvg = onnxgrad.ForwardValueAndGrad(module, list(module.parameters()), get_by_list=True)
    _check_against_autograd(fvg, module, x)
    # The network's buffers are the module's memory: no call copies a weight.
    network = _bound_network(fvg)
    for name, param in [*module.named_parameters(), ("bn.running_mean", module.bn.running_mean)]:
        bound = {**network.parameters_dict(), **network.buffers_dict()}[name]
        assert np.shares_memory(bound.value, param.detach().numpy()), name
    monkeypatch.setattr(Parameter, "set_data", lambda self, new: pytest.fail(f"{self.name} copied"))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    for _ in range(2):  # an optimizer step and a statistics update between calls, both in place
        module.zero_grad()
        module(x).square().sum().backward()
        optimizer.step()
        with torch.no_grad():
            module.bn.running_mean.add_(0.25)
            module.bn.running_var.mul_(1.5)
        _check_against_autograd(fvg, module, x)


def test_replaced_parameters_are_seen():
    """One ForwardValueAndGrad across replacements: the sessions are rebound to the new memory."""
    import onnxgrad

    torch.manual_seed(0)
    module, x = _BatchNormNet().eval(), torch.randn(5, 4)
    fvg = onnxgrad.ForwardValueAndGrad(module, list(module.parameters()), get_by_list=True)
    _check_against_autograd(fvg, module, x)
    # A new Parameter under the same name (weights are matched by name), new memory behind the same
    # Parameter, a new buffer.
    module.fc1.weight = nn.Parameter(torch.randn(8, 4))
    module.fc2.weight.data = torch.randn(3, 8)
    module.bn.running_var = torch.rand(8) + 0.5
    _check_against_autograd(fvg, module, x)
    module.fc2.weight.data = torch.randn(8, 3).t()  # strided: copied per call, never shared
    _check_against_autograd(fvg, module, x)
    with torch.no_grad():
        module.fc2.weight.mul_(2.0)
    _check_against_autograd(fvg, module, x)
    module.fc2.weight.data = torch.randn(3, 8)  # contiguous again: shared again
    _check_against_autograd(fvg, module, x)
    bound = _bound_network(fvg).parameters_dict()["fc2.weight"].value
    assert np.shares_memory(bound, module.fc2.weight.detach().numpy())


def test_changed_parameter_shape_and_removed_buffer_are_refused():
    import onnxgrad

    module, x = _BatchNormNet().eval(), torch.randn(5, 4)
    fvg = onnxgrad.ForwardValueAndGrad(module, list(module.parameters()), get_by_list=True)
    fvg(x)
    module.fc2.bias.data = torch.zeros(4)
    with pytest.raises(InputError, match=r"Parameter 'fc2.bias' has shape \[3\], got a value of shape \[4\]"):
        fvg(x)
    module.fc2.bias.data = torch.zeros(3)
    del module.bn.running_mean
    module.bn.register_buffer("running_mean", None)
    with pytest.raises(InputError, match=r"no longer has \['bn.running_mean'\]"):
        fvg(x)
