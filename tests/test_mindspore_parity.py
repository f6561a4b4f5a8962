"""The MindSpore parity suite: onnxgrad against MindSpore 2.10's own results, computed in
the same run.

- every network of ``mindspore_nets.NETWORKS`` passed straight to
  ``onnxgrad.ForwardValueAndGrad``, with every flag combination (get_all,
  get_by_list, sens_param), MindSpore Tensors in and out;
- ``value_and_grad`` on Cells and on graphs MindSpore exported;
- every loss of ``onnxgrad.nn`` and reduction, through MindSpore's
  ``nn.WithLossCell``, on a few backbones (labels' gradients included);
- the Cell front-end: Tensors or arrays out as they came in, parameters read
  at call time without re-exporting or rebuilding, re-export on a new signature,
  weights as a ParameterTuple or a list of Parameters;
- ONNX graphs MindSpore exported, loaded with ``onnxgrad.load``: every flag combination,
  and finite differences on a float64 copy;
- cells MindSpore differentiates specially (frozen parameters, no inputs, a custom
  bprop) and int math, differentiated as MindSpore 2.10 does.

Every case draws its inputs and sensitivities from a generator seeded by its name
(``_support.sensitivity.rng_for``), so no case depends on which ran before it.
Tolerances come from ``_support.tolerances``; known failures are data
(``KNOWN_FAILURES``, strict xfails).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import ParameterTuple, Tensor, ops  # noqa: E402
from mindspore import nn as ms_nn  # noqa: E402

import onnxgrad  # noqa: E402
from _support import mindspore_nets as nets  # noqa: E402
from _support.float64 import to_float64  # noqa: E402
from _support.loss_cases import CASES as LOSS_CASES  # noqa: E402
from _support.loss_cases import REDUCTIONS, make_labels  # noqa: E402
from _support.sensitivity import random_sens, rng_for  # noqa: E402
from _support.tolerances import tolerance  # noqa: E402
from _support.treecompare import assert_trees_close  # noqa: E402
from onnxgrad import _gradient, nn  # noqa: E402
from onnxgrad.converters import mindspore as converter  # noqa: E402
from onnxgrad.errors import InputError  # noqa: E402
from onnxgrad.testing import check_grads  # noqa: E402

ms.set_context(mode=ms.PYNATIVE_MODE)


#: Networks (and loss backbones) whose kernels round differently enough to need more get their own
#: entry ("mindspore:<name>") in _support.tolerances: none today.
TOLERANCE = tolerance("mindspore").kwargs()

#: Networks onnxgrad gets wrong today: name -> why. Strict xfails, so a fix shows up as a failure to clean up.
KNOWN_FAILURES: dict[str, str] = {}

NETWORKS = nets.NETWORKS
FLAGS = list(itertools.product([False, True], repeat=3))  # get_all, get_by_list, sens_param


def _assert_tensors(tree, path="result"):
    if isinstance(tree, tuple):
        for i, item in enumerate(tree):
            _assert_tensors(item, f"{path}[{i}]")
        return
    if isinstance(tree, (int, str)):  # ids from return_ids
        return
    assert isinstance(tree, ms.Tensor), f"{path}: MindSpore Tensors in should give Tensors out, got {type(tree)}"


def _cases(names, known: dict[str, str]) -> list:
    """pytest parameters for ``names``, the ``known`` failures as strict xfails."""
    return [
        pytest.param(name, marks=[pytest.mark.xfail(reason=known[name], strict=True)] if name in known else [])
        for name in sorted(names)
    ]


# --- Networks x flags -----------------------------------------------------------


@pytest.mark.parametrize("get_all,get_by_list,sens_param", FLAGS, ids=lambda f: str(int(f)))
@pytest.mark.parametrize("name", _cases(NETWORKS, KNOWN_FAILURES))
def test_network_matches_mindspore(name, get_all, get_by_list, sens_param):
    net = NETWORKS[name]
    cell = net.make()
    args = nets.tensors(net.inputs())
    if sens_param:
        args.append(random_sens(cell(*args), rng_for(name), wrap=Tensor))
    weights = ParameterTuple(cell.trainable_params())

    expected = ms_nn.ForwardValueAndGrad(cell, weights, get_all, get_by_list, sens_param)(*args)
    actual = onnxgrad.ForwardValueAndGrad(cell, weights, get_all, get_by_list, sens_param)(*args)

    _assert_tensors(actual)
    assert_trees_close(actual, expected, **tolerance("mindspore", name).kwargs())


# --- value_and_grad on Cells ------------------------------------------------------

# name -> (network, value_and_grad arguments); weights: True for all, "one" for the first Parameter alone.
VALUE_AND_GRAD_CASES = {
    "position": ("two_inputs", dict(grad_position=1)),
    "positions": ("two_inputs", dict(grad_position=(0, 1))),
    "one_position_in_a_tuple": ("two_inputs", dict(grad_position=(0,))),
    "weights_only": ("two_inputs", dict(grad_position=None, weights=True)),
    "one_weight": ("two_inputs", dict(grad_position=None, weights="one")),
    "both_with_ids": ("two_inputs", dict(grad_position=(0, 1), weights=True, return_ids=True)),
    "aux": ("multi_output", dict(grad_position=0, weights=True, has_aux=True)),
}
#: Cases onnxgrad gets wrong today: name -> why (strict xfails).
VALUE_AND_GRAD_FAILURES: dict[str, str] = {}


@pytest.mark.parametrize("case", _cases(VALUE_AND_GRAD_CASES, VALUE_AND_GRAD_FAILURES))
def test_value_and_grad_matches_mindspore(case):
    name, kwargs = VALUE_AND_GRAD_CASES[case]
    net = NETWORKS[name]
    cell = net.make()
    args = nets.tensors(net.inputs())
    kwargs = dict(kwargs)
    weights = kwargs.pop("weights", None)
    if weights == "one":
        weights = cell.trainable_params()[0]
    elif weights:
        weights = ParameterTuple(cell.trainable_params())

    expected = ms.ops.value_and_grad(cell, weights=weights, **kwargs)(*args)
    actual = onnxgrad.value_and_grad(cell, weights=weights, **kwargs)(*args)

    _assert_tensors(actual)
    assert_trees_close(actual, expected, **TOLERANCE)


# --- Losses x reductions, through MindSpore's WithLossCell ------------------------

#: Backbones the losses sit on: [N, 3] logits from a Dense layer and from a CNN; [N, 3, 4, 4] from a Conv2d.
LOSS_BACKBONES = ("dense", "small_cnn", "conv2d")


def _fits(case, backbone: str) -> bool:
    """Whether a loss case runs on a backbone: logits of its rank, or element-wise with no per-class weights."""
    rank = 4 if backbone == "conv2d" else 2
    if len(case.logits) == rank:
        return True
    return case.labels in ("regression", "binary") and "weight" not in case.kwargs


LOSS_PARAMS = [
    (loss, backbone) for loss, case in sorted(LOSS_CASES.items()) for backbone in LOSS_BACKBONES if _fits(case, backbone)
]


def _loss_run(loss: str, backbone: str, reduction: str, sens_param: bool):
    case = LOSS_CASES[loss]
    net = NETWORKS[backbone]
    cell = net.make()
    inputs = net.inputs()
    rng = rng_for(loss, backbone, reduction, sens_param)
    logits = cell(*nets.tensors(inputs)).asnumpy()
    labels = make_labels(dataclasses.replace(case, logits=logits.shape), rng)
    args = nets.tensors([*inputs, labels])
    weights = ParameterTuple(cell.trainable_params())

    def with_loss(r):
        kwargs = {k: Tensor(v) if isinstance(v, np.ndarray) else v for k, v in case.kwargs.items()}
        return ms_nn.WithLossCell(cell, getattr(ms_nn, case.loss)(reduction=r, **kwargs))

    loss_cell = with_loss(reduction)
    if sens_param:
        args.append(random_sens(loss_cell(*args), rng, wrap=Tensor))
    flags = dict(weights=weights, get_all=True, get_by_list=True, sens_param=sens_param)
    expected = nets.reference(with_loss, case.loss, reduction, logits.size, flags, args)
    actual = onnxgrad.ForwardValueAndGrad(loss_cell, **flags)(*args)

    _assert_tensors(actual)
    loosest = max(case.tolerance, tolerance("mindspore", backbone), key=lambda t: t.rtol)
    assert_trees_close(actual, expected, **loosest.kwargs())


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss,backbone", LOSS_PARAMS)
def test_loss_matches_mindspore(loss, backbone, reduction):
    _loss_run(loss, backbone, reduction, sens_param=False)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", sorted(n for n, c in LOSS_CASES.items() if len(c.logits) == 2))
def test_loss_with_sensitivity_matches_mindspore(loss, reduction):
    _loss_run(loss, "dense", reduction, sens_param=True)


def test_mindspore_bce_mean_gradient_bug_is_still_there():
    """If this fails, MindSpore fixed the bug: drop the workaround in mindspore_nets.MINDSPORE_BUGS."""
    ratios = []
    for rows in (7, 5):
        x = np.random.default_rng(rows).normal(size=(rows, 3)).astype(np.float32)
        y = np.full((rows, 3), 0.25, np.float32)
        _, (grad, _) = ms_nn.ForwardValueAndGrad(ms_nn.BCEWithLogitsLoss("mean"), get_all=True)(Tensor(x), Tensor(y))
        true = (1 / (1 + np.exp(-x)) - y) / x.size
        ratios.append(float(np.median(grad.asnumpy() / true)))
    assert not np.allclose(ratios, 1.0, rtol=1e-3), "MindSpore's BCEWithLogitsLoss 'mean' gradient is right now"


# --- The Cell front-end ------------------------------------------------------------


class _Counter:
    """Counts calls of a function it wraps."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.fixture
