"""The test suite's own rules: shared pieces live in tests/_support, cases are seeded by name,
and every tolerance says why."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from _support import sensitivity, tolerances

TESTS = pathlib.Path(__file__).resolve().parent
TEST_MODULES = sorted(TESTS.glob("test_*.py"))


def _imported_modules(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", TEST_MODULES, ids=lambda p: p.name)
def test_no_test_module_imports_another(path):
    imported = _imported_modules(ast.parse(path.read_text(encoding="utf-8")))
    others = sorted(name for name in imported if name.startswith("test_"))
    assert not others, f"{path.name} imports {others}: move what they share into tests/_support"


@pytest.mark.parametrize("path", TEST_MODULES, ids=lambda p: p.name)
def test_no_module_level_random_generator(path):
    # One generator shared by a module's tests makes each test's inputs depend on which ran before it.
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call):
            call = ast.unparse(node.value.func)
            assert not call.endswith(("default_rng", "RandomState", "Random")), (
                f"{path.name}:{node.lineno} binds a module-level generator ({call}): seed each case, e.g. "
                f"_support.sensitivity.rng_for(case_name)"
            )


def test_every_tolerance_has_a_reason_and_a_float_dtype():
    for (reference, dtype), tolerance in tolerances.TOLERANCES.items():
        assert tolerance.reason.strip(), f"{reference}/{dtype}: say why this much"
        assert np.issubdtype(dtype, np.floating) and 0 <= tolerance.atol and 0 <= tolerance.rtol < 1


def test_a_case_entry_overrides_its_reference_and_a_missing_entry_is_an_error():
    assert tolerances.tolerance("torch", "layernorm").atol > tolerances.tolerance("torch").atol
    assert tolerances.tolerance("torch", "not_a_case") == tolerances.tolerance("torch")
    with pytest.raises(KeyError):
        tolerances.tolerance("torch", dtype=np.float16)


def test_case_seeds_follow_the_name_not_the_order():
    first = sensitivity.rng_for("net", "sum").normal(size=3)
    sensitivity.rng_for("other").normal(size=100)
    np.testing.assert_array_equal(sensitivity.rng_for("net", "sum").normal(size=3), first)
    assert sensitivity.seed_for("net", "sum") != sensitivity.seed_for("net", "mean")


def test_random_sens_is_shaped_typed_and_nested_like_the_outputs():
    outputs = (np.zeros((2, 3), np.float32), [np.zeros(4, np.float64)])
    sens = sensitivity.random_sens(outputs, 7)
    assert isinstance(sens, tuple) and isinstance(sens[1], list)
    assert sens[0].shape == (2, 3) and sens[0].dtype == np.float32 and sens[1][0].dtype == np.float64
    # Leaves are drawn depth first from one generator: what the recorded references were made with.
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(sens[0], rng.normal(size=(2, 3)).astype(np.float32))
    np.testing.assert_array_equal(sens[1][0], rng.normal(size=4))
    assert sensitivity.random_sens(np.zeros(2, np.float32), 1, wrap=list) == list(
        np.random.default_rng(1).normal(size=2).astype(np.float32)
    )
