"""Caches of built gradient graphs: in memory for the process, and on disk
across processes.

An entry is keyed by a digest of the network's weight-free graph, the
GradSpec (without providers), the input signature, a digest of onnxgrad's own
source, and the builder's onnxruntime-training version (not the runtime's: a
cache copied to a machine with another onnxruntime and no builder still hits).
On disk an entry is two files, ``<key>.onnx`` (the forward+backward graph)
and ``<key>.json`` (its :class:`~onnxgrad._prepare.Layout`), written atomically. The folder is ``$ONNXGRAD_CACHE_DIR`` or
``~/.cache/onnxgrad``; set ``ONNXGRAD_CACHE_DIR`` to an empty string to turn
the disk cache off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import tempfile
import threading
from typing import Hashable

import onnx

from onnxgrad import _builder_env
from onnxgrad._prepare import Layout

__all__ = ["cache_key", "lookup", "store", "cache_dir", "clear_memory"]

logger = logging.getLogger(__name__)

_memory: dict[str, tuple[onnx.ModelProto, Layout, list[str]]] = {}
_lock = threading.Lock()


def cache_dir() -> pathlib.Path | None:
    """The on-disk cache folder, or None when disabled."""
    configured = os.environ.get("ONNXGRAD_CACHE_DIR")
    if configured is not None:
        return pathlib.Path(configured) if configured else None
    return pathlib.Path.home() / ".cache" / "onnxgrad"


_code_digest: str | None = None


def _builder_code_digest() -> str:
    """A hash of onnxgrad's own graph-building code: a change to it invalidates old entries."""
    global _code_digest
    if _code_digest is None:
        package = pathlib.Path(__file__).resolve().parent
        digest = hashlib.sha256()
        for path in sorted([*package.glob("*.py"), *package.glob("nn/*.py")]):
            digest.update(path.read_bytes())
        _code_digest = digest.hexdigest()
    return _code_digest


def cache_key(model_digest: str, parts: Hashable) -> str:
    """The entry key for a graph digest and the spec/signature ``parts``."""
    # The builder's version, not the runtime's: a graph built here is standard ONNX that any
    # onnxruntime runs, so a cache copied to a machine without a builder still hits.
    text = repr((_builder_code_digest(), _builder_env.BUILDER_VERSION, model_digest, parts))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def lookup(key: str) -> tuple[onnx.ModelProto, Layout, list[str]] | None:
    """The cached (model, layout, outputs), from memory or disk."""
    with _lock:
        entry = _memory.get(key)
    if entry is not None:
        return entry
    folder = cache_dir()
    if folder is None:
        return None
    try:
        meta = json.loads((folder / f"{key}.json").read_text())
        model = onnx.load(str(folder / f"{key}.onnx"))
        entry = (model, Layout.from_json(meta["layout"]), list(meta["outputs"]))
    except (OSError, ValueError, KeyError, onnx.onnx_cpp2py_export.checker.ValidationError):
        return None
    except Exception:  # a corrupt entry is a miss, never an error
        logger.warning("ignoring unreadable cache entry %s in %s", key, folder)
        return None
    with _lock:
        _memory[key] = entry
    return entry


def store(key: str, model: onnx.ModelProto, layout: Layout, outputs: list[str]) -> None:
    """Keeps an entry in memory and, when enabled, writes it to disk atomically."""
    with _lock:
        _memory[key] = (model, layout, outputs)
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / f"{key}.onnx", model.SerializeToString())
        meta = {"layout": layout.to_json(), "outputs": outputs}
        _write_atomic(folder / f"{key}.json", json.dumps(meta).encode())
    except OSError as err:  # a read-only home must not break gradients
        logger.warning("could not write the gradient cache in %s: %s", folder, err)


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def clear_memory() -> None:
    """Forgets the in-memory entries (tests use it to force a disk read)."""
    with _lock:
        _memory.clear()
