"""The builder environment: where gradient graphs are built when this process can't.

Only ``onnxruntime-training-cpu`` 1.19.2 has ORT's gradient builder, and it
exists for Python <= 3.11 only. Any other onnxruntime (plain, gpu, cann, or
any onnxruntime on Python 3.12+) runs onnxgrad's standard-op graphs but cannot
build them, so building happens in a subprocess: a Python 3.11 virtual
environment holding the training package, running ``_builder_worker.py``.
There is never a second onnxruntime in the user's process.

The environment lives in ``$ONNXGRAD_BUILDER_DIR``, by default
``~/.cache/onnxgrad/builder``; ``onnxgrad builder install`` creates it.
``ONNXGRAD_BUILDER_PYTHON`` names a ready Python instead (any Python whose
onnxruntime has the builder), and ``ONNXGRAD_BUILDER=subprocess`` builds in a
subprocess even when this process has the builder.
"""

from __future__ import annotations

import atexit
import functools
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

from onnxgrad.errors import GradientBuildError, OnnxGradError

__all__ = ["BUILDER_PACKAGES", "location", "status", "install", "build", "find_python311", "BuildFailure"]

#: What ``onnxgrad builder install`` puts in the environment.
BUILDER_VERSION = "1.19.2"
BUILDER_PACKAGES = (f"onnxruntime-training-cpu=={BUILDER_VERSION}", "numpy>=1.24,<2")
_WORKER = Path(__file__).with_name("_builder_worker.py")
_INSTALL_HINT = "run `onnxgrad builder install` (it needs a Python 3.11; pass --python to choose one)"


class BuildFailure(Exception):
    """The builder refused the model; the text is ORT's."""


def location() -> Path:
    """The builder environment's folder."""
    if os.environ.get("ONNXGRAD_BUILDER_DIR"):
        return Path(os.environ["ONNXGRAD_BUILDER_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "onnxgrad" / "builder"


def _env_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _probe(python: str) -> dict | None:
    """What ``python`` offers: its onnxruntime version and whether it has the builder; None if it fails."""
    try:
        done = subprocess.run([python, str(_WORKER), "--probe"], capture_output=True, text=True, timeout=120)
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return found if isinstance(found, dict) else None


def _python_version(python: str) -> tuple[int, int] | None:
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True, text=True, timeout=60,
        )
        major, minor = done.stdout.split()
        return int(major), int(minor)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def in_process() -> bool:
    """Whether this process's onnxruntime has the gradient builder."""
    from onnxgrad._ort import pybind

    return hasattr(pybind, "GradientGraphBuilder")


def _configured_python() -> tuple[str | None, str]:
    """The builder Python that would be used, and where it came from."""
    explicit = os.environ.get("ONNXGRAD_BUILDER_PYTHON")
    if explicit:
        return explicit, "ONNXGRAD_BUILDER_PYTHON"
    python = _env_python(location())
    return (str(python) if python.exists() else None), str(location())


@functools.lru_cache(maxsize=None)
def _ready_python(python: str) -> dict | None:
    return _probe(python)


def builder_python() -> str:
    """The Python that builds in a subprocess.

    Raises:
        GradientBuildError: there is none, naming the command that makes one.
    """
    python, source = _configured_python()
    found = _ready_python(python) if python else None
    if python is None or not found or not found.get("builder"):
        where = f"{source} has no working builder" if python else f"there is no builder environment at {source}"
        raise GradientBuildError(
            "This onnxruntime cannot build gradient graphs (only onnxruntime-training-cpu 1.19.2 can) and "
            f"{where}: {_INSTALL_HINT}. A graph built once is cached, and `onnxgrad grad` files run anywhere."
        )
    return python


def use_subprocess() -> bool:
    """Whether builds go to the builder environment."""
    return os.environ.get("ONNXGRAD_BUILDER") == "subprocess" or not in_process()


_worker: subprocess.Popen[str] | None = None
_worker_lock = threading.Lock()


def _request(python: str, folder: str) -> int:
    """Hands one request folder to the serving worker (started on first use); returns its status."""
    global _worker
    with _worker_lock:
        for attempt in range(2):  # a worker that died (killed, crashed on a model) is restarted once
            command = [python, str(_WORKER), "--serve"]
            if _worker is None or _worker.poll() is not None or _worker.args != command:
                _worker = subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, text=True, bufsize=1,
                )
            assert _worker.stdin is not None and _worker.stdout is not None  # both are PIPEs
            try:
                _worker.stdin.write(folder + "\n")
                _worker.stdin.flush()
                answer = _worker.stdout.readline()
                return int(json.loads(answer)["status"])
            except (OSError, ValueError, KeyError, TypeError):
                _stop_worker()
                if attempt:
                    raise
        raise AssertionError("unreachable")


