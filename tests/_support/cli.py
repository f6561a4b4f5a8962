"""Running ``onnxgrad ...`` as the CLI tests do: in this process, or as a fresh ``python -m onnxgrad``."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Any, NamedTuple

ROOT = pathlib.Path(__file__).resolve().parents[2]


class CliResult(NamedTuple):
    """One command's exit code and what it wrote."""

    code: int
    out: str
    err: str


class Cli:
    """``cli(*argv)`` runs ``onnxgrad argv...`` in this process through ``onnxgrad.cli.main`` (arguments
    become strings) and returns its exit code, stdout and stderr; ``cli.subprocess(*argv)`` runs it as
    ``python -m onnxgrad`` in a fresh interpreter, for what only a new process shows (entry point,
    exit on a closed pipe, environment)."""

    def __init__(self, capsys: Any) -> None:
        self._capsys = capsys

    def __call__(self, *argv: object) -> CliResult:
        from onnxgrad.cli import main

        self._capsys.readouterr()  # only this command's output
        code = main([str(a) for a in argv])
        out, err = self._capsys.readouterr()
        return CliResult(code, out, err)

    @staticmethod
    def subprocess(*argv: object, cwd: str | os.PathLike = ROOT, env: dict[str, str] | None = None,
                   timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess:
        """``python -m onnxgrad argv...``; text output captured unless ``stdout``/``stderr`` are given.
        ``env`` default: this process's, with MindSpore's compile logs silenced (``GLOG_v=3``)."""
        if "stdout" not in kwargs and "stderr" not in kwargs:
            kwargs["capture_output"] = True
        return subprocess.run(
            [sys.executable, "-m", "onnxgrad", *map(str, argv)], cwd=cwd, text=True, timeout=timeout,
            env={**os.environ, "GLOG_v": "3"} if env is None else env, check=False, **kwargs,
        )
