"""ForwardValueAndGrad and value_and_grad on ONNX graphs that MindSpore exported,
compared with MindSpore 2.10's own results computed in the same run."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import ParameterTuple as MsParameterTuple  # noqa: E402
from mindspore import Tensor, nn as ms_nn, ops  # noqa: E402

import ms_nets  # noqa: E402
import onnxgrad  # noqa: E402
from onnxgrad import nn  # noqa: E402
from float64 import to_float64  # noqa: E402
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
