"""Checkpoints: weights, optimizer state and metadata, written atomically and restored with checks."""

from __future__ import annotations

import io
import json
import os

import numpy as np

from onnxgrad import _files, optim
from onnxgrad._network import Network
from onnxgrad.errors import InputError

_FORMAT = 1


def _write_atomically(path: str, data: bytes) -> None:
    """Writes ``path`` whole or not at all (:func:`onnxgrad._files.atomic_write`).

    Raises:
        InputError: the file cannot be written (e.g. the disk is full); the previous one is intact.
    """
    try:
        _files.atomic_write(path, data)
    except OSError as err:
        raise InputError(
            f"Cannot write {path!r} ({err.strerror or err}): free some disk space or choose another --out-dir "
            "(the previous file is intact)."
        ) from None  # the cause is in the message; a chained traceback would only repeat it


def save_checkpoint(path: str | os.PathLike, network: Network, optimizer: optim.Optimizer, meta: dict) -> None:
    """Writes weights, optimizer state and ``meta`` to ``path`` atomically.

    The data goes to a temporary file in the same folder, is flushed to disk,
    and then replaces ``path`` in one rename: an interrupted write leaves the
    previous checkpoint intact.

    Raises:
        InputError: the checkpoint cannot be written (e.g. the disk is full).
    """
    # Built in memory: only plain writes can meet a full disk.
    _write_atomically(os.fspath(path), _checkpoint_bytes(network, optimizer, meta))


def _checkpoint_bytes(network: Network, optimizer: optim.Optimizer, meta: dict) -> bytes:
    arrays = {f"param/{p.name}": p.value for p in network.trainable_params()}
    arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    arrays["meta"] = np.array(json.dumps({"format": _FORMAT, **meta}))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def load_checkpoint(path: str | os.PathLike, network: Network, optimizer: optim.Optimizer) -> dict:
    """Restores weights and optimizer state from a checkpoint; returns its ``meta``.

    Raises:
        InputError: a missing or unreadable checkpoint, or one saved for other
            weights or another optimizer.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"No checkpoint at {path!r}: train without --resume first, or give the checkpoint's path.")
    return _restore(path, path, network, optimizer)


def _restore(source: str | io.BytesIO, path: str, network: Network, optimizer: optim.Optimizer) -> dict:
    """Restores a checkpoint read from ``source`` (a file or its bytes); ``path`` names it in errors."""
    try:
        with np.load(source, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.keys()}
        meta = json.loads(str(arrays.pop("meta")))
    except Exception as err:
        raise InputError(f"{path!r} is not a readable onnxgrad checkpoint ({type(err).__name__}: {err}).") from err
    params = network.parameters_dict()
    saved = {key[len("param/") :]: value for key, value in arrays.items() if key.startswith("param/")}
    if set(saved) != set(params):
        raise InputError(
            f"The checkpoint holds weights {sorted(saved)}, the model {sorted(params)}: resume with the same model."
        )
    for name, value in saved.items():
        if value.shape != params[name].shape:
            raise InputError(
                f"The checkpoint's {name!r} has shape {list(value.shape)}, the model's {list(params[name].shape)}: "
                "resume with the same model."
            )
    optimizer.load_state_dict({key[len("optim/") :]: v for key, v in arrays.items() if key.startswith("optim/")})
    for name, value in saved.items():
        params[name].set_data(value.astype(params[name].dtype, copy=False))
    return meta