def counts(monkeypatch, fresh_cache):
    """Counts exports of Cells and gradient-graph builds (with an empty graph cache)."""
    exports = _Counter(converter.MindSporeFrontend.export)
    builds = _Counter(_gradient.build_gradient_graph)
    monkeypatch.setattr(converter.MindSporeFrontend, "export", lambda self, args: exports(self, args))
    monkeypatch.setattr(_gradient, "build_gradient_graph", builds)
    return exports, builds


def _mlp():
    net = NETWORKS["mlp"]
    return net.make(), net.inputs()


def test_numpy_in_gives_numpy_out():
    cell, inputs = _mlp()
    weights = ParameterTuple(cell.trainable_params())
    from_arrays = onnxgrad.ForwardValueAndGrad(cell, weights, get_all=True, get_by_list=True)(*inputs)
    from_tensors = onnxgrad.ForwardValueAndGrad(cell, weights, get_all=True, get_by_list=True)(*nets.tensors(inputs))

    leaves = [from_arrays[0], *from_arrays[1][0], *from_arrays[1][1]]
    assert all(type(leaf) is np.ndarray for leaf in leaves)
    assert_trees_close(from_arrays, from_tensors, rtol=0, atol=0)


def test_int_gradients_come_back_as_int_tensors():
    net = NETWORKS["embedding"]
    cell = net.make()
    ids = Tensor(net.inputs()[0])
    _, (ids_grad,) = onnxgrad.ForwardValueAndGrad(cell, get_all=True)(ids)
    assert isinstance(ids_grad, ms.Tensor) and ids_grad.dtype == ms.int32
    np.testing.assert_array_equal(ids_grad.asnumpy(), np.zeros(ids.shape, np.int32))


