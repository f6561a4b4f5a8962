"""The public surface: every name in __all__ exists and is documented, no public
name leaks from a private module, and the core imports no framework."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import onnxgrad
import onnxgrad.nn
import onnxgrad.optim
import onnxgrad.testing

PUBLIC_MODULES = [onnxgrad, onnxgrad.nn, onnxgrad.optim, onnxgrad.testing]
#: Every module a user may import (none of its dotted parts starts with an underscore); the
#: converters import their framework lazily, so importing them needs neither.
PUBLIC_MODULE_NAMES = [
    "onnxgrad", "onnxgrad.nn", "onnxgrad.optim", "onnxgrad.testing", "onnxgrad.errors", "onnxgrad.distributed",
    "onnxgrad.cli", "onnxgrad.converters", "onnxgrad.converters.torch", "onnxgrad.converters.mindspore",
]
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



def _is_private(module_name: str) -> bool:
    return any(part.startswith("_") for part in module_name.split("."))


def _onnxgrad_objects(module) -> dict[str, object]:
    """The module's public names bound to onnxgrad's own classes and functions (not modules, constants
    or other packages' names)."""
    found = {}
    for name, obj in vars(module).items():
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if (getattr(obj, "__module__", None) or "").split(".")[0] == "onnxgrad":
            found[name] = obj
    return found


@pytest.mark.parametrize("module_name", PUBLIC_MODULE_NAMES)
def test_no_public_name_leaks_from_a_private_module(module_name):
    module = importlib.import_module(module_name)
    exported = set(getattr(module, "__all__", ()))
    # A name imported for the module's own use is fine where a public module exports the same object.
    exported_anywhere = {
        id(getattr(m, n)) for m in map(importlib.import_module, PUBLIC_MODULE_NAMES) for n in getattr(m, "__all__", ())
    }
    for name, obj in _onnxgrad_objects(module).items():
        if name in exported:
            assert not _is_private(obj.__module__), (
                f"{module_name}.{name}.__module__ is {obj.__module__!r}, a private module: set it to "
                f"{module_name!r} where {module_name} re-exports it (see onnxgrad/__init__.py)"
            )
        else:
            assert id(obj) in exported_anywhere, (
                f"{module_name}.{name} (from {obj.__module__}) is public by name but in no __all__: add it to "
                f"{module_name}.__all__, or import it under a leading underscore (or its module: from onnxgrad "
                f"import _x)"
            )
