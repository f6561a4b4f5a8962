"""A bounded slice of ``scripts/fuzz.py`` under Hypothesis: mutated models (flipped bytes, dropped,
duplicated or retyped nodes and values, renamed tensors, changed attributes and opsets, one-op
models from the ONNX schemas) and argument sets through ``load``, ``inspect`` and a
``ForwardValueAndGrad`` call raise nothing but ``OnnxGradError`` subclasses.

The full run (10,000 cases in guarded worker processes, crashes and hangs counted) is
``python scripts/fuzz.py -n 10000``; this slice runs in-process, so a crash fails the suite."""

from __future__ import annotations

import importlib.util
import random
import warnings
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the dev extra")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_SPEC = importlib.util.spec_from_file_location("fuzz", Path(__file__).resolve().parent.parent / "scripts" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fuzz)

SEEDS = fuzz.seed_models()


@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False))
def test_mutated_models_raise_only_typed_errors(rng: random.Random, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "m.onnx"
    path.write_bytes(fuzz.make_mutant(SEEDS, rng))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's overflow warnings on random arguments are not findings
        result = fuzz.classify(str(path), rng)
    assert result["kind"] in ("typed", "ok"), result["detail"]


def test_the_fuzzer_reports_an_untyped_error(monkeypatch):
    # The check above can fail: a case that raises outside OnnxGradError is reported as "other".
    def boom(path, rng):
        raise KeyError("x")

    monkeypatch.setattr(fuzz, "run_case", boom)
    result = fuzz.classify("m.onnx", random.Random(0))
    assert result["kind"] == "other" and result["detail"].startswith("KeyError")