def test_parameter_updates_are_seen_without_reexport_or_rebuild(counts):
    exports, builds = counts
    cell, inputs = _mlp()
    weights = ParameterTuple(cell.trainable_params())
    ours = onnxgrad.ForwardValueAndGrad(cell, weights, get_all=True, get_by_list=True)
    mindspores = ms_nn.ForwardValueAndGrad(cell, weights, get_all=True, get_by_list=True)
    args = nets.tensors(inputs)
    first = ours(*args)
    assert (exports.calls, builds.calls) == (1, 1)

    for param in cell.trainable_params():  # a value change only
        param.set_data(Tensor(param.asnumpy() * 1.5 - 0.25))
    second = ours(*args)

    assert (exports.calls, builds.calls) == (1, 1)
    assert_trees_close(second, mindspores(*args), **TOLERANCE)
    assert not np.allclose(second[0].asnumpy(), first[0].asnumpy())


def test_batchnorm_statistics_are_read_at_call_time(counts):
    exports, builds = counts
    net = NETWORKS["conv_batchnorm_eval"]
    cell = net.make()
    args = nets.tensors(net.inputs())
    weights = ParameterTuple(cell.trainable_params())
    ours = onnxgrad.ForwardValueAndGrad(cell, weights, get_all=True, get_by_list=True)
    ours(*args)

    cell.bn.moving_mean.set_data(Tensor(cell.bn.moving_mean.asnumpy() + 1.0))
    cell.bn.moving_variance.set_data(Tensor(cell.bn.moving_variance.asnumpy() * 2.0))
    actual = ours(*args)

    assert (exports.calls, builds.calls) == (1, 1)
    expected = ms_nn.ForwardValueAndGrad(cell, weights, get_all=True, get_by_list=True)(*args)
    assert_trees_close(actual, expected, **TOLERANCE)


