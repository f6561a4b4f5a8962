"""A model the user exported by hand (``torch.onnx.export``) computes shapes with ops: TF-style
"same" padding from ``x.shape``, a reshape to ``(b, h * w, c)``. ``onnxgrad.load`` folds that
arithmetic for each call's static shapes, so the ConvGrad and LayerNormalizationGrad lowerings
see static shapes; every gradient equals torch.autograd's."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import onnxgrad  # noqa: E402
from _support.tolerances import tolerance  # noqa: E402

TOLERANCE = tolerance("torch", "hand_export").kwargs()


class SamePadConvNorm(nn.Module):
    """EfficientNet's TF padding, a strided conv, tokens, LayerNorm (Swin's patch merging pattern)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.norm = nn.LayerNorm(4)
        with torch.no_grad():  # not ones and zeros: the gradient through LayerNorm would be near zero
            self.norm.weight.normal_()
            self.norm.bias.normal_()

    def forward(self, x):
        h, w = x.shape[-2:]
        pad_h = max((math.ceil(h / 2) - 1) * 2 + 3 - h, 0)
        pad_w = max((math.ceil(w / 2) - 1) * 2 + 3 - w, 0)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        y = self.conv(x)
        b, c, hh, ww = y.shape
        tokens = y.reshape(b, c, hh * ww).transpose(1, 2)
        return self.norm(tokens).reshape(b, hh, ww, c)


def _hand_export(module, x) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer warnings
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buffer, input_names=["x"], output_names=["y"], opset_version=17,
                          dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


@pytest.fixture(scope="module")
def exported():
    torch.manual_seed(0)
    module = SamePadConvNorm().eval()
    model = _hand_export(module, torch.randn(2, 3, 9, 8))
    assert {"Shape", "Gather", "Reshape"} <= {n.op_type for n in model.graph.node}  # the arithmetic is there
    return module, model


@pytest.mark.parametrize("batch", [2, 3])
def test_hand_export_with_shape_arithmetic_matches_autograd(exported, batch):
    module, model = exported
    network = onnxgrad.load(model)
    x = torch.randn(batch, 3, 9, 8)  # the batch is named in the file: folded per call's shape
    names = list(network.parameters_dict())
    fvg = onnxgrad.ForwardValueAndGrad(network, network.trainable_params(), get_all=True, get_by_list=True)
    value, ((dx,), dparams) = fvg(x.numpy())

    leaf = x.clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    out = module(leaf)
    out.sum().backward()
    np.testing.assert_allclose(value, out.detach().numpy(), **TOLERANCE)
    np.testing.assert_allclose(dx, leaf.grad.numpy(), err_msg="grad[x]", **TOLERANCE)
    expected = dict(module.named_parameters())
    assert sorted(names) == sorted(expected)
    for name, grad in zip(names, dparams):
        np.testing.assert_allclose(grad, expected[name].grad.numpy(), err_msg=f"grad[{name}]", **TOLERANCE)


def test_without_folding_the_hand_export_is_refused(exported, monkeypatch):
    # The folding is what makes the file route work: without it the lowering lacks a static shape.
    from onnxgrad import _prepare

    monkeypatch.setattr(_prepare, "fold_static_shapes", lambda model, variable: 0)
    _, model = exported
    network = onnxgrad.load(model)
    fvg = onnxgrad.ForwardValueAndGrad(network, network.trainable_params(), get_by_list=True)
    with pytest.raises(onnxgrad.errors.GradientBuildError, match="not known statically"):
        fvg(np.ones((2, 3, 9, 8), np.float32))


def test_folding_leaves_the_users_model_alone(exported):
    _, model = exported
    before = model.SerializeToString()
    network = onnxgrad.load(model)
    onnxgrad.ForwardValueAndGrad(network, network.trainable_params(), get_by_list=True)(np.ones((2, 3, 9, 8), np.float32))
    assert model.SerializeToString() == before
