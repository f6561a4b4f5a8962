"""Smoke test of the benchmark (``python -m scripts.benchmarks``) on the tiny model (the seed example).

The benchmark's cross-check must hold: onnxgrad's loss and gradients equal raw
ONNX Runtime's on the same gradient graph, and PyTorch's. No timing is asserted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from scripts.benchmarks import common, models, real, systems

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: The benchmark's command line, run from the repository root.
COMMAND = [sys.executable, "-m", "scripts.benchmarks"]


def _results(system: str) -> dict[str, np.ndarray]:
    """The system's first-call results on the tiny model, built in this process."""
    return systems.setup(system, "tiny", threads=2).prime()


@pytest.fixture(scope="module")
def raw_ort() -> dict[str, np.ndarray]:
    return _results("ort")


def test_raw_ort_reference_is_the_seed_result(raw_ort):
    # MindSpore's printed result for the seed example (see test_seed.py).
    assert sorted(raw_ort) == ["loss", "weight", "x"]
    np.testing.assert_array_equal(raw_ort["loss"], np.array([0.0], np.float32))
    np.testing.assert_array_equal(raw_ort["x"], np.array([[1.0, 1.0]], np.float32))
    np.testing.assert_array_equal(raw_ort["weight"], np.full([2, 2], 0.5, np.float32))


def test_onnxgrad_matches_raw_ort(raw_ort):
    assert common.compare(raw_ort, _results("onnxgrad")) == []


def test_pytorch_matches_raw_ort(raw_ort):
    pytest.importorskip("torch", reason="PyTorch is optional")
    assert common.compare(raw_ort, _results("torch")) == []


def test_threaded_batch_spreads_the_calls_over_the_threads():
    import threading

    together, local, seen = threading.Barrier(3, timeout=30), threading.local(), []

    def call():
        if not hasattr(local, "met"):  # the three threads' first calls wait for each other: they run at once
            local.met = together.wait() is not None
        seen.append(threading.current_thread().name)
        return len(seen)

    batch = systems._threaded_batch(call, 3)
    assert len(batch(7)) == 3  # one last result per thread
    assert len(seen) == 7 and len(set(seen)) == 3
    assert systems._same_results((np.ones(2), [np.zeros(1)]), (np.ones(2), [np.zeros(1)]))
    assert not systems._same_results((np.ones(2), [np.zeros(1)]), (np.ones(2), [np.ones(1)]))


def test_compare_names_each_mismatching_tensor():
    reference = {"loss": np.zeros([1], np.float32), "fc.weight": np.ones([2, 2], np.float32)}
    other = {"loss": np.zeros([], np.float32), "fc.weight": np.full([2, 2], 1.1, np.float32)}
    problems = common.compare(reference, other)
    assert problems[0] == "loss: shape [], expected [1]"
    assert problems[1].startswith("grad[fc.weight]: max abs err 0.1")
    assert common.compare(reference, {}) == ["loss: missing", "grad[fc.weight]: missing"]


