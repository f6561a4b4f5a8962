"""Caches of built gradient graphs: in memory for the process, and on disk
across processes.

An entry is keyed by a digest of the network's weight-free graph, the
GradSpec (without providers), the input signature, a digest of onnxgrad's own
source, and the builder's onnxruntime-training version (not the runtime's: a
cache copied to a machine with another onnxruntime and no builder still hits).
On disk an entry is two files, ``<key>.onnx`` (the forward+backward graph)
and ``<key>.json`` (its :class:`~onnxgrad._prepare.Layout`), written atomically.
The JSON carries an HMAC-SHA256 of both, keyed by a random secret in the
folder (``cache.key``, readable by its owner only): an entry that was corrupted,
or written by anything without the secret, fails the check on load and is
rebuilt, with one warning. Nothing is unpickled or evaluated. The folder is
``$ONNXGRAD_CACHE_DIR`` or ``~/.cache/onnxgrad``; set ``ONNXGRAD_CACHE_DIR`` to an
empty string to turn the disk cache off. It holds at most
``$ONNXGRAD_CACHE_MAX_MB`` (default 1024) megabytes: the least recently used
entries go first. The memory cache keeps the last :data:`MEMORY_ENTRIES`.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import os
import pathlib
import threading
from typing import Hashable

import onnx

from onnxgrad import _builder_env, _files
from onnxgrad._prepare import Layout

__all__ = ["cache_key", "lookup", "store", "cache_dir", "clear_memory"]

logger = logging.getLogger(__name__)

#: Entries the memory cache keeps (least recently used first out).
MEMORY_ENTRIES = 256
_DEFAULT_MAX_MB = 1024
_KEY_FILE = "cache.key"

_memory: collections.OrderedDict[str, tuple[onnx.ModelProto, Layout, list[str]]] = collections.OrderedDict()
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
        for path in sorted(package.rglob("*.py")):  # every module, subpackages (nn, _rewrites) included
            digest.update(path.read_bytes())
        _code_digest = digest.hexdigest()
    return _code_digest


def cache_key(model_digest: str, parts: Hashable) -> str:
    """The entry key for a graph digest and the spec/signature ``parts``."""
    # The builder's version, not the runtime's: a graph built here is standard ONNX that any
    # onnxruntime runs, so a cache copied to a machine without a builder still hits.
    text = repr((_builder_code_digest(), _builder_env.BUILDER_VERSION, model_digest, parts))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _remember(key: str, entry: tuple) -> None:
    with _lock:
        _memory[key] = entry
        _memory.move_to_end(key)
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)


def _secret(folder: pathlib.Path) -> bytes:
    """The folder's HMAC key, created (owner-only) on first use."""
    path = folder / _KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(32))
    return path.read_bytes()


def _mac(secret: bytes, model_bytes: bytes, meta_bytes: bytes) -> str:
    return hmac.new(secret, model_bytes + b"\0" + meta_bytes, hashlib.sha256).hexdigest()


def lookup(key: str) -> tuple[onnx.ModelProto, Layout, list[str]] | None:
    """The cached (model, layout, outputs), from memory or disk (verified; a bad entry is a miss)."""
    with _lock:
        entry = _memory.get(key)
        if entry is not None:
            _memory.move_to_end(key)
    if entry is not None:
        return entry
    folder = cache_dir()
    if folder is None:
        return None
    model_path, meta_path = folder / f"{key}.onnx", folder / f"{key}.json"
    try:
        stored = json.loads(meta_path.read_text())
        model_bytes = model_path.read_bytes()
    except (OSError, ValueError):
        return None  # not there (or half there): a plain miss
    try:
        meta_bytes = json.dumps(stored["meta"], sort_keys=True).encode()
        if not hmac.compare_digest(str(stored["mac"]), _mac(_secret(folder), model_bytes, meta_bytes)):
            raise ValueError("the entry's HMAC does not match")
        model = onnx.load_from_string(model_bytes)
        entry = (model, Layout.from_json(stored["meta"]["layout"]), list(stored["meta"]["outputs"]))
    except Exception as err:  # a corrupt or foreign entry is rebuilt, never trusted
        logger.warning("cache entry %s in %s failed its check (%s): rebuilding it", key, folder, err)
        for path in (model_path, meta_path):
            path.unlink(missing_ok=True)
        return None
    os.utime(meta_path)  # recently used: evicted last
    _remember(key, entry)
    return entry


def store(key: str, model: onnx.ModelProto, layout: Layout, outputs: list[str]) -> None:
    """Keeps an entry in memory and, when enabled, writes it to disk atomically (with its HMAC)."""
    _remember(key, (model, layout, outputs))
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        model_bytes = model.SerializeToString()
        meta = {"layout": layout.to_json(), "outputs": outputs}
        mac = _mac(_secret(folder), model_bytes, json.dumps(meta, sort_keys=True).encode())
        meta_bytes = json.dumps({"meta": meta, "mac": mac}).encode()
        _files.atomic_write(folder / f"{key}.onnx", model_bytes)
        _files.atomic_write(folder / f"{key}.json", meta_bytes)
        _account(folder, len(model_bytes) + len(meta_bytes))
    except OSError as err:  # a read-only home must not break gradients
        logger.warning("could not write the gradient cache in %s: %s", folder, err)


# Bytes in each cache folder, as this process estimates them: scanned once, then added to per
# write, so that only a folder over its bound is scanned again.
_disk_bytes: dict[pathlib.Path, float] = {}


def _limit() -> float:
    try:
        return float(os.environ.get("ONNXGRAD_CACHE_MAX_MB", _DEFAULT_MAX_MB)) * 1e6
    except ValueError:
        return _DEFAULT_MAX_MB * 1e6


def _account(folder: pathlib.Path, written: int) -> None:
    with _lock:
        known = _disk_bytes.get(folder)
    if known is None:
        known = _evict(folder)  # the first write of this process: scan (and trim) once
    else:
        known += written
        if known > _limit():
            known = _evict(folder)
    with _lock:
        _disk_bytes[folder] = known


def _evict(folder: pathlib.Path) -> float:
    """Removes the least recently used entries beyond ``$ONNXGRAD_CACHE_MAX_MB``; returns the bytes left."""
    limit = _limit()
    entries = []
    for meta_path in folder.glob("*.json"):
        model_path = meta_path.with_suffix(".onnx")
        try:
            size = meta_path.stat().st_size + (model_path.stat().st_size if model_path.exists() else 0)
            entries.append((meta_path.stat().st_mtime, size, meta_path, model_path))
        except OSError:
            continue
    total = sum(size for _, size, _, _ in entries)
    for _, size, meta_path, model_path in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        for path in (meta_path, model_path):
            path.unlink(missing_ok=True)
        total -= size
    return total


def clear_memory() -> None:
    """Forgets the in-memory entries (tests use it to force a disk read)."""
    with _lock:
        _memory.clear()
