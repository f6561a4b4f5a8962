"""Every docstring example in onnxgrad runs as written, and shows what it prints.

The examples assume what a reader has after ``import numpy as np`` and ``import onnxgrad``,
run from the repository root (they read ``models/``). An example that needs a framework or
an extra is skipped where it is missing, named in :data:`REQUIRES`.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import io
import pathlib
import pkgutil

import numpy as np
import pytest

import onnxgrad

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: Examples (module, or module.qualname) -> the module they import that may be absent.
REQUIRES = {
    "onnxgrad.converters.torch": "torch",
    "onnxgrad.converters.mindspore": "mindspore",
    "onnxgrad._train.loop.train": "sklearn",
}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules_with_examples() -> list[str]:
    """onnxgrad's modules whose source holds an example; others are not imported."""
    import onnxgrad.converters  # its own folder (converters/), not under onnxgrad/

    found = []
    infos = [*pkgutil.walk_packages(onnxgrad.__path__, "onnxgrad."),
             *pkgutil.walk_packages(onnxgrad.converters.__path__, "onnxgrad.converters.")]
    for info in infos:
        spec = importlib.util.find_spec(info.name)
        origin = spec.origin if spec else None
        if origin and origin.endswith(".py") and ">>>" in pathlib.Path(origin).read_text(encoding="utf-8"):
            found.append(info.name)
    return sorted(found)


class _Finder(doctest.DocTestFinder):
    """Also finds the examples of names a public module re-exports under its own ``__module__``
    (``onnxgrad.load`` is defined in ``onnxgrad._network``): by where their code was defined."""

    def _from_module(self, module, object):  # noqa: A002 (doctest's own name)
        if inspect.isfunction(object):
            return object.__globals__ is module.__dict__
        if inspect.isclass(object) and object.__module__ != module.__name__:
            return any(getattr(f, "__globals__", None) is module.__dict__ for f in vars(object).values())
        return super()._from_module(module, object)


def _examples() -> list:
    params = []
    for name in _modules_with_examples():
        for test in _Finder().find(importlib.import_module(name)):
            if test.examples:
                params.append(pytest.param(name, test.name, id=test.name))
    return params


@pytest.mark.parametrize(("module_name", "test_name"), _examples())
def test_docstring_example_runs(module_name, test_name, tmp_path, monkeypatch):
    for key in (module_name, test_name):
        if key in REQUIRES:
            pytest.importorskip(REQUIRES[key])
    (tmp_path / "models").symlink_to(ROOT / "models")
    monkeypatch.chdir(tmp_path)  # examples read models/ and may write (runs/): never into the repository
    [test] = [t for t in _Finder().find(importlib.import_module(module_name)) if t.name == test_name]
    test.globs.update({"np": np, "onnxgrad": onnxgrad})
    out = io.StringIO()
    result = doctest.DocTestRunner(optionflags=FLAGS).run(test, out=out.write)
    assert result.failed == 0, f"{test_name} (in {test.filename}:{test.lineno}) failed:\n{out.getvalue()}"
