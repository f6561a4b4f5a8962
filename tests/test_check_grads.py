"""``onnxgrad.testing.check_grads`` on real networks and data: no false alarms
(float64 differences, kinks recognised), and wrong gradients still caught."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import onnx.parser
import pytest

import onnxgrad
from onnxgrad.testing import check_grads

ROOT = pathlib.Path(__file__).resolve().parent.parent
MLP = ROOT / "models" / "digits_mlp.onnx"
BATCH = 32


def _digit_batches(count: int) -> list[np.ndarray]:
    """``count`` batches of real scikit-learn digits (pixels in [0, 1]), cycling through the data set."""
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn is in the train extra")
    x = (datasets.load_digits().data / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    starts = [(b * BATCH) % (len(x) - BATCH) for b in range(count)]
    return [x[order[s : s + BATCH]] for s in starts]


class _Doubled:
    """ForwardValueAndGrad with every gradient doubled."""

    def __init__(self, *args, **kwargs):
        self._fvg = onnxgrad.ForwardValueAndGrad(*args, **kwargs)

    def __call__(self, *args):
        value, (inputs, weights) = self._fvg(*args)
        return value, (tuple(2 * g for g in inputs), tuple(2 * g for g in weights))


def test_bundled_mlp_passes_on_100_real_digit_batches():
    # The float32 step of the first version crossed Relu kinks: 20 of the first 20 batches failed.
    net = onnxgrad.load(MLP)
    for seed, batch in enumerate(_digit_batches(100)):
        result = check_grads(net, [batch], seed=seed)
        assert result.precision == "float64"
        assert result.elements == 48 * 4 + 10  # 48 sampled of x and each weight but fc2.bias (10)
    assert net(batch).dtype == np.float32  # the network itself stays float32


def test_bundled_mlp_doubled_gradients_fail_on_every_batch(monkeypatch):
    monkeypatch.setattr(onnxgrad.testing, "ForwardValueAndGrad", _Doubled)
    net = onnxgrad.load(MLP)
    for seed, batch in enumerate(_digit_batches(10)):
        with pytest.raises(AssertionError, match=r"taken in float64.*grad\[fc2\.bias\]"):
            check_grads(net, [batch], seed=seed)


_RELU = onnx.parser.parse_model(
    """<ir_version: 8, opset_import: ["" : 17]> g (float[5] x) => (float[5] y) { y = Relu(x) }"""
)


def test_relu_kink_is_reported_as_non_smooth_not_failed():
    # Relu's gradient at 0 is 0 (ORT, PyTorch): the left derivative. Central differences give 0.5.
    x = np.array([0.0, 1.0, -1.0, 0.0, 2.0], np.float32)
    result = check_grads(onnxgrad.load(_RELU), [x], sens=np.ones(5, np.float32))
    assert [entry.split(":")[0] for entry in result.non_smooth] == ["grad[x][0]", "grad[x][3]"]
    assert all("one-sided 0 / 1 (non-smooth)" in entry for entry in result.non_smooth)


def test_relu_kink_still_catches_a_gradient_outside_the_one_sided_ones(monkeypatch):
    monkeypatch.setattr(onnxgrad.testing, "ForwardValueAndGrad", _Doubled)
    x = np.array([0.0, 1.0, -1.0, 0.0, 2.0], np.float32)
    with pytest.raises(AssertionError, match=r"2 element\(s\) of grad\[x\]") as caught:
        check_grads(onnxgrad.load(_RELU), [x], sens=np.ones(5, np.float32))
    assert "grad[x][1]: analytic 2, numeric 1" in str(caught.value)  # the smooth elements; 0's kinks pass


def test_graph_without_double_kernels_falls_back_to_its_own_precision():
    # ORT's CPU Conv has no double kernel: the differences are taken in float32, with its larger steps.
    model = onnx.parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 1, 4, 4] x) => (float[1, 1, 3, 3] y) <float[1, 1, 2, 2] w = {0.5, -1.0, 0.25, 2.0}> {
            y = Conv(x, w)
        }"""
    )
    x = np.random.default_rng(0).standard_normal((1, 1, 4, 4)).astype(np.float32)
    assert check_grads(onnxgrad.load(model), [x]).precision == "float32"


def test_import_onnxgrad_exposes_testing():
    code = "import onnxgrad; print(onnxgrad.testing.check_grads.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "check_grads", done.stderr
