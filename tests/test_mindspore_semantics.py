"""ForwardValueAndGrad and value_and_grad on ONNX graphs that MindSpore exported,
compared with MindSpore 2.10's own results computed in the same run."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import ParameterTuple as MsParameterTuple  # noqa: E402
from mindspore import Tensor, ops  # noqa: E402
from mindspore import nn as ms_nn  # noqa: E402

import ms_nets  # noqa: E402
import onnxgrad  # noqa: E402
from float64 import to_float64  # noqa: E402
from onnxgrad import nn  # noqa: E402
from onnxgrad.testing import check_grads  # noqa: E402
from treecompare import assert_trees_close  # noqa: E402

ms.set_context(mode=ms.PYNATIVE_MODE)
RNG = np.random.default_rng(0)

# name -> (cell factory, input factory); inputs are numpy arrays.
NETWORKS = {
    "two_outputs": (
        ms_nets.TwoOutputs,
        lambda: [RNG.normal(size=(3, 2)).astype(np.float32), np.array([[3, -1, 2]] * 3, np.int32),
                 RNG.normal(size=(3, 2)).astype(np.float32)],
    ),
    "dense_relu": (ms_nets.DenseReLU, lambda: [RNG.normal(size=(2, 4)).astype(np.float32)]),
    "embedding": (
        ms_nets.Embed,
        lambda: [np.array([[0, 3], [2, 2]], np.int32), RNG.normal(size=(2, 2, 3)).astype(np.float32)],
    ),
    "scalar_loss": (ms_nets.ScalarLoss, lambda: [RNG.normal(size=(4, 3)).astype(np.float32)]),
}
# Two float32 implementations (MindSpore's CPU kernels, ONNX Runtime's) agree to about this.
TOLERANCE = dict(rtol=1e-4, atol=1e-5)
# Finite differences run on a float64 copy of the exported graph (ORT's ReluGrad
# has no double kernel, but onnxgrad rewrites it into ops that do).
FD_SETTINGS = {
    "two_outputs": dict(dtype=np.float64),
    "dense_relu": dict(dtype=np.float64),
    "embedding": dict(dtype=np.float64),
    "scalar_loss": dict(dtype=np.float64),
}
FLAGS = list(itertools.product([False, True], repeat=3))  # get_all, get_by_list, sens_param


def _ms_tree(tree):
    if isinstance(tree, (tuple, list)):
        return type(tree)(_ms_tree(t) for t in tree)
    return Tensor(tree)


def _sens_for(values):
    if isinstance(values, tuple):
        return tuple(RNG.normal(size=v.shape).astype(v.dtype) for v in values)
    return RNG.normal(size=values.shape).astype(values.dtype)


def _pair(name):
    """The MindSpore cell, its ONNX network, and the inputs."""
    cell_factory, inputs_factory = NETWORKS[name]
    cell = cell_factory()
    inputs = inputs_factory()
    network = onnxgrad.load(ms_nets.export_onnx(cell, *inputs))
    return cell, network, inputs


def _weights(cell, network):
    # MindSpore's export names initializers after the parameters; unused ones are absent.
    params = network.parameters_dict()
    ms_weights = [p for p in cell.trainable_params() if p.name in params]
    assert ms_weights, "the exported graph should hold the cell's parameters"
    for p in ms_weights:
        np.testing.assert_array_equal(params[p.name].value, p.asnumpy())
    return MsParameterTuple(ms_weights), onnxgrad.ParameterTuple(params[p.name] for p in ms_weights)


@pytest.mark.parametrize("get_all,get_by_list,sens_param", FLAGS, ids=lambda f: str(int(f)))
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_forward_value_and_grad_matches_mindspore(name, get_all, get_by_list, sens_param):
    cell, network, inputs = _pair(name)
    ms_weights, weights = _weights(cell, network)
    args = list(inputs)
    if sens_param:
        args.append(_sens_for(network(*inputs)))

    expected = ms_nn.ForwardValueAndGrad(cell, ms_weights, get_all, get_by_list, sens_param)(*_ms_tree(args))
    actual = onnxgrad.ForwardValueAndGrad(network, weights, get_all, get_by_list, sens_param)(*args)

    assert_trees_close(actual, expected, **TOLERANCE)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_exported_graph_gradients_match_finite_differences(name):
    cell_factory, inputs_factory = NETWORKS[name]
    inputs = inputs_factory()
    model = ms_nets.export_onnx(cell_factory(), *inputs)
    settings = dict(FD_SETTINGS[name])
    if settings.pop("dtype") == np.float64:
        model = to_float64(model)
        inputs = [a.astype(np.float64) if a.dtype == np.float32 else a for a in inputs]
    check_grads(onnxgrad.load(model), inputs, **settings)


def test_sensitivity_of_a_scalar_output_may_have_shape_1():
    cell, network, inputs = _pair("scalar_loss")
    sens = np.array([2.5], np.float32)
    expected = ms_nn.ForwardValueAndGrad(cell, sens_param=True)(Tensor(inputs[0]), Tensor(sens))
    actual = onnxgrad.ForwardValueAndGrad(network, sens_param=True)(inputs[0], sens)
    assert_trees_close(actual, expected, **TOLERANCE)


@pytest.mark.parametrize("sparse,reduction", [(False, "none"), (False, "mean"), (True, "sum"), (True, "none")])
def test_loss_cell_matches_mindspore(sparse, reduction):
    backbone = ms_nets.DenseReLU()
    x = RNG.normal(size=(4, 4)).astype(np.float32)
    if sparse:
        labels = np.array([0, 2, 1, 2], np.int32)
    else:  # rows that do not sum to 1: MindSpore's gradient is softmax - labels anyway
        labels = RNG.uniform(size=(4, 3)).astype(np.float32)
    ms_cell = ms_nn.WithLossCell(backbone, ms_nn.SoftmaxCrossEntropyWithLogits(sparse=sparse, reduction=reduction))
    ours = nn.WithLossCell(
        onnxgrad.load(ms_nets.export_onnx(backbone, x)), nn.SoftmaxCrossEntropyWithLogits(sparse, reduction)
    )
    ms_weights, weights = _weights(backbone, ours)

    expected = ms_nn.ForwardValueAndGrad(ms_cell, ms_weights, get_all=True, get_by_list=True)(Tensor(x), Tensor(labels))
    actual = onnxgrad.ForwardValueAndGrad(ours, weights, get_all=True, get_by_list=True)(x, labels)

    assert_trees_close(actual, expected, **TOLERANCE)


VALUE_AND_GRAD_CASES = {
    "position_0": dict(grad_position=0),
    "positions_tuple": dict(grad_position=(0, 2)),
    "int_position": dict(grad_position=1),
    "weights_only": dict(grad_position=None, weights=True),
    "both_with_aux": dict(grad_position=(0, 2), weights=True, has_aux=True),
    "ids": dict(grad_position=0, weights=True, return_ids=True),
    "ids_weights_only": dict(grad_position=None, weights=True, return_ids=True),
    "single_weight": dict(grad_position=0, weights="single"),
}


@pytest.mark.parametrize("case", sorted(VALUE_AND_GRAD_CASES))
def test_value_and_grad_matches_mindspore(case):
    kwargs = dict(VALUE_AND_GRAD_CASES[case])
    cell, network, inputs = _pair("two_outputs")
    ms_weights, weights = _weights(cell, network)
    use_weights = kwargs.pop("weights", False)

    if use_weights == "single":  # one Parameter, not a tuple: its gradient comes back bare
        ms_weights, weights = ms_weights[0], weights[0]
    expected = ops.value_and_grad(cell, weights=ms_weights if use_weights else None, **kwargs)(*_ms_tree(inputs))
    actual = onnxgrad.value_and_grad(network, weights=weights if use_weights else None, **kwargs)(*inputs)

    assert_trees_close(actual, expected, **TOLERANCE)


# --- Cells MindSpore differentiates specially ---------------------------------------------------


def test_frozen_parameters_in_weights_get_zeros_as_in_mindspore():
    import ms_special_nets as special

    net = special.FrozenBias()
    weights = ms.ParameterTuple(net.get_parameters())
    assert [p.requires_grad for p in weights] == [True, False]
    x = ms.Tensor(np.array([[1.0, -2.0]], np.float32))
    expected = ms.nn.ForwardValueAndGrad(net, weights, get_all=True, get_by_list=True)(x)
    actual = onnxgrad.ForwardValueAndGrad(net, weights, get_all=True, get_by_list=True)(x)
    assert_trees_close(actual, expected)
    assert not np.any(actual[1][1][1].asnumpy())  # the frozen bias: zeros


@pytest.mark.parametrize("flags", [{}, {"get_all": True}, {"get_by_list": True}, {"get_all": True, "get_by_list": True}])
def test_a_cell_without_inputs_nests_and_types_as_mindspore(flags):
    import ms_special_nets as special

    net = special.NoInput()
    weights = ms.ParameterTuple(net.trainable_params()) if flags.get("get_by_list") else None
    expected = ms.nn.ForwardValueAndGrad(net, weights, **flags)()
    actual = onnxgrad.ForwardValueAndGrad(net, weights, **flags)()
    assert isinstance(actual[0], ms.Tensor), "no arguments: MindSpore Tensors out"
    assert_trees_close(actual, expected)


def test_a_custom_bprop_is_refused_not_ignored():
    import ms_special_nets as special

    net = special.WithClipped()
    x = ms.Tensor(np.array([[1.0, -2.0]], np.float32))
    weights = ms.ParameterTuple(net.trainable_params())
    with_bprop = ms.nn.ForwardValueAndGrad(net, weights, get_all=True, get_by_list=True)(x)
    # MindSpore honours the bprop (dout passes unchanged, not 2 * y * dout): the input gradient is the
    # Dense's alone, which construct()'s gradient would not give.
    dense_only = ms.nn.ForwardValueAndGrad(net.dense, get_all=True)(x)
    np.testing.assert_allclose(with_bprop[1][0][0].asnumpy(), dense_only[1][0].asnumpy(), rtol=1e-6)
    y = dense_only[0].asnumpy()
    assert not np.allclose(2 * y, np.ones_like(y)), "the example must tell the two gradients apart"
    with pytest.raises(onnxgrad.ConversionError, match=r"ClippedGradient \(at 'inner'\) defines a custom bprop"):
        onnxgrad.ForwardValueAndGrad(net, weights, get_all=True, get_by_list=True)(x)


# --- Int math, as MindSpore 2.10 differentiates it ----------------------------------------------


def _int(*values, dtype=np.int32):
    return np.array(values, dtype)


@dataclasses.dataclass(frozen=True)
class IntCase:
    """One int-semantics case: a cell of ``ms_special_nets``, its inputs and flags, and why it is here."""

    cell: str
    inputs: tuple
    flags: tuple = ()
    weights: bool = False
    notes: str = ""


X_INT = _int(1, -2, 3)
X_FLOAT = np.array([1.0, -2.0, 3.3], np.float32)
INT_CASES = {
    "times3": IntCase("IntTimes3", (X_INT,), notes="int math alone: int32 3s"),
    "times3_int64": IntCase("IntTimes3", (_int(1, -2, 3, dtype=np.int64),)),
    "times3_sens": IntCase("IntTimes3", (X_INT, _int(1, 2, -3)), (("sens_param", True),), notes="an int sens"),
    "times3_wraps": IntCase(
        "IntTimes3", (X_INT, _int(2**30, -(2**30), 7)), (("sens_param", True),),
        notes="3 * 2**30 wraps around in int32 as in MindSpore"),
    "two_int_inputs": IntCase("IntMul", (X_INT, _int(4, 5, -6)), (("get_all", True),)),
    "cast_times_weight": IntCase(
        "IntCastWeight", (X_INT,), (("get_all", True), ("get_by_list", True)), weights=True,
        notes="the float gradient 3.75 truncated to 3 at the Cast"),
    "mixed_int_float": IntCase(
        "MixedMul", (X_INT, X_FLOAT), (("get_all", True),), notes="the int input's gradient 1.5 * y, truncated"),
    "truncated_at_each_cast": IntCase(
        "IntMathThenCast", (X_INT, _int(4, 5, -6)), (("get_all", True),),
        notes="2.5 truncates to 2 at the Cast, before int math multiplies it by 3 (6, not 7)"),
    "int_parameter": IntCase("IntParam", (X_FLOAT,), (("get_all", True), ("get_by_list", True)), weights=True),
    "int_parameter_only": IntCase("IntParam", (X_FLOAT,), (("get_by_list", True),), weights=True),
    "output_cast_to_int": IntCase("OutputToInt", (X_FLOAT,), notes="the gradient passes back through the Cast"),
    "output_cast_to_int_sens": IntCase("OutputToInt", (X_FLOAT, _int(1, 2, -3)), (("sens_param", True),)),
    "float_to_int_math": IntCase("FloatToIntMath", (X_FLOAT,), notes="1.5 truncates to 1 on its way back"),
    "floor_division": IntCase("IntFloorDiv", (X_INT,), notes="Floor: zero gradient"),
    "bool_input": IntCase("BoolScale", (np.array([True, False, True]),)),
}


@pytest.mark.parametrize("name", sorted(INT_CASES))
def test_int_math_is_differentiated_as_in_mindspore(name):
    import ms_special_nets as special

    case = INT_CASES[name]
    net = getattr(special, case.cell)()
    weights = ms.ParameterTuple(net.trainable_params()) if case.weights else None
    inputs = [Tensor(a) for a in case.inputs]
    expected = ms_nn.ForwardValueAndGrad(net, weights, **dict(case.flags))(*inputs)
    actual = onnxgrad.ForwardValueAndGrad(net, weights, **dict(case.flags))(*inputs)
    assert_trees_close(actual, expected, **TOLERANCE)


def test_int_math_without_a_float64_equivalent_is_refused():
    import ms_special_nets as special

    net = special.IntRealDiv()
    x = Tensor(X_INT)
    # MindSpore returns a float32 gradient for an int input here; onnxgrad's graph holds an int Div.
    assert ms_nn.ForwardValueAndGrad(net)(x)[1].dtype == ms.float32
    with pytest.raises(onnxgrad.UnsupportedGradientError, match=r"The Div node .* computes on the int tensor"):
        onnxgrad.ForwardValueAndGrad(net)(x)


def test_an_int_gradient_past_float64_exactness_is_refused():
    import ms_special_nets as special

    net = special.IntTimes3()
    x, sens = Tensor(_int(1, 2, dtype=np.int64)), Tensor(_int(2**52, 1, dtype=np.int64))
    # MindSpore's int64 gradient 3 * 2**52 is exact; float64 cannot hold it exactly.
    assert ms_nn.ForwardValueAndGrad(net, sens_param=True)(x, sens)[1].asnumpy()[0] == 3 * 2**52
    with pytest.raises(onnxgrad.RuntimeFailure, match=r"gradient of the int tensor .* past 2\*\*53"):
        onnxgrad.ForwardValueAndGrad(net, sens_param=True)(x, sens)


def test_pytorch_modules_keep_autograds_rule_for_casts_to_int():
    torch = pytest.importorskip("torch")

    class RoundTrip(torch.nn.Module):
        """A float through ``.long()`` and back (no gradient in autograd), plus int math cast to float."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([0.5, 1.5, -2.0]))

        def forward(self, x, i):
            return (x * 2.6).long().float() * self.w * 1.5 + (i * 3).float() * x

    module = RoundTrip()
    x, i = torch.tensor([1.0, -2.0, 3.3]), torch.tensor([1, -2, 3])
    xr = x.clone().requires_grad_(True)
    out = module(xr, i)
    x_grad, w_grad = torch.autograd.grad(out.sum(), [xr, module.w])
    value, ((ours_x, ours_i), (ours_w,)) = onnxgrad.ForwardValueAndGrad(
        module, weights=list(module.parameters()), get_all=True, get_by_list=True)(x, i)
    np.testing.assert_allclose(value.numpy(), out.detach().numpy(), **TOLERANCE)
    np.testing.assert_allclose(ours_x.numpy(), x_grad.numpy(), **TOLERANCE)
    np.testing.assert_allclose(ours_w.numpy(), w_grad.numpy(), **TOLERANCE)
    # The int input (no gradient in autograd) follows the int rules: x truncated at the Cast, times 3.
    assert ours_i.dtype == torch.int64
    np.testing.assert_array_equal(ours_i.numpy(), np.trunc(x.numpy()).astype(np.int64) * 3)
