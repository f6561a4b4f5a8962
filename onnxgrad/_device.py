"""Where tensors live: the device a provider list runs on, and tensors there.

On the CPU, sessions read parameters straight from their numpy buffers. On a
device (CUDA, CANN) every :class:`~onnxgrad.Parameter` keeps a copy there, an
``onnxruntime.OrtValue`` bound to the sessions; it is uploaded again only after
the host buffer was written or handed out (``Parameter.value``), and read back
only when the host asks. Call arguments and results follow the caller: numpy
arrays cross to the host, OrtValues stay where they are.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx

from onnxgrad._ort import ort

__all__ = ["Device", "CPU", "device_of", "provider_for", "resident", "is_ortvalue", "to_device", "wrap", "to_host",
           "shape_and_dtype", "zeros"]

Device = tuple[str, int]
CPU: Device = ("cpu", 0)

_DEVICE_TYPES = {"CUDAExecutionProvider": "cuda", "CANNExecutionProvider": "cann"}
_PROVIDERS = {kind: name for name, kind in _DEVICE_TYPES.items()}

#: Treat the CPU like a device: parameters mirrored into OrtValues, results bound
#: as OrtValues. Only for tests, which run the device code path on the CPU EP.
RESIDENT_ON_CPU = False


def device_of(providers: Sequence[Any]) -> Device:
    """The device of the first (preferred) provider: ``("cuda", 0)``, ``("cann", 0)`` or ``("cpu", 0)``."""
    first = providers[0]
    name, options = (first[0], dict(first[1])) if isinstance(first, tuple) else (first, {})
    kind = _DEVICE_TYPES.get(name)
    if kind is None:
        return CPU
    return kind, int(options.get("device_id", 0))


def provider_for(device: Device) -> list:
    """A provider list that runs on ``device``, falling back to the CPU for missing kernels."""
    name = _PROVIDERS.get(device[0])
    if name is None:
        return ["CPUExecutionProvider"]
    return [(name, {"device_id": str(device[1])}), "CPUExecutionProvider"]


def resident(device: Device) -> bool:
    """Whether parameters live on ``device`` as OrtValues (every device but the CPU)."""
    return device != CPU or RESIDENT_ON_CPU


def is_ortvalue(value: Any) -> bool:
    """Whether ``value`` is an ``onnxruntime.OrtValue``."""
    return isinstance(value, ort.OrtValue)


def to_device(array: np.ndarray, device: Device) -> Any:
    """A new OrtValue on ``device`` holding a copy of ``array``."""
    if device[0] == "cpu":
        array = np.array(array, order="C", copy=True)  # own memory, never the caller's buffer
    return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device[0], device[1])


def wrap(array: np.ndarray) -> Any:
    """An OrtValue on the CPU over ``array``'s own memory (no copy): for fresh results only."""
    return ort.OrtValue.ortvalue_from_numpy(array)


def to_host(value: Any) -> np.ndarray:
    """A numpy copy of an OrtValue (arrays pass through)."""
    return value.numpy() if is_ortvalue(value) else value


_ONNX_TYPES = {f"tensor({onnx.helper.tensor_dtype_to_string(t)[len('TensorProto.'):].lower()})": t
               for t in onnx.helper.get_all_tensor_dtypes()}


def shape_and_dtype(value: Any) -> tuple[tuple[int, ...], np.dtype | None]:
    """The shape and numpy dtype of a numpy array or a tensor OrtValue (dtype None if not a tensor)."""
    if not is_ortvalue(value):
        return value.shape, value.dtype
    elem = _ONNX_TYPES.get(value.data_type())
    if elem is None:
        return (), None
    return tuple(value.shape()), np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))


def zeros(shape: Sequence[int], dtype: np.dtype, device: Device) -> Any:
    """A zero-filled OrtValue on ``device``."""
    return to_device(np.zeros(shape, dtype), device)
