"""Depthwise convolutions (groups == input channels, as in MobileNet and EfficientNet): every gradient
of the lowered graph (input, weight, bias) equals torch.autograd's, across strides, dilations, padding
and channel multipliers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import onnxgrad  # noqa: E402
from _support.tolerances import tolerance  # noqa: E402

TOLERANCE = tolerance("torch", "depthwise_conv").kwargs()


@dataclasses.dataclass(frozen=True)
class Depthwise:
    """One depthwise Conv2d: ``channels`` in, ``channels * multiplier`` out, ``groups=channels``."""

    name: str
    channels: int = 4
    multiplier: int = 1
    kernel: int | tuple[int, int] = 3
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] | str = 0
    dilation: int | tuple[int, int] = 1
    size: tuple[int, int] = (9, 8)


CASES = (
    Depthwise("3x3_same", padding=1),
    Depthwise("3x3_stride2", stride=2, padding=1),
    Depthwise("5x5_stride2_odd_input", kernel=5, stride=2, padding=2, size=(11, 7)),
    Depthwise("dilated", dilation=2, padding=2),
    Depthwise("dilated_strided_asymmetric", kernel=(3, 2), stride=(2, 3), dilation=(2, 1), padding=(1, 0)),
    Depthwise("no_padding_stride_drops_rows", stride=3, size=(10, 10)),
    Depthwise("multiplier_2", multiplier=2, padding=1),
    Depthwise("padding_same_string_dilated", kernel=3, dilation=2, padding="same"),
    Depthwise("one_channel", channels=1, stride=2, padding=1),
)


class Block(nn.Module):
    """The depthwise conv, then a fixed random weighting so that the summed output's gradient
    differs at every position (a plain sum would give every tap the same weight)."""

    def __init__(self, case: Depthwise, out_shape: tuple[int, ...]):
        super().__init__()
        self.conv = nn.Conv2d(case.channels, case.channels * case.multiplier, case.kernel, stride=case.stride,
                              padding=case.padding, dilation=case.dilation, groups=case.channels)
        self.register_buffer("mix", torch.randn(out_shape))

    def forward(self, x):
        return (self.conv(x) * self.mix).sum()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_depthwise_conv_gradients_match_autograd(case):
    torch.manual_seed(0)
    x = torch.randn(2, case.channels, *case.size)
    probe = nn.Conv2d(case.channels, case.channels * case.multiplier, case.kernel, stride=case.stride,
                      padding=case.padding, dilation=case.dilation, groups=case.channels)
    module = Block(case, tuple(probe(x).shape)).eval()
    params = list(module.parameters())

    value, ((dx,), dparams) = onnxgrad.ForwardValueAndGrad(module, params, get_all=True, get_by_list=True)(x)

    leaf = x.clone().requires_grad_(True)
    expected = module(leaf)
    expected.backward()
    np.testing.assert_allclose(value.numpy(), expected.detach().numpy(), **TOLERANCE)
    assert dx.shape == leaf.grad.shape
    np.testing.assert_allclose(dx.numpy(), leaf.grad.numpy(), err_msg="grad[x]", **TOLERANCE)
    for (name, p), grad in zip(module.named_parameters(), dparams):
        assert grad.shape == p.grad.shape, name
        np.testing.assert_allclose(grad.numpy(), p.grad.numpy(), err_msg=f"grad[{name}]", **TOLERANCE)
