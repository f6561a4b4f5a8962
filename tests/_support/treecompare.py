"""Comparing nested results (tuples of arrays) from onnxgrad, MindSpore and PyTorch."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(leaf: Any) -> Any:
    """A numpy array for a framework tensor; other leaves unchanged."""
    if hasattr(leaf, "asnumpy"):  # MindSpore Tensor
        return leaf.asnumpy()
    if hasattr(leaf, "detach"):  # torch.Tensor
        return leaf.detach().cpu().numpy()
    return leaf


def assert_trees_close(actual: Any, expected: Any, rtol: float = 1e-5, atol: float = 1e-6, path: str = "result"):
    """Asserts the same nesting, then per leaf the same shape, dtype and close values.

    Tuples and lists must match in type and length; leaves are arrays (or
    framework tensors), ints and strings (ids from return_ids).
    """
    expected = to_numpy(expected)
    actual = to_numpy(actual)
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, tuple), f"{path}: expected a tuple, got {type(actual).__name__}"
        assert len(actual) == len(expected), f"{path}: expected {len(expected)} items, got {len(actual)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_trees_close(a, e, rtol, atol, f"{path}[{i}]")
        return
    if isinstance(expected, (int, str)) and not isinstance(expected, bool):
        assert actual == expected, f"{path}: expected {expected!r}, got {actual!r}"
        return
    assert isinstance(actual, np.ndarray), f"{path}: expected an array, got {type(actual).__name__}"
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{path}: shape {actual.shape} != expected {expected.shape}"
    assert actual.dtype == expected.dtype, f"{path}: dtype {actual.dtype} != expected {expected.dtype}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=path)
