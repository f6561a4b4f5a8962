"""Concurrent calls: one ForwardValueAndGrad (and one Network) called from many threads at once
gives every thread the results a serial call gives it."""

from __future__ import annotations

import concurrent.futures
import pathlib

import numpy as np
import pytest

import onnxgrad
from onnxgrad import _device

DIGITS = pathlib.Path(__file__).resolve().parent.parent / "models" / "digits_mlp.onnx"
THREADS = 8
CALLS = 25


def _cell():
    loss = onnxgrad.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    return onnxgrad.nn.WithLossCell(onnxgrad.load(str(DIGITS)), loss)


def _batches(count: int, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    # Batch sizes 16 and 256: both the per-call output binding and the preallocated results.
    return [(rng.random((n, 64), dtype=np.float32), rng.integers(0, 10, n).astype(np.int32)) for _ in range(count)]


def _flat(result) -> list[np.ndarray]:
    value, (inputs, weights) = result
    return [value, *inputs, *weights]


@pytest.mark.parametrize("rows", [16, 256])
@pytest.mark.parametrize("resident", [False, True], ids=["host", "device-path"])
def test_one_forward_value_and_grad_from_many_threads(rows, resident, monkeypatch):
    monkeypatch.setattr(_device, "RESIDENT_ON_CPU", resident)
    cell = _cell()
    fvg = onnxgrad.ForwardValueAndGrad(cell, cell.trainable_params(), get_all=True, get_by_list=True)
    batches = _batches(THREADS * CALLS, rows)
    expected = [_flat(fvg(x, y)) for x, y in batches]  # serial, on this thread

    def work(index: int) -> list[np.ndarray]:
        x, y = batches[index]
        return _flat(fvg(x, y))

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        got = list(pool.map(work, range(len(batches))))
    for k, (g, e) in enumerate(zip(got, expected)):
        for a, b in zip(g, e):
            np.testing.assert_array_equal(a, b, err_msg=f"call {k}")


def test_eight_thousand_calls_from_eight_threads_match_serial_calls():
    # The bar: 8,000 concurrent calls, each equal to the serial call on the same batch.
    cell = _cell()
    fvg = onnxgrad.ForwardValueAndGrad(cell, cell.trainable_params(), get_all=True, get_by_list=True)
    batches = _batches(40, 16)
    expected = [_flat(fvg(x, y)) for x, y in batches]

    def work(index: int) -> int:
        x, y = batches[index % len(batches)]
        for a, b in zip(_flat(fvg(x, y)), expected[index % len(batches)]):
            np.testing.assert_array_equal(a, b, err_msg=f"call {index}")
        return index

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        assert len(list(pool.map(work, range(8000)))) == 8000


def test_network_forward_from_many_threads():
    net = onnxgrad.load(str(DIGITS))
    xs = [x for x, _ in _batches(THREADS * CALLS, 32)]
    expected = [net(x) for x in xs]
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        got = list(pool.map(net, xs))
    for k, (g, e) in enumerate(zip(got, expected)):
        np.testing.assert_array_equal(g, e, err_msg=f"call {k}")


def test_first_calls_race_to_build():
    # Many threads make the first call (build, cache, compile) at once.
    cell = _cell()
    fvg = onnxgrad.ForwardValueAndGrad(cell, cell.trainable_params(), get_by_list=True)
    x, y = _batches(1, 8)[0]
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda _: fvg(x, y), range(THREADS)))
    loss, grads = results[0]
    for other_loss, other_grads in results[1:]:
        np.testing.assert_array_equal(other_loss, loss)
        for a, b in zip(other_grads, grads):
            np.testing.assert_array_equal(a, b)
