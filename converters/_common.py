"""Checks both front-ends make on an exported parameter map."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxgrad._fold import fold_static_shapes  # in the core: the ONNX route folds too

__all__ = ["fold_static_shapes", "initializer_mismatch", "rearranged_copy"]


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.inexact)))


def initializer_mismatch(value: np.ndarray, initializer: onnx.TensorProto) -> str | None:
    """None when ``initializer`` holds exactly ``value``; otherwise what differs, in words."""
    array = numpy_helper.to_array(initializer)
    if array.shape != value.shape or array.dtype != value.dtype:
        return f"its initializer is {array.dtype}{list(array.shape)}, the parameter {value.dtype}{list(value.shape)}"
    if not _same_values(array, value):
        return "its initializer holds other values"
    return None


def rearranged_copy(value: np.ndarray, candidates: Sequence[onnx.TensorProto]) -> str | None:
    """The name of an initializer holding ``value``'s elements in another shape or order."""
    flat = np.sort(value, axis=None)
    if flat.size < 2 or flat[0] == flat[-1]:
        return None  # a constant-valued parameter matches any constant; proves nothing
    for candidate in candidates:
        if candidate.data_type != helper.np_dtype_to_tensor_dtype(value.dtype):
            continue
        array = numpy_helper.to_array(candidate)
        if array.size == value.size and _same_values(np.sort(array, axis=None), flat):
            return candidate.name
    return None