def test_training_with_a_mindspore_optimizer_follows_mindspore():
    """onnxgrad's gradients (Tensors) drive MindSpore's SGD exactly as MindSpore's own do."""
    trajectories = []
    for use_onnxgrad in (False, True):
        cell, inputs = _mlp()
        loss_cell = ms_nn.WithLossCell(cell, ms_nn.MSELoss())
        weights = ParameterTuple(cell.trainable_params())
        make = onnxgrad.ForwardValueAndGrad if use_onnxgrad else ms_nn.ForwardValueAndGrad
        step = make(loss_cell, weights, get_by_list=True)
        optimizer = ms_nn.SGD(weights, learning_rate=0.1)
        labels = np.random.default_rng(5).normal(size=(nets.BATCH, 3)).astype(np.float32)
        losses = []
        for _ in range(3):
            loss, grads = step(*nets.tensors([*inputs, labels]))
            optimizer(grads)
            losses.append(float(loss.asnumpy()))
        trajectories.append((losses, [p.asnumpy() for p in weights]))
    (ms_losses, ms_params), (our_losses, our_params) = trajectories
    np.testing.assert_allclose(our_losses, ms_losses, rtol=1e-4)
    for ours, theirs in zip(our_params, ms_params):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_new_signature_reexports_and_old_ones_are_kept(counts):
    exports, _ = counts
    cell, _ = _mlp()
    fvg = onnxgrad.ForwardValueAndGrad(cell)
    rng = np.random.default_rng(0)
    for batch in (2, 3, 2):
        x = rng.normal(size=(batch, 4)).astype(np.float32)
        value, grad = fvg(Tensor(x))
        expected = ms_nn.ForwardValueAndGrad(cell)(Tensor(x))
        assert_trees_close((value, grad), expected, **TOLERANCE)
    assert exports.calls == 2  # batch 2, batch 3; batch 2 again is cached


def test_new_dtype_reexports(counts):
    exports, _ = counts
    net = NETWORKS["embedding"]
    cell = net.make()
    ids = net.inputs()[0]
    fvg = onnxgrad.ForwardValueAndGrad(cell, ParameterTuple(cell.trainable_params()), get_by_list=True)
    as_int32 = fvg(Tensor(ids))
    as_int64 = fvg(Tensor(ids.astype(np.int64)))
    assert exports.calls == 2
    assert_trees_close(as_int64, as_int32, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["parameter_tuple", "list", "tuple", "subset", "names"])
