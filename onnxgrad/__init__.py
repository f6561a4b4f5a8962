"""onnxgrad: forward values and gradients of ONNX graphs on ONNX Runtime.

The public surface; the implementation lives in private modules.
"""

from onnxgrad import nn, optim
from onnxgrad._api import ForwardValueAndGrad, value_and_grad
from onnxgrad._graph import TensorInfo
from onnxgrad._network import Network, Parameter, ParameterTuple, load
from onnxgrad._public import claim_exports as _claim_exports
from onnxgrad.errors import (
    ConversionError,
    GradientBuildError,
    InputError,
    ModelError,
    OnnxGradError,
    RuntimeFailure,
    UnsupportedGradientError,
)

__version__ = "0.1.0"

# After the names testing imports from the package; `onnxgrad.testing` then works without its own import.
from onnxgrad import testing  # noqa: E402

__all__ = [
    # networks
    "load",
    "Network",
    "Parameter",
    "ParameterTuple",
    "TensorInfo",
    "nn",
    # training
    "optim",
    # testing
    "testing",
    # gradients
    "ForwardValueAndGrad",
    "value_and_grad",
    # errors
    "OnnxGradError",
    "ModelError",
    "ConversionError",
    "GradientBuildError",
    "UnsupportedGradientError",
    "InputError",
    "RuntimeFailure",
]

_claim_exports(globals())
