"""How closely onnxgrad must match each reference: one table, each entry with its reason.

A reference is what a result is compared with: ``"mindspore"`` (MindSpore 2.10 run in
the same process), ``"torch"`` (``torch.autograd``), ``"recorded"`` (values recorded
from either framework), ``"recording"`` (a framework re-run against its own recording),
and ``"<reference>:<case>"`` where one case needs its own entry. Finite differences
keep their own table, :data:`onnxgrad.testing.TOLERANCES` (public API, with ``eps``
and ``points`` besides rtol and atol).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Allowed difference between onnxgrad's result and a reference's, and why that much."""

    rtol: float
    atol: float
    reason: str

    def kwargs(self) -> dict[str, float]:
        """``rtol`` and ``atol`` as keyword arguments of ``assert_allclose`` / ``assert_trees_close``."""
        return {"rtol": self.rtol, "atol": self.atol}


_TWO_FLOAT32 = "two float32 implementations summing in different orders agree to a few roundings"

#: (reference, dtype) -> tolerance.
TOLERANCES: Mapping[tuple[str, np.dtype], Tolerance] = types.MappingProxyType({
    ("mindspore", F32): Tolerance(1e-4, 1e-5, "MindSpore's CPU kernels and ORT's: " + _TWO_FLOAT32),
    ("mindspore", F16): Tolerance(1e-3, 1e-3, "float16 labels: their gradient comes back in float16"),
    # Exported forward values, no gradient: MindSpore's and ORT's forward kernels agree more closely.
    ("mindspore:export", F32): Tolerance(1e-5, 1e-6, "MindSpore's forward kernels and ORT's: " + _TWO_FLOAT32),
    ("torch", F32): Tolerance(1e-5, 1e-6, "PyTorch's kernels and ORT's: " + _TWO_FLOAT32),
    # With ones sensitivities the sum of a LayerNorm's outputs is sum(bias) whatever its input, so
    # every gradient upstream of the norm is 0 up to rounding (~1e-7); with random ones O(1..10).
    ("torch:layernorm", F32): Tolerance(1e-5, 5e-6, "gradients upstream of a final LayerNorm"),
    ("torch:transformer", F32): Tolerance(1e-5, 5e-6, "gradients upstream of a final LayerNorm"),
    # A depthwise Conv2d's dX (ConvTranspose) and dW (a correlating Conv) sum over windows, batch and
    # positions in another order than PyTorch's depthwise kernels.
    ("torch:depthwise_conv", F32): Tolerance(1e-4, 1e-5, "depthwise convolutions' gradients: PyTorch's depthwise "
                                             "kernels and ORT's Conv/ConvTranspose: " + _TWO_FLOAT32),
    # A strided Conv then a LayerNorm over 4 channels, exported by hand with its shape arithmetic folded.
    ("torch:hand_export", F32): Tolerance(1e-4, 1e-5, "a hand-exported Conv and LayerNorm: PyTorch's kernels and "
                                          "ORT's through ConvGrad and LayerNormalizationGrad: " + _TWO_FLOAT32),
    # Whole transformer models (attention, norms, many matmuls); test_hf_models scales atol by the largest
    # expected value.
    ("torch:transformers", F32): Tolerance(2e-4, 2e-5, "Hugging Face models: PyTorch's kernels and ORT's through "
                                           "whole transformers: " + _TWO_FLOAT32),
    ("recorded", F32): Tolerance(1e-5, 5e-6, _TWO_FLOAT32 + "; gradients upstream of a final LayerNorm "
                                 "are 0 up to rounding with most sensitivities"),
    ("recording", F32): Tolerance(1e-6, 1e-7, "the same framework, same inputs, re-run: rounding only"),
})


def tolerance(reference: str, case: str | None = None, dtype: Any = np.float32) -> Tolerance:
    """The tolerance for comparing with ``reference``: the case's own entry if it has one.

    Raises:
        KeyError: no entry for the reference and dtype (add one, with its reason).
    """
    dtype = np.dtype(dtype)
    if case is not None and (f"{reference}:{case}", dtype) in TOLERANCES:
        return TOLERANCES[f"{reference}:{case}", dtype]
    return TOLERANCES[reference, dtype]