def test_weights_as_mindspore_parameters(kind):
    cell, inputs = _mlp()
    params = cell.trainable_params()
    weights = {
        "parameter_tuple": ParameterTuple(params),
        "list": list(params),
        "tuple": tuple(params),
        "subset": [params[2], params[0]],
        "names": [params[2].name, params[0].name],
    }[kind]
    args = nets.tensors(inputs)
    same = [params[2], params[0]] if kind == "names" else weights
    expected = ms_nn.ForwardValueAndGrad(cell, ParameterTuple(same), get_by_list=True)(*args)
    actual = onnxgrad.ForwardValueAndGrad(cell, weights, get_by_list=True)(*args)
    assert_trees_close(actual, expected, **TOLERANCE)


def test_unused_parameter_gets_zeros():
    net = NETWORKS["unused"]
    cell = net.make()
    spare = [p for p in cell.trainable_params() if p.name == "spare"]
    _, (grad,) = onnxgrad.ForwardValueAndGrad(cell, spare, get_by_list=True)(*nets.tensors(net.inputs()))
    assert isinstance(grad, ms.Tensor) and grad.dtype == ms.float32
    np.testing.assert_array_equal(grad.asnumpy(), np.zeros([3], np.float32))


def test_parameter_of_another_cell_is_refused():
    cell, inputs = _mlp()
    other = ms_nn.Dense(2, 2)
    fvg = onnxgrad.ForwardValueAndGrad(cell, ParameterTuple(other.trainable_params()), get_by_list=True)
    with pytest.raises(InputError, match=r"Weight 'weight' is not a parameter of MLP; known: \['fc1.bias'"):
        fvg(*nets.tensors(inputs))


# --- Graphs MindSpore exported, loaded with onnxgrad.load -----------------------------

# name -> (cell factory, input factory drawing from the case's generator); inputs are numpy arrays.
EXPORTED = {
    "two_outputs": (
        nets.TwoOutputs,
        lambda rng: [rng.normal(size=(3, 2)).astype(np.float32), np.array([[3, -1, 2]] * 3, np.int32),
                     rng.normal(size=(3, 2)).astype(np.float32)],
    ),
    "dense_relu": (nets.DenseReLU, lambda rng: [rng.normal(size=(2, 4)).astype(np.float32)]),
    "embedding": (
        nets.EmbedScaled,
        lambda rng: [np.array([[0, 3], [2, 2]], np.int32), rng.normal(size=(2, 2, 3)).astype(np.float32)],
    ),
    "scalar_loss": (nets.ScalarLoss, lambda rng: [rng.normal(size=(4, 3)).astype(np.float32)]),
}
# Finite differences run on a float64 copy of the exported graph (ORT's ReluGrad
# has no double kernel, but onnxgrad rewrites it into ops that do).
FD_SETTINGS = {
    "two_outputs": dict(dtype=np.float64),
    "dense_relu": dict(dtype=np.float64),
    "embedding": dict(dtype=np.float64),
    "scalar_loss": dict(dtype=np.float64),
}


def _ms_tree(tree):
    if isinstance(tree, (tuple, list)):
        return type(tree)(_ms_tree(t) for t in tree)
    return Tensor(tree)


def _exported(name, rng: np.random.Generator):
    """The MindSpore cell, its exported ONNX graph loaded by onnxgrad, and the inputs."""
    cell_factory, inputs_factory = EXPORTED[name]
    cell = cell_factory()
    inputs = inputs_factory(rng)
    network = onnxgrad.load(nets.export_onnx(cell, *inputs))
    return cell, network, inputs


