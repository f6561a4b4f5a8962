"""The public surface: every name in __all__ exists and is documented, and the
core imports no framework."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import onnxgrad
import onnxgrad.nn
import onnxgrad.optim
import onnxgrad.testing

PUBLIC_MODULES = [onnxgrad, onnxgrad.nn, onnxgrad.optim, onnxgrad.testing]
EXPECTED = {
    "load", "Network", "Parameter", "ParameterTuple", "ForwardValueAndGrad", "value_and_grad", "nn",
    "OnnxGradError", "ConversionError", "GradientBuildError", "UnsupportedGradientError", "InputError",
}


def test_contract_names_are_public():
    missing = EXPECTED - set(onnxgrad.__all__)
    assert not missing, f"add {sorted(missing)} to onnxgrad.__all__ (onnxgrad/__init__.py)"


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_every_public_name_exists_and_has_a_docstring(module):
    for name in module.__all__:
        assert hasattr(module, name), f"{module.__name__}.__all__ lists {name!r} but the module lacks it: import it"
        obj = getattr(module, name)
        if callable(obj) or inspect.ismodule(obj):  # data constants are documented by #: comments
            assert (obj.__doc__ or "").strip(), f"{module.__name__}.{name} needs a docstring"


def test_errors_share_one_base():
    for name in ("ModelError", "ConversionError", "GradientBuildError", "UnsupportedGradientError", "InputError"):
        assert issubclass(getattr(onnxgrad, name), onnxgrad.OnnxGradError)


def test_core_imports_no_framework():
    code = (
        "import sys, onnxgrad, onnxgrad.nn, onnxgrad.converters, onnxgrad.converters.mindspore, "
        "onnxgrad.converters.torch; bad = {'mindspore', 'torch'} & set(sys.modules); "
        "print(sorted(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"importing onnxgrad pulled in frameworks: {result.stdout}{result.stderr}"
