"""The parity suite: MindSpore Cells passed straight to ``onnxgrad.ForwardValueAndGrad``,
compared with MindSpore 2.10's own ``nn.ForwardValueAndGrad`` in the same run.

- every network of ``ms_parity_nets.NETWORKS`` with every flag combination
  (get_all, get_by_list, sens_param), MindSpore Tensors in and out;
- every loss of ``onnxgrad.nn`` and reduction, through MindSpore's
  ``nn.WithLossCell``, on a few backbones (labels' gradients included);
- the Cell front-end: Tensors or arrays out as they came in, parameters read
  at call time without re-exporting or rebuilding, re-export on a new signature,
  weights as a ParameterTuple or a list of Parameters.

Tolerances and known failures are data (``TOLERANCES``, ``KNOWN_FAILURES``).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import ParameterTuple, Tensor  # noqa: E402
from mindspore import nn as ms_nn  # noqa: E402

import ms_parity_nets as nets  # noqa: E402
import onnxgrad  # noqa: E402
from onnxgrad import _gradient  # noqa: E402
from onnxgrad.converters import mindspore as converter  # noqa: E402
from onnxgrad.errors import InputError  # noqa: E402
from test_losses import CASES as LOSS_CASES  # noqa: E402
from test_losses import REDUCTIONS, Tolerance, make_labels  # noqa: E402
from treecompare import assert_trees_close  # noqa: E402

ms.set_context(mode=ms.PYNATIVE_MODE)


DEFAULT_TOLERANCE = Tolerance()
#: Networks (and loss backbones) whose kernels round differently enough to need more: none today.
TOLERANCES: dict[str, Tolerance] = {}

#: Networks onnxgrad gets wrong today: name -> why. Strict xfails, so a fix shows up as a failure to clean up.
KNOWN_FAILURES: dict[str, str] = {}

NETWORKS = nets.NETWORKS
FLAGS = list(itertools.product([False, True], repeat=3))  # get_all, get_by_list, sens_param


def _tolerance(name: str) -> Tolerance:
    return TOLERANCES.get(name, DEFAULT_TOLERANCE)


def _sens(outputs, rng: np.random.Generator):
    """A random sensitivity shaped like the network's outputs (a tuple for several)."""
    if isinstance(outputs, tuple):
        return tuple(_sens(o, rng) for o in outputs)
    return Tensor(rng.normal(size=outputs.shape).astype(np.float32))


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
        args.append(_sens(cell(*args), np.random.default_rng(7)))
    weights = ParameterTuple(cell.trainable_params())

    expected = ms_nn.ForwardValueAndGrad(cell, weights, get_all, get_by_list, sens_param)(*args)
    actual = onnxgrad.ForwardValueAndGrad(cell, weights, get_all, get_by_list, sens_param)(*args)

    _assert_tensors(actual)
    tolerance = _tolerance(name)
    assert_trees_close(actual, expected, rtol=tolerance.rtol, atol=tolerance.atol)


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
    assert_trees_close(actual, expected, **dataclasses.asdict(DEFAULT_TOLERANCE))


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
    logits = cell(*nets.tensors(inputs)).asnumpy()
    labels = make_labels(dataclasses.replace(case, logits=logits.shape), np.random.default_rng(3))
    args = nets.tensors([*inputs, labels])
    weights = ParameterTuple(cell.trainable_params())

    def with_loss(r):
        kwargs = {k: Tensor(v) if isinstance(v, np.ndarray) else v for k, v in case.kwargs.items()}
        return ms_nn.WithLossCell(cell, getattr(ms_nn, case.loss)(reduction=r, **kwargs))

    loss_cell = with_loss(reduction)
    if sens_param:
        args.append(_sens(loss_cell(*args), np.random.default_rng(7)))
    flags = dict(weights=weights, get_all=True, get_by_list=True, sens_param=sens_param)
    expected = nets.reference(with_loss, case.loss, reduction, logits.size, flags, args)
    actual = onnxgrad.ForwardValueAndGrad(loss_cell, **flags)(*args)

    _assert_tensors(actual)
    tolerance = max(case.tolerance, _tolerance(backbone), key=lambda t: t.rtol)
    assert_trees_close(actual, expected, rtol=tolerance.rtol, atol=tolerance.atol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss,backbone", LOSS_PARAMS)
def test_loss_matches_mindspore(loss, backbone, reduction):
    _loss_run(loss, backbone, reduction, sens_param=False)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", sorted(n for n, c in LOSS_CASES.items() if len(c.logits) == 2))
def test_loss_with_sensitivity_matches_mindspore(loss, reduction):
    _loss_run(loss, "dense", reduction, sens_param=True)


def test_mindspore_bce_mean_gradient_bug_is_still_there():
    """If this fails, MindSpore fixed the bug: drop the workaround in ms_parity_nets.MINDSPORE_BUGS."""
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
    assert_trees_close(second, mindspores(*args), **dataclasses.asdict(DEFAULT_TOLERANCE))
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
    assert_trees_close(actual, expected, **dataclasses.asdict(DEFAULT_TOLERANCE))


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
        assert_trees_close((value, grad), expected, **dataclasses.asdict(DEFAULT_TOLERANCE))
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
    assert_trees_close(actual, expected, **dataclasses.asdict(DEFAULT_TOLERANCE))


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