def test_command_line_run_on_tiny(tmp_path):
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [*COMMAND, "--quick", "--models", "tiny", "--systems", "onnxgrad,ort", "--rounds", "2",
         "--batch-seconds", "0.002", "--no-gemm", "--caller-threads", "3", "--json", str(report_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    assert "| tiny: the seed's Net + loss |" in completed.stdout
    report = json.loads(report_path.read_text())
    systems = report["models"]["tiny"]["systems"]
    assert systems["ort"]["check"] == "reference"
    assert systems["onnxgrad"]["check"] == "ok"
    for timer in ("onnxgrad", "onnxgrad_threads", "ort", "ort_iobinding", "ort_forward"):
        assert len(systems[timer]["samples_ms"]) == 2
        assert systems[timer]["median_ms"] > 0
    assert systems["onnxgrad"]["info"]["caller_threads"] == 3
    derived = report["models"]["tiny"]["derived"]
    assert derived["onnxgrad_over_ort"] > 0 and derived["threads_over_single"] > 0
    assert "onnxgrad FVG, threads: 3 threads call one ForwardValueAndGrad" in completed.stdout


def _plain_python() -> str | None:
    from onnxgrad import _builder_env

    if not _builder_env.in_process():
        return sys.executable  # this environment's onnxruntime is a plain one
    return os.environ.get("ONNXGRAD_BENCH_PLAIN_PYTHON")


def test_plain_onnxruntime_column(tmp_path):
    python = _plain_python()
    if python is None:
        pytest.skip("no Python with plain onnxruntime: set ONNXGRAD_BENCH_PLAIN_PYTHON (.ci/run does)")
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [*COMMAND, "--quick", "--models", "tiny", "--systems", "onnxgrad,onnxgrad_plain,ort",
         "--rounds", "2", "--batch-seconds", "0.002", "--no-gemm", "--plain-python", python,
         "--json", str(report_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(report_path.read_text())
    plain = report["models"]["tiny"]["systems"]["onnxgrad_plain"]
    assert plain["check"] == "ok", plain
    assert "training" not in plain["info"]["onnxruntime"]
    assert len(plain["samples_ms"]) == 2
    assert report["models"]["tiny"]["derived"]["plain_over_onnxgrad"] > 0
    assert "plain ORT / default" in completed.stdout


# --- Real architectures (--real) ------------------------------------------------


def test_real_check_names_each_mismatching_gradient():
    reference = (np.float32(2.0), {"fc.weight": np.ones([2, 2], np.float32), "fc.bias": np.zeros([2], np.float32)})
    grads = {"fc.weight": np.full([2, 2], 1.1, np.float32)}
    assert real._real_check("file", np.float32(2.0), grads, reference) == [
        "file grad[fc.weight]: max abs err 0.1", "file grad[fc.bias]: missing"]
    assert real._real_check("module", np.float32(2.0), dict(reference[1]), reference) == []


def test_real_targets_mark_each_model():
    records = {
        "fast": {"check": "ok", "file_over_torch": 0.9, "module_over_file": 1.04},
        "slow": {"check": "ok", "file_over_torch": 1.2, "module_over_file": 0.9},
        "broken": {"check": ["file loss: max abs err 0.06"]},
    }
    assert real.real_targets(records) == [
        "Targets:",
        "- [pass] fast: file / PyTorch eager = 0.9 (< 1)", "- [pass] fast: module / file = 1.04 (within 5%)",
        "- [FAIL] slow: file / PyTorch eager = 1.2 (< 1)", "- [FAIL] slow: module / file = 0.9 (within 5%)",
        "- [n/a ] broken: file / PyTorch eager = – (< 1)", "- [n/a ] broken: module / file = – (within 5%)",
    ]


def test_real_architecture_on_a_tiny_bert(monkeypatch):
    """The --real path end to end on a BERT small enough for CI: both routes checked against autograd, timed."""
    pytest.importorskip("torch", reason="PyTorch is optional")
    pytest.importorskip("transformers", reason="transformers is optional (the 'bench' extra)")
    tiny = lambda: models._hf(  # noqa: E731
        "BertConfig", "BertForSequenceClassification", vocab_size=1000, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=24, max_position_embeddings=models.REAL_SEQ,
        num_labels=models.REAL_CLASSES, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    monkeypatch.setitem(models.REAL_MODELS, "bert_tiny", ("a tiny BERT", tiny, "text"))
    settings = dataclasses.replace(common.QUICK, rounds=2, batch_seconds=0.002)
    record = real.real_architecture("bert_tiny", settings)
    assert record["check"] == "ok"
    for timer in real.REAL_TIMERS:
        assert len(record["systems"][timer]["samples_ms"]) == 2
        assert record["first_call_s"][timer] > 0
    assert record["module_over_file"] > 0 and record["file_over_torch"] > 0
    assert "| bert_tiny: a tiny BERT |" in real.real_tables({"bert_tiny": record})
