import os
import sys

# Tests import their shared helpers (treecompare, ...) by module name.
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
