"""Importing onnxruntime without importing PyTorch.

onnxruntime-training's ``__init__`` probes ``onnxruntime.training.ortmodule``,
which imports torch when torch is installed: seconds of start-up, and a
framework in a core that must not import one. The probe only serves ORTModule,
which onnxgrad never uses, so it is made to fail fast during the import and
``onnxruntime.training`` stays importable afterwards.
"""

from __future__ import annotations

import sys

__all__ = ["ort", "pybind"]


def _import_onnxruntime():
    if "onnxruntime" in sys.modules:
        return sys.modules["onnxruntime"]
    blocked = "onnxruntime.training" not in sys.modules
    if blocked:
        sys.modules["onnxruntime.training"] = None  # an import of it raises ImportError at once
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(
            "onnxgrad needs one onnxruntime package: pip install 'onnxgrad[cpu]' (or [cuda], [cann]); "
            "see the README."
        ) from err
    finally:
        if blocked and sys.modules.get("onnxruntime.training", 0) is None:
            del sys.modules["onnxruntime.training"]
    return onnxruntime


ort = _import_onnxruntime()

from onnxruntime.capi import _pybind_state as pybind  # noqa: E402
