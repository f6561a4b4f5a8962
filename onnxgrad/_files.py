"""Files written whole or not at all: the one atomic write behind the gradient cache, exported models,
checkpoints, the loss curve and the metrics.

A file is written to a temporary path beside it (``.<name>.tmp-<pid>-<random>``), flushed to disk,
then renamed over the target in one step, so a reader (or a resumed run) sees the previous file or
the new one, never a part. A write that fails removes its temporary; one that is killed leaves it,
and :func:`remove_stale_temporaries` removes those whose writer process is gone.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
import secrets
from typing import Any, Callable

__all__ = ["atomic_write", "temporary_path", "remove_stale_temporaries", "TEMPORARY"]

logger = logging.getLogger(__name__)

#: A temporary file of :func:`atomic_write`; group 1 is the writer's process id. Also matches the
#: names earlier versions used (``<name>.tmp-<pid>``, with ``.png`` after it for the curve).
TEMPORARY = re.compile(r"\.tmp-(\d+)(?:-[0-9a-f]{8})?(?:\.png)?$")


def temporary_path(path: str | os.PathLike) -> str:
    """A fresh temporary path in ``path``'s folder, unique to this process and call."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _write_file(handle: Any, data: bytes) -> None:
    """Writes ``data`` and flushes it to disk."""
    handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[str], None]) -> None:
    """Replaces ``path`` with new contents in one rename; on failure the previous file is intact.

    Args:
        path: the file to write (its folder must exist).
        data: the contents, or a function that writes the file at the temporary path it is given
            (and may check it there: whatever it raises keeps the previous file).

    Raises:
        OSError: the file cannot be written (e.g. the disk is full); no temporary file is left.
        Exception: whatever ``data`` raises.
    """
    tmp = temporary_path(path)
    try:
        if callable(data):
            data(tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        else:
            with open(tmp, "wb") as handle:
                _write_file(handle, data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or a platform without signal 0: keep its files
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Removes the temporary files that killed writers left in ``folder``; returns their paths.

    Only files whose writer process is gone are removed: a process still writing
    into the same folder keeps its own.
    """
    removed = []
    for entry in sorted(pathlib.Path(folder).iterdir()):
        match = TEMPORARY.search(entry.name)
        if match is None or not entry.is_file():
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _process_alive(pid):
            continue
        try:
            entry.unlink()
        except OSError as err:
            logger.warning("cannot remove %s, left by a killed run: %s", entry, err)
            continue
        removed.append(str(entry))
    if removed:
        logger.info("removed %d temporary file(s) left by killed runs: %s", len(removed), ", ".join(removed))
    return removed