def _exported_weights(cell, network):
    # MindSpore's export names initializers after the parameters; unused ones are absent.
    params = network.parameters_dict()
    ms_weights = [p for p in cell.trainable_params() if p.name in params]
    assert ms_weights, "the exported graph should hold the cell's parameters"
    for p in ms_weights:
        np.testing.assert_array_equal(params[p.name].value, p.asnumpy())
    return ParameterTuple(ms_weights), onnxgrad.ParameterTuple(params[p.name] for p in ms_weights)


@pytest.mark.parametrize("get_all,get_by_list,sens_param", FLAGS, ids=lambda f: str(int(f)))
@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_exported_graph_matches_mindspore(name, get_all, get_by_list, sens_param):
    rng = rng_for("exported", name)
    cell, network, inputs = _exported(name, rng)
    ms_weights, weights = _exported_weights(cell, network)
    args = list(inputs)
    if sens_param:
        args.append(random_sens(network(*inputs), rng))

    expected = ms_nn.ForwardValueAndGrad(cell, ms_weights, get_all, get_by_list, sens_param)(*_ms_tree(args))
    actual = onnxgrad.ForwardValueAndGrad(network, weights, get_all, get_by_list, sens_param)(*args)

    assert_trees_close(actual, expected, **TOLERANCE)


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_exported_graph_gradients_match_finite_differences(name):
    cell_factory, inputs_factory = EXPORTED[name]
    inputs = inputs_factory(rng_for("exported", name))
    model = nets.export_onnx(cell_factory(), *inputs)
    settings = dict(FD_SETTINGS[name])
    if settings.pop("dtype") == np.float64:
        model = to_float64(model)
        inputs = [a.astype(np.float64) if a.dtype == np.float32 else a for a in inputs]
    check_grads(onnxgrad.load(model), inputs, **settings)


def test_sensitivity_of_a_scalar_output_may_have_shape_1():
    cell, network, inputs = _exported("scalar_loss", rng_for("exported", "scalar_loss"))
    sens = np.array([2.5], np.float32)
    expected = ms_nn.ForwardValueAndGrad(cell, sens_param=True)(Tensor(inputs[0]), Tensor(sens))
    actual = onnxgrad.ForwardValueAndGrad(network, sens_param=True)(inputs[0], sens)
    assert_trees_close(actual, expected, **TOLERANCE)


@pytest.mark.parametrize("sparse,reduction", [(False, "none"), (False, "mean"), (True, "sum"), (True, "none")])
def test_loss_cell_on_an_exported_graph_matches_mindspore(sparse, reduction):
    rng = rng_for("loss_cell", sparse, reduction)
    backbone = nets.DenseReLU()
    x = rng.normal(size=(4, 4)).astype(np.float32)
    if sparse:
        labels = np.array([0, 2, 1, 2], np.int32)
    else:  # rows that do not sum to 1: MindSpore's gradient is softmax - labels anyway
        labels = rng.uniform(size=(4, 3)).astype(np.float32)
    ms_cell = ms_nn.WithLossCell(backbone, ms_nn.SoftmaxCrossEntropyWithLogits(sparse=sparse, reduction=reduction))
    ours = nn.WithLossCell(
        onnxgrad.load(nets.export_onnx(backbone, x)), nn.SoftmaxCrossEntropyWithLogits(sparse, reduction)
    )
    ms_weights, weights = _exported_weights(backbone, ours)

    expected = ms_nn.ForwardValueAndGrad(ms_cell, ms_weights, get_all=True, get_by_list=True)(Tensor(x), Tensor(labels))
    actual = onnxgrad.ForwardValueAndGrad(ours, weights, get_all=True, get_by_list=True)(x, labels)

    assert_trees_close(actual, expected, **TOLERANCE)


EXPORTED_VALUE_AND_GRAD_CASES = {
    "position_0": dict(grad_position=0),
    "positions_tuple": dict(grad_position=(0, 2)),
    "int_position": dict(grad_position=1),
    "weights_only": dict(grad_position=None, weights=True),
    "both_with_aux": dict(grad_position=(0, 2), weights=True, has_aux=True),
    "ids": dict(grad_position=0, weights=True, return_ids=True),
    "ids_weights_only": dict(grad_position=None, weights=True, return_ids=True),
    "single_weight": dict(grad_position=0, weights="single"),
}


