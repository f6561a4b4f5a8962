"""The losses of ``onnxgrad.nn``: MindSpore 2.10's constructors, forward values and
gradients, the labels' gradients included.

Each case names a loss class and its keyword arguments; both onnxgrad's and
MindSpore's class are built from the same names, so the comparison also checks
that the constructors agree. A loss is attached to an identity backbone, so
the input gradient is the loss's gradient with respect to the logits.
Finite differences (float64) check that every gradient is the true gradient of
the forward value, except where MindSpore's gradient is not (data:
``Case.true_gradient``).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import numpy as np
import onnx
import onnx.parser
import pytest

import onnxgrad
from _support.loss_cases import CASES, REDUCTIONS, Case, make_labels
from _support.sensitivity import random_sens
from _support.tolerances import tolerance
from _support.treecompare import assert_trees_close
from onnxgrad import nn
from onnxgrad.errors import InputError
from onnxgrad.nn import _registry
from onnxgrad.testing import check_grads


def ours(case: Case, reduction: str) -> nn.LossFn:
    return getattr(nn, case.loss)(reduction=reduction, **case.kwargs)


def mindspores(case: Case, reduction: str) -> Any:
    import mindspore

    kwargs = {k: mindspore.Tensor(v) if isinstance(v, np.ndarray) else v for k, v in case.kwargs.items()}
    return getattr(mindspore.nn, case.loss)(reduction=reduction, **kwargs)


def backbone(shape: tuple[int, ...], dtype: str = "float", trainable: bool = False) -> onnxgrad.Network:
    """``logits = x`` (or ``x * scale`` with a trainable scalar ``scale``)."""
    dims = ",".join(str(d) for d in shape)
    if trainable:
        body, initializers = "logits = Mul(x, scale)", f"<{dtype} scale = {{1.5}}>"
    else:
        body, initializers = "logits = Identity(x)", ""
    return onnxgrad.load(
        onnx.parser.parse_model(
            f"""<ir_version: 8, opset_import: ["" : 11]>
            agraph ({dtype}[{dims}] x) => ({dtype}[{dims}] logits) {initializers} {{ {body} }}"""
        )
    )


# --- onnxgrad against MindSpore -------------------------------------------------


def _compare_with_mindspore(case: Case, reduction: str, logits: np.ndarray, labels: np.ndarray, sens: bool):
    ms = pytest.importorskip("mindspore")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(1)
    cell = nn.WithLossCell(backbone(logits.shape), ours(case, reduction))
    args = [logits, labels]
    if sens:
        args.append(random_sens(np.asarray(cell(logits, labels)), rng))

    from _support import mindspore_nets  # imports MindSpore

    expected = mindspore_nets.reference(
        lambda r: mindspores(case, r), case.loss, reduction, logits.size, dict(get_all=True, sens_param=sens),
        [ms.Tensor(a) for a in args],
    )
    actual = onnxgrad.ForwardValueAndGrad(cell, get_all=True, sens_param=sens)(*args)

    tolerance = case.tolerance
    assert_trees_close(actual, expected, rtol=tolerance.rtol, atol=tolerance.atol)


@pytest.mark.parametrize("sens", [False, True], ids=["ones", "sens"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_gradients_match_mindspore(name, reduction, sens):
    case = CASES[name]
    rng = np.random.default_rng(0)
    logits = rng.normal(size=case.logits).astype(np.float32)
    _compare_with_mindspore(case, reduction, logits, make_labels(case, rng), sens)


# Points where a piecewise loss switches branch or has a kink, and other corners:
# (case, logits, labels).
_X = np.array([[0.25, -0.5, 1.0], [2.0, 0.0, -3.0]], np.float32)
EDGE_CASES = {
    # d = 0 (the L1 kink) and |d| = beta or delta exactly (the switch).
    "l1_at_zero": (CASES["l1"], _X, _X.copy()),
    "smooth_l1_at_switch": (CASES["smooth_l1"], _X, _X - np.float32(0.5) * np.array([[1, -1, 0], [0, 1, -1]], np.float32)),
    "huber_at_switch": (
        Case("HuberLoss", {"delta": 0.5}, "regression"),
        _X,
        _X - np.float32(0.5) * np.array([[1, -1, 0], [0, 1, -1]], np.float32),
    ),
    # Logits 0 (where log(1 + exp(-|x|)) has its kink) and far out.
    "bce_with_logits_at_zero_and_far": (
        CASES["bce_with_logits_weighted"],
        np.array([[0.0, 30.0, -30.0], [0.0, -0.0, 80.0]], np.float32),
        np.array([[0.0, 1.0, 0.3], [1.0, 0.5, 0.0]], np.float32),
    ),
    # Every label ignored: 'mean' divides 0 by 0 (NaN, as in MindSpore); gradients are zero.
    "cross_entropy_all_ignored": (CASES["cross_entropy_weighted"], _X, np.array([1, 1], np.int32)),
    "nll_all_ignored": (CASES["nll_weighted"], _X, np.array([1, 1], np.int32)),
    # float16 probability targets; their gradient comes back in float16.
    "cross_entropy_float16_targets": (
        dataclasses.replace(
            CASES["cross_entropy_probabilities_weighted"], tolerance=tolerance("mindspore", dtype=np.float16)
        ),
        _X,
        np.full((2, 3), 0.3, np.float16),
    ),
    # NLLLoss takes int64 labels too.
    "nll_int64_labels": (CASES["nll_weighted"], _X, np.array([2, 0], np.int64)),
    "softmax_ce_sparse_int64_labels": (CASES["softmax_ce_sparse"], _X, np.array([2, 0], np.int64)),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_match_mindspore(name, reduction):
    case, logits, labels = EDGE_CASES[name]
    _compare_with_mindspore(case, reduction, logits, labels, sens=False)


@pytest.mark.parametrize("loss", sorted({case.loss for case in CASES.values()}))
def test_constructor_matches_mindspore(loss):
    ms = pytest.importorskip("mindspore")

    def parameters(cls):
        return [(p.name, p.default) for p in inspect.signature(cls).parameters.values()]

    assert parameters(getattr(nn, loss)) == parameters(getattr(ms.nn, loss))


# --- The true gradients -----------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", sorted(n for n, case in CASES.items() if case.true_gradient))
def test_gradients_match_finite_differences(name, reduction):
    case = CASES[name]
    rng = np.random.default_rng(0)
    logits = rng.normal(size=case.logits)
    labels = make_labels(case, rng)
    if labels.dtype.kind == "f":
        labels = labels.astype(np.float64)
    cell = nn.WithLossCell(backbone(case.logits, "double", trainable=True), ours(case, reduction), labels.dtype)
    check_grads(cell, [logits, labels])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_dense_softmax_cross_entropy_back_propagates_mindspores_gradient(reduction):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 3)).astype(np.float32)
    labels = rng.uniform(size=(4, 3)).astype(np.float32)  # rows do not sum to 1
    cell = nn.WithLossCell(backbone((4, 3)), nn.SoftmaxCrossEntropyWithLogits(reduction=reduction))

    _, (logits_grad, labels_grad) = onnxgrad.ForwardValueAndGrad(cell, get_all=True)(logits, labels)

    softmax = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    scale = 1.0 / len(logits) if reduction == "mean" else 1.0
    np.testing.assert_allclose(logits_grad, (softmax - labels) * scale, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels_grad, np.zeros_like(labels))


def test_all_ignored_mean_is_nan_with_zero_gradients():
    cell = nn.WithLossCell(backbone((2, 3)), nn.CrossEntropyLoss(ignore_index=0))
    value, grad = onnxgrad.ForwardValueAndGrad(cell)(_X, np.zeros(2, np.int32))
    assert np.isnan(value)
    np.testing.assert_array_equal(grad, np.zeros_like(_X))


# --- Arguments ----------------------------------------------------------------------

BAD_ARGUMENTS = {
    "reduction": (lambda: nn.MSELoss("avg"), r"reduction must be one of \('none', 'mean', 'sum'\), got 'avg'"),
    "beta": (lambda: nn.SmoothL1Loss(beta=0.0), "SmoothL1Loss's beta must be a number greater than 0, got 0.0"),
    "delta": (lambda: nn.HuberLoss(delta=-1), "HuberLoss's delta must be a number greater than 0, got -1"),
    "label_smoothing": (
        lambda: nn.CrossEntropyLoss(label_smoothing=1.5),
        r"CrossEntropyLoss's label_smoothing must be a number in \[0, 1\], got 1.5",
    ),
    "class_weight_rank": (
        lambda: nn.NLLLoss(weight=np.ones((2, 3), np.float32)),
        r"NLLLoss's weight must be a 1-D float array with one weight per class, got float32\[2, 3\]",
    ),
    "ignore_index": (lambda: nn.CrossEntropyLoss(ignore_index=1.0), "ignore_index must be an int, got 1.0"),
    "bce_weight_dtype": (
        lambda: nn.BCEWithLogitsLoss(weight=np.array([1, 2])),
        "BCEWithLogitsLoss's weight must hold floats, got int64",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_ARGUMENTS))
def test_bad_arguments_say_what_is_wrong(name):
    make, message = BAD_ARGUMENTS[name]
    with pytest.raises(InputError, match=message):
        make()


def test_class_weight_must_match_the_classes():
    with pytest.raises(InputError, match="weight has 4 entries but the logits have 3 classes"):
        nn.WithLossCell(backbone((2, 3)), nn.CrossEntropyLoss(weight=np.ones(4, np.float32)))


def test_bce_weight_must_broadcast_to_the_logits():
    with pytest.raises(InputError, match=r"weight of shape \[4\] does not broadcast to the logits' shape \[2, 3\]"):
        nn.WithLossCell(backbone((2, 3)), nn.BCEWithLogitsLoss(weight=np.ones(4, np.float32)))


def test_cross_entropy_takes_int32_class_indices_like_mindspore():
    # MindSpore refuses int64 labels for CrossEntropyLoss ("should be Int32"); NLLLoss takes both.
    with pytest.raises(InputError, match=r"CrossEntropyLoss takes labels of dtype \['int32', 'float32'"):
        nn.attach_loss(backbone((2, 3)).model, nn.CrossEntropyLoss(), np.int64)


@pytest.mark.parametrize(
    "loss,label_dtype,label_shape",
    [
        (nn.CrossEntropyLoss(), np.int32, (2, 5, 5)),
        (nn.CrossEntropyLoss(), np.float32, (2, 3, 5, 5)),
        (nn.NLLLoss(), np.int64, (2, 5, 5)),
        (nn.SoftmaxCrossEntropyWithLogits(sparse=True), np.int32, (2, 3, 5)),
        (nn.MSELoss(), np.float32, (2, 3, 5, 5)),
    ],
)
def test_label_shape_follows_the_label_dtype(loss, label_dtype, label_shape):
    model = nn.attach_loss(backbone((2, 3, 5, 5)).model, loss, label_dtype)
    label = model.graph.input[1].type.tensor_type
    assert [d.dim_value for d in label.shape.dim] == list(label_shape)
    assert label.elem_type == onnx.helper.np_dtype_to_tensor_dtype(np.dtype(label_dtype))

def test_with_loss_cell_takes_the_label_dtype_and_other_label_dtypes_at_call_time():
    logits = np.array([[0.5, -1.0, 2.0], [0.0, 0.25, -0.5]], np.float32)
    labels = np.array([2, 0])
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True)
    int64_cell = nn.WithLossCell(backbone(logits.shape), loss, label_dtype=np.int64)
    int32_cell = nn.WithLossCell(backbone(logits.shape), loss)
    assert int64_cell.inputs[-1].dtype == np.int64 and int32_cell.inputs[-1].dtype == np.int32
    expected = onnxgrad.ForwardValueAndGrad(int64_cell, get_all=True)(logits, labels.astype(np.int64))
    # The int32 cell given int64 labels builds the int64 cell itself, with the same results.
    assert_trees_close(onnxgrad.ForwardValueAndGrad(int32_cell, get_all=True)(logits, labels.astype(np.int64)), expected)
    assert_trees_close(int32_cell(logits, labels.astype(np.int64)), expected[0])
    with pytest.raises(InputError, match=r"SoftmaxCrossEntropyWithLogits takes labels of dtype \['int32', 'int64'\]"):
        nn.WithLossCell(backbone(logits.shape), loss, label_dtype=np.float32)


def test_loss_fn_is_closed_to_subclasses_outside_onnxgrad():
    with pytest.raises(InputError, match=r"MyLoss subclasses onnxgrad.nn.LossFn, which is closed.*part of the model"):

        class MyLoss(nn.MSELoss):
            def _build(self, gw, logits, label, logits_info, label_dtype):
                return logits


def test_every_loss_alias_names_a_loss_of_onnxgrad_nn():
    # An alias to a class that does not exist was hidden by loss_names() instead of failing.
    missing = {alias: cls for alias, (cls, _) in _registry._LOSS_ALIASES.items() if cls not in _registry._loss_classes()}
    assert missing == {}, f"aliases to losses onnxgrad.nn does not define: {missing}"
    assert set(_registry._LOSS_ALIASES) <= set(nn.loss_names())


def test_make_loss_builds_the_named_loss_and_refuses_unknown_names():
    loss = nn.make_loss("sparse_softmax_ce", reduction="sum")
    assert type(loss) is nn.SoftmaxCrossEntropyWithLogits and loss.sparse and loss.reduction == "sum"
    assert type(nn.make_loss("HuberLoss")) is nn.HuberLoss  # a class name works too
    with pytest.raises(InputError, match=r"Unknown loss 'hinge': choose one of \[.*'mse'"):
        nn.make_loss("hinge")