@atexit.register
def _stop_worker() -> None:
    global _worker
    worker, _worker = _worker, None
    if worker is None:
        return
    for stream in (worker.stdin, worker.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def build(model: bytes, loss: str, xs: list[str], gradients: list[dict]) -> bytes:
    """Builds in the builder environment; returns the gradient graph's bytes.

    Raises:
        BuildFailure: the builder refused the model (ORT's text).
        GradientBuildError: the environment is missing or broken.
    """
    python = builder_python()
    with tempfile.TemporaryDirectory(prefix="onnxgrad-build-") as folder:
        with open(os.path.join(folder, "model.onnx"), "wb") as f:
            f.write(model)
        with open(os.path.join(folder, "request.json"), "w", encoding="utf-8") as f:
            json.dump({"loss": loss, "xs": list(xs), "gradients": gradients}, f)
        try:
            status = _request(python, folder)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise GradientBuildError(
                f"The builder subprocess ({python}) died while building ({type(err).__name__}): the model may "
                "crash ORT's builder; check it with `onnxgrad inspect`. If the environment is broken, "
                "`onnxgrad builder install --force` recreates it."
            ) from err
        error = os.path.join(folder, "error.txt")
        if status == 3 and os.path.exists(error):
            with open(error, encoding="utf-8") as f:
                raise BuildFailure(f.read())
        result = os.path.join(folder, "gradient.onnx")
        if status != 0 or not os.path.exists(result):
            raise GradientBuildError(
                f"The builder subprocess ({python}) answered status {status} without a graph. Reinstall it with "
                "`onnxgrad builder install --force`; if that does not help, please report this."
            )
        with open(result, "rb") as f:
            return f.read()


def status() -> dict:
    """Where gradient graphs get built, as a JSON-ready dict."""
    from onnxgrad._ort import ort

    python, source = _configured_python()
    found = _ready_python(python) if python else None
    return {
        "onnxruntime": ort.__version__,
        "in_process_builder": in_process(),
        "builds_in": "subprocess" if use_subprocess() else "this process",
        "environment": source,
        "python": python,
        "ready": bool(found and found.get("builder")),
        "builder_onnxruntime": (found or {}).get("onnxruntime"),
    }


def find_python311(explicit: str | None = None) -> str:
    """A Python 3.11 interpreter: ``explicit``, else one on PATH or under pyenv.

    Raises:
        OnnxGradError: none found, or ``explicit`` is not 3.11.
    """
    if explicit:
        version = _python_version(explicit)
        if version != (3, 11):
            raise OnnxGradError(
                f"--python {explicit} is {'not runnable' if version is None else 'Python %d.%d' % version}; "
                "onnxruntime-training-cpu 1.19.2 needs Python 3.11: pass a python3.11."
            )
        return explicit
    candidates = [shutil.which("python3.11"), sys.executable]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.11*", "bin", "python3.11")), reverse=True)
    candidates += ["/usr/bin/python3.11", "/usr/local/bin/python3.11"]
    for candidate in candidates:
        if candidate and os.path.exists(candidate) and _python_version(candidate) == (3, 11):
            return candidate
    raise OnnxGradError(
        "No Python 3.11 found (on PATH, under pyenv or in /usr/bin): install one, e.g. `pyenv install 3.11`, "
        "and pass it with --python."
    )


def install(python: str | None = None, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Creates the builder environment (idempotent); returns its folder.

    Args:
        python: the Python 3.11 to base it on (default: :func:`find_python311`).
        force: recreate it even when it works.
        log: where progress lines go.

    Raises:
        OnnxGradError: no Python 3.11, or pip failed (its last line is in the message).
    """
    folder = location()
    env_python = _env_python(folder)
    if not force and env_python.exists():
        found = _probe(str(env_python))
        if found and found.get("builder"):
            log(f"The builder environment is ready: {folder} (onnxruntime-training {found['onnxruntime']}).")
            return folder
    base = find_python311(python)
    if folder.exists():
        shutil.rmtree(folder)
    log(f"Creating the builder environment in {folder} from {base} ...")
    steps = [
        [base, "-m", "venv", str(folder)],
        [str(env_python), "-m", "pip", "install", "--quiet", *BUILDER_PACKAGES],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise OnnxGradError(f"`{' '.join(step)}` failed: {tail[0][:400]}. Fix that, then run it again.")
    found = _probe(str(env_python))
    if not found or not found.get("builder"):
        raise OnnxGradError(f"The new builder environment in {folder} has no gradient builder; please report this.")
    _ready_python.cache_clear()
    log(f"The builder environment is ready: {folder} (onnxruntime-training {found['onnxruntime']}).")
    return folder
