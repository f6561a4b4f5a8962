"""The exceptions onnxgrad raises.

Every error derives from :class:`OnnxGradError`, and every message ends with a
hint on how to fix the problem. Errors raised while wrapping an ONNX Runtime or
protobuf failure keep that failure as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "OnnxGradError",
    "ModelError",
    "ConversionError",
    "GradientBuildError",
    "UnsupportedGradientError",
    "InputError",
    "RuntimeFailure",
]


class OnnxGradError(Exception):
    """Base class of every error onnxgrad raises on purpose."""


class ModelError(OnnxGradError, ValueError):
    """The model file or ModelProto cannot be read, checked or converted to a supported IR/opset."""


class ConversionError(OnnxGradError):
    """A framework object (MindSpore Cell, PyTorch module) could not be converted to ONNX."""


class GradientBuildError(OnnxGradError):
    """onnxruntime-training could not build the gradient graph."""


class UnsupportedGradientError(GradientBuildError):
    """A node on the path from the differentiated tensors to the outputs has no gradient.

    Attributes:
        op_type: the op without a gradient (empty when unknown).
        node: the node's name (empty when the node is unnamed or unknown).
    """

    def __init__(self, message: str, op_type: str = "", node: str = "") -> None:
        super().__init__(message)
        self.op_type = op_type
        self.node = node


class InputError(OnnxGradError, ValueError):
    """Call arguments, flags or weights do not match what the network expects."""


class RuntimeFailure(OnnxGradError, RuntimeError):
    """ONNX Runtime failed while creating a session or running the graph."""
