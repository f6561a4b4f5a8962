"""The device path (CUDA, CANN) run on the CPU EP through the same code.

``_device.RESIDENT_ON_CPU`` makes the CPU behave like a device: parameters are
mirrored into OrtValues of their own, results are bound as OrtValues, and the
optimizer steps as an ONNX graph. Every result is compared with the host path,
which the other suites compare with finite differences, PyTorch and MindSpore.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import onnxgrad
from _support.optim_cases import CASES, SHAPES, start_values, step_grads
from onnxgrad import _device, _network, _train, optim
from onnxgrad._ort import ort

DIGITS = pathlib.Path(__file__).resolve().parent.parent / "models" / "digits_mlp.onnx"


@pytest.fixture
def on_device(monkeypatch):
    monkeypatch.setattr(_device, "RESIDENT_ON_CPU", True)


@pytest.fixture
def host_reads(monkeypatch):
    """Counts every read of a parameter back from its device copy."""
    reads = []
    original = _network.Parameter._sync_host

    def counted(self):
        reads.append(self.name)
        original(self)

    monkeypatch.setattr(_network.Parameter, "_sync_host", counted)
    return reads


def _digits_cell():
    loss = onnxgrad.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    return onnxgrad.nn.WithLossCell(onnxgrad.load(str(DIGITS)), loss)


def _batch(seed=0, n=16):
    rng = np.random.default_rng(seed)
    return rng.random((n, 64), dtype=np.float32), rng.integers(0, 10, n).astype(np.int32)


def _fvg(cell):
    params = onnxgrad.ParameterTuple(cell.trainable_params())
    return onnxgrad.ForwardValueAndGrad(cell, params, get_all=True, get_by_list=True), params


def _flat(result):
    value, (inputs, weights) = result
    return [value, *inputs, *weights]


def _assert_same(got, want, label):
    assert len(got) == len(want), label
    for k, (g, w) in enumerate(zip(got, want)):
        g = g.numpy() if _device.is_ortvalue(g) else g
        assert isinstance(g, np.ndarray) and g.dtype == w.dtype and g.shape == w.shape, f"{label}[{k}]"
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7, err_msg=f"{label}[{k}]")


def test_device_session_matches_the_host_path_for_every_gradient(on_device):
    x, y = _batch()
    host_fvg, _ = _fvg(_digits_cell())
    _device.RESIDENT_ON_CPU = False
    want = _flat(host_fvg(x, y))
    _device.RESIDENT_ON_CPU = True
    fvg, params = _fvg(_digits_cell())
    got = _flat(fvg(x, y))
    assert all(isinstance(g, np.ndarray) for g in got), "host arrays in, host arrays out"
    _assert_same(got, want, "numpy in")
    assert all(p._mirror is not None for p in params), "parameters were not placed on the device"

    as_device = _flat(fvg(_device.to_device(x, _device.CPU), _device.to_device(y, _device.CPU)))
    assert all(_device.is_ortvalue(g) for g in as_device), "OrtValues in, OrtValues out"
    _assert_same(as_device, want, "OrtValues in")


def test_ortvalues_in_give_ortvalues_out_on_the_host_path_too():
    x, y = _batch()
    fvg, _ = _fvg(_digits_cell())
    want = _flat(fvg(x, y))
    got = _flat(fvg(ort.OrtValue.ortvalue_from_numpy(x), ort.OrtValue.ortvalue_from_numpy(y)))
    assert all(_device.is_ortvalue(g) for g in got)
    _assert_same(got, want, "OrtValues on the CPU path")


def test_sensitivity_as_an_ortvalue(on_device):
    net = onnxgrad.load(str(DIGITS))
    x, _ = _batch()
    sens = np.random.default_rng(3).normal(size=(16, 10)).astype(np.float32)
    fvg = onnxgrad.ForwardValueAndGrad(net, net.trainable_params(), get_all=True, get_by_list=True, sens_param=True)
    want = _flat(fvg(x, sens))
    got = _flat(fvg(_device.to_device(x, _device.CPU), _device.to_device(sens, _device.CPU)))
    _assert_same(got, want, "sens as OrtValue")


def test_host_writes_reach_the_device_copy(on_device):
    cell = _digits_cell()
    fvg, params = _fvg(cell)
    x, y = _batch()
    before = float(fvg(x, y)[0])
    params[0].value[:] = 0.0  # in place, through the live buffer
    zeroed = float(fvg(x, y)[0])
    assert zeroed != before
    params[0].set_data(np.ones(params[0].shape, np.float32))
    ones = float(fvg(x, y)[0])
    assert ones not in (before, zeroed)
    _device.RESIDENT_ON_CPU = False
    host_fvg, host_params = _fvg(_digits_cell())
    host_params[0].set_data(np.ones(params[0].shape, np.float32))
    np.testing.assert_allclose(ones, float(host_fvg(x, y)[0]), rtol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_device_step_matches_the_host_step_and_the_reference(case, host_reads):
    host = [onnxgrad.Parameter(v, n) for n, v in start_values().items()]
    device = [onnxgrad.Parameter(v, n) for n, v in start_values().items()]
    host_opt, device_opt = case.ours(host), case.ours(device)
    expected = case.reference()
    for step, grads in enumerate(step_grads(), 1):
        host_opt.step(grads)
        device_opt.step([_device.to_device(g, _device.CPU) for g in grads])
        assert all(p._host_stale for p in device), "the device step copied weights to the host"
        assert not host_reads
        for p, q, want in zip(host, device, expected[step - 1]):
            label = f"{case.name} step {step} {p.name}"
            np.testing.assert_allclose(q._mirror.numpy(), p.value, rtol=1e-6, atol=1e-7, err_msg=label)
            np.testing.assert_allclose(q._mirror.numpy(), want, rtol=case.rtol, atol=case.atol, err_msg=label)
    for p, q in zip(host, device):
        np.testing.assert_allclose(q.value, p.value, rtol=1e-6, atol=1e-7)  # read back on request
    assert sorted(host_reads) == sorted(SHAPES)
    device_state = device_opt.state_dict()
    for key, want in host_opt.state_dict().items():
        if want.dtype.kind == "f":
            np.testing.assert_allclose(device_state[key], want, rtol=1e-6, atol=1e-7, err_msg=key)
        else:
            np.testing.assert_array_equal(device_state[key], want, err_msg=key)


def test_host_and_device_steps_mix(host_reads):
    grads = step_grads()
    host = [onnxgrad.Parameter(v, n) for n, v in start_values().items()]
    mixed = [onnxgrad.Parameter(v, n) for n, v in start_values().items()]
    host_opt, mixed_opt = optim.Adam(host, 1e-2), optim.Adam(mixed, 1e-2)
    for step, g in enumerate(grads):
        host_opt.step(g)
        mixed_opt.step([_device.to_device(a, _device.CPU) for a in g] if step % 2 else g)
    for p, q in zip(host, mixed):
        np.testing.assert_allclose(q.value, p.value, rtol=1e-6, atol=1e-7, err_msg=p.name)


def test_a_device_training_step_keeps_weights_on_the_device(on_device, host_reads):
    cell = _digits_cell()
    params = onnxgrad.ParameterTuple(cell.trainable_params())
    fvg = onnxgrad.ForwardValueAndGrad(cell, params, get_by_list=True)
    opt = optim.Adam(params, 1e-2)
    x, y = _batch()
    xd, yd = _device.to_device(x, _device.CPU), _device.to_device(y, _device.CPU)
    first = float(fvg(xd, yd)[0].numpy())
    bound = [p._mirror for p in params]
    for _ in range(20):
        loss, grads = fvg(xd, yd)
        opt.step(grads)
    assert not host_reads, f"weights crossed to the host: {host_reads}"
    assert all(p._mirror is not b for p, b in zip(params, bound))
    assert float(loss.numpy()) < first / 2
    # A host-path session over the same parameters (another config: another session) sees the device's values.
    _device.RESIDENT_ON_CPU = False
    config = {"session.intra_op.allow_spinning": "0"}
    host_loss = float(onnxgrad.ForwardValueAndGrad(cell, params, get_by_list=True, session_config=config)(x, y)[0])
    assert sorted(host_reads) == sorted(p.name for p in params)
    _device.RESIDENT_ON_CPU = True
    np.testing.assert_allclose(host_loss, float(fvg(x, y)[0]), rtol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_train_on_a_device_matches_training_on_the_host(optimizer, monkeypatch, tmp_path):
    pytest.importorskip("sklearn", reason="the digits data is in the train extra")

    def run(resident: bool, out: str):
        monkeypatch.setattr(_device, "RESIDENT_ON_CPU", resident)
        config = _train.TrainConfig(
            epochs=2, batch_size=64, optimizer=optimizer, weight_decay=0.01, nesterov=optimizer != "adam",
            momentum=None if optimizer == "adam" else 0.9,
            out_dir=str(tmp_path / out),
        )
        return _train.train(config)

    host, device = run(False, "host"), run(True, "device")
    for a, b in zip(host.history, device.history):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, err_msg=key)
    want = np.load(host.checkpoint_path)
    got = np.load(device.checkpoint_path)
    assert sorted(want.files) == sorted(got.files)
    for key in want.files:
        if want[key].dtype.kind == "f":
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_unknown_provider_is_refused_with_the_package_to_install():
    pytest.importorskip("sklearn", reason="the digits data is in the train extra")  # read before the provider
    with pytest.raises(onnxgrad.InputError, match=r"CUDAExecutionProvider.*onnxgrad\[cuda\]"):
        _train.train(_train.TrainConfig(epochs=1, provider="CUDAExecutionProvider"))


@pytest.mark.parametrize(
    ("providers", "device"),
    [
        (["CPUExecutionProvider"], ("cpu", 0)),
        (["CUDAExecutionProvider", "CPUExecutionProvider"], ("cuda", 0)),
        ([("CUDAExecutionProvider", {"device_id": 1})], ("cuda", 1)),
        (["CANNExecutionProvider", "CPUExecutionProvider"], ("cann", 0)),
    ],
)
def test_device_of_providers(providers, device):
    assert _device.device_of(providers) == device
    assert _device.resident(device) == (device[0] != "cpu")
    assert _device.device_of(_device.provider_for(device)) == device
