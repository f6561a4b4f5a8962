"""The ``onnxgrad`` command: ``inspect``, ``grad``, ``train`` and ``builder``.

Only argument parsing and presentation live here, a module per command
(``_cmd_inspect``, ``_cmd_grad``, ``_cmd_train``, ``_cmd_builder``); the work
is done by ``_inspect``, ``_export`` and ``_train``. Data goes to stdout
(``--json`` for machines), diagnostics and progress to stderr. Exit codes: 0
success, 1 an error onnxgrad reports (one line on stderr), 2 bad arguments,
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from onnxgrad import __version__, _train
from onnxgrad.cli import _cmd_builder, _cmd_grad, _cmd_inspect, _cmd_train, _common
from onnxgrad.cli._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from onnxgrad.errors import OnnxGradError

__all__ = ["build_parser", "main"]

logger = logging.getLogger("onnxgrad")


def build_parser() -> argparse.ArgumentParser:
    """The ``onnxgrad`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="onnxgrad",
        description="Inspect, differentiate and train ONNX models with onnxruntime-training.",
    )
    parser.add_argument("--version", action="version", version=f"onnxgrad {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr (-vv: debug)")
    # -v also after the command (`onnxgrad train -v`); SUPPRESS keeps a -v given before it.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output on stderr (-vv: debug)"
    )
    commands = _common.with_parent(parser.add_subparsers(dest="command", metavar="COMMAND"), verbose)
    _cmd_inspect.add_parser(commands)
    _cmd_grad.add_parser(commands)
    _cmd_train.add_parser(commands)
    _cmd_builder.add_parser(commands, verbose)
    return parser


def _silence_stdout() -> None:
    """Points stdout at /dev/null, so that Python's flush at exit cannot fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (e.g. captured by a test)
        pass


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``onnxgrad`` command.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 success, 1 error, 2 bad arguments, 130 interrupted.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error (already printed)
        return exit_.code if isinstance(exit_.code, int) else EXIT_OK
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("onnxgrad: error: choose a command: inspect, grad, train or builder", file=sys.stderr)
        return EXIT_USAGE
    args.argv = argv

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("onnxgrad: %(levelname)s: %(message)s"))
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logger.addHandler(handler)
    previous_level = logger.level
    logger.setLevel(level)
    try:
        return args.handler(args)
    except OnnxGradError as err:
        logger.debug("traceback", exc_info=True)
        print(f"onnxgrad: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # the reader (e.g. `| head`) stopped reading: not an error to report
        _silence_stdout()
        return EXIT_ERROR
    except OSError as err:
        logger.debug("traceback", exc_info=True)
        where = f"{err.filename}: " if err.filename else ""
        print(f"onnxgrad: error: {where}{_one_line(err.strerror or err)}", file=sys.stderr)
        return EXIT_ERROR
    except _train.TrainingInterrupted as interrupt:
        if interrupt.epoch is None or interrupt.result is None:
            print("\nonnxgrad: interrupted before the first epoch finished: nothing saved", file=sys.stderr)
        else:
            result = interrupt.result
            print(
                f"\nonnxgrad: interrupted; saved epoch {interrupt.epoch} to {result.checkpoint_path}, "
                f"{result.model_path} and {result.metrics_path}. Continue with: onnxgrad train --resume "
                f"--out-dir {args.out_dir} (and the same options)",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\nonnxgrad: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
