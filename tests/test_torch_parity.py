"""Parity with ``torch.autograd``: ``ForwardValueAndGrad`` and ``value_and_grad``
on a ``torch.nn.Module`` give the value and every gradient (inputs and
parameters) that PyTorch computes for the same module.

The reference for one call is ``scalar = sum_k (out_k * sens_k).sum()`` over the
outputs of ``module(*inputs)`` (eval mode, as onnxgrad exports it), with
``sens_k`` ones or the sensitivities passed with ``sens_param``, differentiated
by ``torch.autograd.grad`` (``allow_unused``; None becomes zeros). Int inputs
get int zeros (token ids and class targets do not enter float math through a
Cast). The expected result is nested as onnxgrad nests it and compared with
:func:`_support.treecompare.assert_trees_close`, with per-module tolerances from
``_support.tolerances``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import onnxgrad  # noqa: E402
from _support.sensitivity import random_sens, rng_for  # noqa: E402
from _support.tolerances import tolerance  # noqa: E402
from _support.torch_models import MODELS  # noqa: E402
from _support.treecompare import assert_trees_close  # noqa: E402
from onnxgrad import _gradient  # noqa: E402
from onnxgrad.converters import torch as converter  # noqa: E402
from onnxgrad.testing import check_grads  # noqa: E402


def _tolerance(name: str) -> dict[str, float]:
    return tolerance("torch", name).kwargs()


# --- The torch.autograd reference --------------------------------------------


@dataclasses.dataclass
class Reference:
    """What torch.autograd computes for one call, flat."""

    value: Any  # a tensor, or a tuple for several outputs
    input_grads: list[Any]
    weight_grads: list[Any]


def _outputs(result: Any) -> tuple:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def torch_reference(
    module: Any,
    inputs: Sequence[Any],
    weights: Sequence[Any] = (),
    sens: Sequence[Any] | None = None,
    differentiated: int | None = None,
) -> Reference:
    """Value and gradients by torch.autograd.

    Args:
        module: the module, in eval mode.
        inputs: forward's arguments (torch tensors); float ones are differentiated.
        weights: the parameters to differentiate.
        sens: one sensitivity per output; default ones.
        differentiated: only the first this many outputs enter the scalar
            (``has_aux``); default all.
    """
    xs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    outs = _outputs(module(*xs))
    if sens is None:
        sens = [torch.ones_like(out) for out in outs]
    scalar = sum((out * s).sum() for out, s in zip(outs[:differentiated], sens))
    wrt = [x for x in xs if x.requires_grad] + list(weights)
    grads = iter(torch.autograd.grad(scalar, wrt, allow_unused=True) if wrt else ())

    def grad_of(tensor: Any) -> Any:
        grad = next(grads)
        return torch.zeros_like(tensor) if grad is None else grad

    input_grads = [grad_of(x) if x.requires_grad else torch.zeros_like(x) for x in xs]
    weight_grads = [grad_of(w) for w in weights]
    value = tuple(out.detach() for out in outs) if len(outs) > 1 else outs[0].detach()
    return Reference(value, input_grads, weight_grads)


def nest(ref: Reference, get_all: bool, get_by_list: bool) -> Any:
    """The gradients nested as ForwardValueAndGrad returns them (MindSpore 2.10)."""
    inputs = tuple(ref.input_grads) if get_all else ref.input_grads[0]
    if not get_by_list:
        return inputs
    weights = tuple(ref.weight_grads)
    return (inputs, weights) if get_all else weights


def module_sens(module: Any, inputs: Sequence[Any], name: str) -> tuple:
    """Seeded standard-normal sensitivities, one per output, shaped and typed like it."""
    with torch.no_grad():
        outs = _outputs(module(*inputs))
    return random_sens(outs, rng_for(name), wrap=torch.from_numpy)


def sens_argument(sens: Sequence[Any]) -> Any:
    """The last argument with sens_param: the array for one output, a tuple for several."""
    return sens[0] if len(sens) == 1 else tuple(sens)


def leaves(tree: Any) -> list[Any]:
    if isinstance(tree, tuple):
        return [leaf for item in tree for leaf in leaves(item)]
    return [tree]


def assert_leaf_types(tree: Any, kind: type) -> None:
    for index, leaf in enumerate(leaves(tree)):
        assert isinstance(leaf, kind), f"leaf {index}: {type(leaf).__name__}, expected {kind.__name__}"


def trainable(module: Any) -> list[Any]:
    return [p for p in module.parameters() if p.requires_grad]


# --- Every module, all inputs and all parameters -----------------------------


@pytest.mark.parametrize("sens_kind", ["ones", "random"])
@pytest.mark.parametrize("name", MODELS)
def test_every_module_matches_autograd(name, sens_kind):
    case = MODELS[name]
    module, inputs = case.module(), case.inputs()
    weights = trainable(module)
    sens = module_sens(module, inputs, name) if sens_kind == "random" else None
    fvg = onnxgrad.ForwardValueAndGrad(module, weights, get_all=True, get_by_list=True, sens_param=sens is not None)
    args = inputs if sens is None else (*inputs, sens_argument(sens))

    value, grads = fvg(*args)

    ref = torch_reference(module, inputs, weights, sens)
    assert_leaf_types((value, grads), torch.Tensor)
    assert_trees_close(value, ref.value, **_tolerance(name), path=f"{name} value")
    assert_trees_close(grads, nest(ref, True, True), **_tolerance(name), path=f"{name} grads")


FLAG_MODULES = ["two_inputs", "two_outputs", "embedding", "with_loss"]
FLAGS = list(itertools.product([False, True], repeat=3))


@pytest.mark.parametrize("get_all, get_by_list, sens_param", FLAGS)
@pytest.mark.parametrize("name", FLAG_MODULES)
def test_flag_combinations_match_autograd(name, get_all, get_by_list, sens_param):
    case = MODELS[name]
    module, inputs = case.module(), case.inputs()
    weights = trainable(module)
    sens = module_sens(module, inputs, name) if sens_param else None
    # Without get_by_list the weights are ignored, as in MindSpore.
    fvg = onnxgrad.ForwardValueAndGrad(module, weights, get_all=get_all, get_by_list=get_by_list, sens_param=sens_param)
    args = inputs if sens is None else (*inputs, sens_argument(sens))

    value, grads = fvg(*args)

    ref = torch_reference(module, inputs, weights, sens)
    assert_leaf_types((value, grads), torch.Tensor)
    assert_trees_close(value, ref.value, **_tolerance(name), path=f"{name} value")
    assert_trees_close(grads, nest(ref, get_all, get_by_list), **_tolerance(name), path=f"{name} grads")


# --- Arguments and weights ---------------------------------------------------


def test_numpy_in_gives_numpy_out():
    case = MODELS["two_outputs"]
    module, inputs = case.module(), case.inputs()
    sens = module_sens(module, inputs, "two_outputs")
    fvg = onnxgrad.ForwardValueAndGrad(module, module.parameters(), get_all=True, get_by_list=True, sens_param=True)

    value, grads = fvg(*(x.numpy() for x in inputs), tuple(s.numpy() for s in sens))

    ref = torch_reference(module, inputs, trainable(module), sens)
    assert_leaf_types((value, grads), np.ndarray)
    assert_trees_close(value, ref.value, **_tolerance("two_outputs"))
    assert_trees_close(grads, nest(ref, True, True), **_tolerance("two_outputs"))


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param(lambda m: [m.fc_y.bias, m.fc_x.weight], id="parameters"),
        pytest.param(lambda m: ["fc_y.bias", "fc_x.weight"], id="names"),
        pytest.param(lambda m: ("fc_y.bias", m.fc_x.weight), id="mixed"),
    ],
)
def test_weights_are_parameters_or_names_in_any_order(weights):
    case = MODELS["two_inputs"]
    module, inputs = case.module(), case.inputs()
    fvg = onnxgrad.ForwardValueAndGrad(module, weights(module), get_by_list=True)

    _, grads = fvg(*inputs)

    ref = torch_reference(module, inputs, [module.fc_y.bias, module.fc_x.weight])
    assert_trees_close(grads, tuple(ref.weight_grads), **_tolerance("two_inputs"))


def test_unknown_weight_lists_the_parameter_names():
    case = MODELS["two_inputs"]
    module = case.module()
    fvg = onnxgrad.ForwardValueAndGrad(module, ["fc_x.weight", "fc_z.weight"], get_by_list=True)
    with pytest.raises(onnxgrad.InputError, match=r"known: \['fc_x.bias', 'fc_x.weight'"):
        fvg(*case.inputs())


def test_unused_parameter_and_input_get_zeros():
    case = MODELS["unused_input"]
    module, inputs = case.module(), case.inputs()
    assert case.unused_parameters == {"spare"}
    fvg = onnxgrad.ForwardValueAndGrad(module, [module.spare], get_all=True, get_by_list=True)

    _, ((dx, dunused), (dspare,)) = fvg(*inputs)

    ref = torch_reference(module, inputs, [module.spare])
    assert_trees_close(dx, ref.input_grads[0])
    assert_trees_close((dunused, dspare), (torch.zeros(3, 5), torch.zeros(3)))


# --- Parameters read at call time; one export per signature -------------------


@pytest.fixture
def counters(monkeypatch, fresh_cache):
    """Counts exports and gradient-graph builds (on an empty gradient-graph cache)."""
    counts = {"exports": 0, "builds": 0}
    export, build = converter.to_onnx, _gradient.build_gradient_graph

    def counted_export(*args, **kwargs):
        counts["exports"] += 1
        return export(*args, **kwargs)

    def counted_build(*args, **kwargs):
        counts["builds"] += 1
        return build(*args, **kwargs)

    monkeypatch.setattr(converter, "to_onnx", counted_export)
    monkeypatch.setattr(_gradient, "build_gradient_graph", counted_build)
    return counts


def test_parameter_update_is_seen_without_reexport_or_rebuild(counters):
    case = MODELS["cnn_bn"]
    module, inputs = case.module(), case.inputs()
    weights = trainable(module)
    fvg = onnxgrad.ForwardValueAndGrad(module, weights, get_all=True, get_by_list=True)
    before = fvg(*inputs)
    assert counters == {"exports": 1, "builds": 1}

    with torch.no_grad():  # what an optimizer step does: in place
        for index, param in enumerate(weights):
            param.mul_(0.5 + 0.25 * index).add_(0.1)
    value, grads = fvg(*inputs)

    assert counters == {"exports": 1, "builds": 1}
    ref = torch_reference(module, inputs, weights)
    assert_trees_close(value, ref.value, **_tolerance("cnn_bn"))
    assert_trees_close(grads, nest(ref, True, True), **_tolerance("cnn_bn"))
    assert not torch.allclose(value, before[0])  # the update did change the numbers


def test_new_signature_reexports_and_old_one_is_reused(counters):
    case = MODELS["mlp"]
    module = case.module()
    fvg = onnxgrad.ForwardValueAndGrad(module, module.parameters(), get_all=True, get_by_list=True)
    small, large = torch.randn(2, 4), torch.randn(5, 4)

    for x, exports in [(small, 1), (large, 2), (small, 2), (large, 2)]:
        value, grads = fvg(x)
        assert counters["exports"] == exports
        ref = torch_reference(module, [x], trainable(module))
        assert_trees_close(value, ref.value, **_tolerance("mlp"))
        assert_trees_close(grads, nest(ref, True, True), **_tolerance("mlp"))
    assert counters["builds"] == 2


@pytest.mark.parametrize("change", ["running_mean", "frozen_parameter"])
def test_buffer_and_frozen_parameter_updates_are_seen(change):
    case = MODELS["cnn_bn"]
    module, inputs = case.module(), case.inputs()
    if change == "frozen_parameter":
        module.conv.weight.requires_grad_(False)
    weights = trainable(module)
    fvg = onnxgrad.ForwardValueAndGrad(module, weights, get_all=True, get_by_list=True)
    fvg(*inputs)

    with torch.no_grad():
        (module.bn.running_mean if change == "running_mean" else module.conv.weight).add_(0.5)
    value, grads = fvg(*inputs)

    ref = torch_reference(module, inputs, weights)
    assert_trees_close(value, ref.value, **_tolerance("cnn_bn"))
    assert_trees_close(grads, nest(ref, True, True), **_tolerance("cnn_bn"))


# --- Losses --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LossCase:
    """A backbone + ``onnxgrad.nn`` loss and the PyTorch loss computing the same thing."""

    loss: Any  # the onnxgrad.nn loss
    label: Any  # () -> the label tensor
    label_grad: Any  # () -> the label gradient onnxgrad returns (MindSpore: zeros)


def _sparse_labels() -> Any:
    return torch.tensor([0, 2, 1, 2, 0])


def _dense_labels() -> Any:
    # Rows summing to 1: only then is MindSpore's gradient, (softmax - labels) * sens,
    # the true one that torch's cross_entropy with probability targets computes.
    rng = np.random.default_rng(3)
    return torch.softmax(torch.from_numpy(rng.normal(size=(5, 3)).astype(np.float32)), dim=-1)


LOSSES = {
    "sparse": LossCase(
        onnxgrad.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
        _sparse_labels,
        lambda: torch.zeros(5, dtype=torch.int64),
    ),
    "dense": LossCase(
        onnxgrad.nn.SoftmaxCrossEntropyWithLogits(sparse=False, reduction="mean"),
        _dense_labels,
        lambda: torch.zeros(5, 3),
    ),
}


@pytest.mark.parametrize("kind", LOSSES)
def test_backbone_with_onnxgrad_loss_matches_torch_cross_entropy(kind):
    case = LOSSES[kind]
    backbone = MODELS["mlp"].module()
    x, label = torch.randn(5, 4, generator=torch.Generator().manual_seed(4)), case.label()
    net = onnxgrad.nn.WithLossCell(onnxgrad.load(converter.to_onnx(backbone, x)), case.loss)
    params = net.trainable_params()
    assert [p.name for p in params] == [name for name, _ in backbone.named_parameters()]
    fvg = onnxgrad.ForwardValueAndGrad(net, onnxgrad.ParameterTuple(params), get_all=True, get_by_list=True)

    loss, ((dx, dlabel), dweights) = fvg(x.numpy(), label.numpy())

    xs = x.clone().requires_grad_(True)
    expected_loss = F.cross_entropy(backbone(xs), label)
    expected = torch.autograd.grad(expected_loss, [xs, *backbone.parameters()])
    assert_trees_close(loss, expected_loss.detach().reshape(()), **_tolerance("mlp"))
    assert_trees_close((dx, *dweights), expected, **_tolerance("mlp"))
    assert_trees_close(dlabel, case.label_grad())


def test_module_with_own_loss_matches_torch():
    case = MODELS["with_loss"]
    module, (x, target) = case.module(), case.inputs()
    fvg = onnxgrad.ForwardValueAndGrad(module, module.parameters(), get_all=True, get_by_list=True)

    loss, ((dx, dtarget), dweights) = fvg(x, target)

    xs = x.clone().requires_grad_(True)
    expected_loss = F.cross_entropy(module.fc(xs), target)
    expected = torch.autograd.grad(expected_loss, [xs, *module.parameters()])
    assert_trees_close(loss, expected_loss.detach(), **_tolerance("with_loss"))
    assert_trees_close((dx, *dweights), expected, **_tolerance("with_loss"))
    assert_trees_close(dtarget, torch.zeros(5, dtype=torch.int64))


# --- value_and_grad ------------------------------------------------------------


def test_value_and_grad_positions_and_weights():
    case = MODELS["two_inputs"]
    module, inputs = case.module(), case.inputs()
    weights = [module.fc_y.weight, module.fc_x.bias]
    fn = onnxgrad.value_and_grad(module, grad_position=(1, 0), weights=weights)

    value, (input_grads, weight_grads) = fn(*inputs)

    ref = torch_reference(module, inputs, weights)
    assert_leaf_types((value, input_grads, weight_grads), torch.Tensor)
    assert_trees_close(value, ref.value, **_tolerance("two_inputs"))
    assert_trees_close(input_grads, (ref.input_grads[1], ref.input_grads[0]), **_tolerance("two_inputs"))
    assert_trees_close(weight_grads, tuple(ref.weight_grads), **_tolerance("two_inputs"))


def test_value_and_grad_single_weight_and_ids():
    case = MODELS["two_inputs"]
    module, inputs = case.module(), case.inputs()
    ref = torch_reference(module, inputs, [module.fc_x.weight])

    _, bare = onnxgrad.value_and_grad(module, grad_position=None, weights=module.fc_x.weight)(*inputs)
    _, with_ids = onnxgrad.value_and_grad(module, grad_position=1, weights=["fc_x.weight"], return_ids=True)(*inputs)

    assert_trees_close(bare, ref.weight_grads[0], **_tolerance("two_inputs"))
    expected_ids = ((1, ref.input_grads[1]), (("fc_x.weight", ref.weight_grads[0]),))
    assert_trees_close(with_ids, expected_ids, **_tolerance("two_inputs"))


def test_value_and_grad_takes_module_parameters():
    case = MODELS["mlp"]
    module, inputs = case.module(), case.inputs()
    fn = onnxgrad.value_and_grad(module, grad_position=None, weights=module.parameters())
    ref = torch_reference(module, inputs, trainable(module))

    for _ in range(2):  # module.parameters() is a generator: read once, used at every call
        _, grads = fn(*inputs)
        assert_trees_close(grads, tuple(ref.weight_grads), **_tolerance("mlp"))


def test_forward_value_and_grad_wants_a_sequence_of_weights():
    module = MODELS["mlp"].module()
    first = next(module.parameters())
    with pytest.raises(onnxgrad.InputError, match=r"takes a sequence of weights.*pass \[weight\]"):
        onnxgrad.ForwardValueAndGrad(module, first, get_by_list=True)


def test_value_and_grad_has_aux_differentiates_the_first_output_only():
    case = MODELS["two_outputs"]
    module, inputs = case.module(), case.inputs()
    weights = trainable(module)
    fn = onnxgrad.value_and_grad(module, grad_position=0, weights=weights, has_aux=True)

    value, (dx, dweights) = fn(*inputs)

    ref = torch_reference(module, inputs, weights, differentiated=1)
    assert_trees_close(value, ref.value, **_tolerance("two_outputs"))
    assert_trees_close((dx, dweights), (ref.input_grads[0], tuple(ref.weight_grads)), **_tolerance("two_outputs"))


# --- Finite differences on exported modules ------------------------------------


@pytest.mark.parametrize("name", ["gelu", "layernorm", "two_inputs"])
def test_check_grads_on_exported_module(name):
    case = MODELS[name]
    check_grads(case.module(), [x.numpy() for x in case.inputs()])