@pytest.mark.parametrize("case", sorted(EXPORTED_VALUE_AND_GRAD_CASES))
def test_value_and_grad_on_an_exported_graph_matches_mindspore(case):
    kwargs = dict(EXPORTED_VALUE_AND_GRAD_CASES[case])
    cell, network, inputs = _exported("two_outputs", rng_for("exported", "two_outputs"))
    ms_weights, weights = _exported_weights(cell, network)
    use_weights = kwargs.pop("weights", False)

    if use_weights == "single":  # one Parameter, not a tuple: its gradient comes back bare
        ms_weights, weights = ms_weights[0], weights[0]
    expected = ops.value_and_grad(cell, weights=ms_weights if use_weights else None, **kwargs)(*_ms_tree(inputs))
    actual = onnxgrad.value_and_grad(network, weights=weights if use_weights else None, **kwargs)(*inputs)

    assert_trees_close(actual, expected, **TOLERANCE)


# --- Cells MindSpore differentiates specially ---------------------------------------------------


def test_frozen_parameters_in_weights_get_zeros_as_in_mindspore():
    net = nets.FrozenBias()
    weights = ms.ParameterTuple(net.get_parameters())
    assert [p.requires_grad for p in weights] == [True, False]
    x = ms.Tensor(np.array([[1.0, -2.0]], np.float32))
    expected = ms.nn.ForwardValueAndGrad(net, weights, get_all=True, get_by_list=True)(x)
    actual = onnxgrad.ForwardValueAndGrad(net, weights, get_all=True, get_by_list=True)(x)
    assert_trees_close(actual, expected)
    assert not np.any(actual[1][1][1].asnumpy())  # the frozen bias: zeros


@pytest.mark.parametrize("flags", [{}, {"get_all": True}, {"get_by_list": True}, {"get_all": True, "get_by_list": True}])
def test_a_cell_without_inputs_nests_and_types_as_mindspore(flags):
    net = nets.NoInput()
    weights = ms.ParameterTuple(net.trainable_params()) if flags.get("get_by_list") else None
    expected = ms.nn.ForwardValueAndGrad(net, weights, **flags)()
    actual = onnxgrad.ForwardValueAndGrad(net, weights, **flags)()
    assert isinstance(actual[0], ms.Tensor), "no arguments: MindSpore Tensors out"
    assert_trees_close(actual, expected)


def test_a_custom_bprop_is_refused_not_ignored():
    net = nets.WithClipped()
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
    """One int-semantics case: a cell of ``mindspore_nets``, its inputs and flags, and why it is here."""

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
    case = INT_CASES[name]
    net = getattr(nets, case.cell)()
    weights = ms.ParameterTuple(net.trainable_params()) if case.weights else None
    inputs = [Tensor(a) for a in case.inputs]
    expected = ms_nn.ForwardValueAndGrad(net, weights, **dict(case.flags))(*inputs)
    actual = onnxgrad.ForwardValueAndGrad(net, weights, **dict(case.flags))(*inputs)
    assert_trees_close(actual, expected, **TOLERANCE)


def test_int_math_without_a_float64_equivalent_is_refused():
    net = nets.IntRealDiv()
    x = Tensor(X_INT)
    # MindSpore returns a float32 gradient for an int input here; its export holds an int Div under a
    # float output, refused at conversion (converters/mindspore.py).
    assert ms_nn.ForwardValueAndGrad(net)(x)[1].dtype == ms.float32
    with pytest.raises(onnxgrad.ConversionError, match=r"its Div node .* computes int64"):
        onnxgrad.ForwardValueAndGrad(net)(x)


def test_an_int_gradient_past_float64_exactness_is_refused():
    net = nets.IntTimes3()
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
