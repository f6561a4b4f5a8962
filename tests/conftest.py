import os
import sys

# Tests import their shared pieces as _support.<module> (and node_corpus, references, train_nets) from here.
sys.path.insert(0, os.path.dirname(__file__))
# MindSpore logs every graph compile at WARNING; keep test output readable.
os.environ.setdefault("GLOG_v", "3")

import tempfile  # noqa: E402

import pytest  # noqa: E402

# The gradient-graph disk cache goes to a folder of this test session, never ~/.cache.
os.environ["ONNXGRAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="onnxgrad-test-cache-")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty gradient-graph cache (memory and disk) for one test."""
    from onnxgrad import _cache

    monkeypatch.setenv("ONNXGRAD_CACHE_DIR", str(tmp_path / "cache"))
    _cache.clear_memory()
    yield tmp_path / "cache"
    _cache.clear_memory()


def _assert_standard(model) -> None:
    """Fails on any node outside the standard ONNX domains (model-local functions allowed)."""
    import onnx

    functions = {(f.domain, f.name) for f in model.functions}
    bodies = [model.graph.node, *(f.node for f in model.functions)]
    for nodes in bodies:
        for node in nodes:
            standard = node.domain in ("", "ai.onnx") and onnx.defs.has(node.op_type, node.domain)
            assert standard or (node.domain, node.op_type) in functions, (
                f"non-standard node {node.domain}::{node.op_type} ({node.name!r}) in a built gradient graph"
            )
    onnx.checker.check_model(model, full_check=True)


@pytest.fixture(autouse=True)
def every_built_graph_is_standard_onnx(monkeypatch):
    """Every gradient graph any test builds (API, op suite, parity suites, CLI) is checked."""
    from onnxgrad import _engine

    build = _engine.gradient_model

    def checked(*args, **kwargs):
        built = build(*args, **kwargs)
        _assert_standard(built.model)
        return built

    monkeypatch.setattr(_engine, "gradient_model", checked)


@pytest.fixture
def cli(capsys):
    """Runs ``onnxgrad ...``: ``cli(*argv)`` in process, ``cli.subprocess(*argv)`` as ``python -m onnxgrad``."""
    from _support.cli import Cli

    return Cli(capsys)
