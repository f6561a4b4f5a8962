"""``onnxgrad builder``: set up, or show, where gradient graphs are built."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from onnxgrad import _builder_env
from onnxgrad.cli._common import EXIT_OK, with_parent


def add_parser(commands: Any, verbose: argparse.ArgumentParser) -> None:
    builder = commands.add_parser(
        "builder",
        help="set up or show where gradient graphs are built",
        description="Gradient graphs are built by onnxruntime-training-cpu 1.19.2, which exists for Python <= 3.11 "
        "only. Where this process's onnxruntime has no builder (plain onnxruntime, onnxruntime-gpu, "
        "onnxruntime-cann, Python 3.12+), graphs are built in a builder environment: a Python 3.11 virtual "
        "environment run as a subprocess ($ONNXGRAD_BUILDER_DIR, default ~/.cache/onnxgrad/builder).",
    )
    actions = with_parent(builder.add_subparsers(dest="action", metavar="ACTION", required=True), verbose)
    install = actions.add_parser("install", help="create the builder environment (does nothing if it works)")
    install.add_argument("--python", metavar="PYTHON", help="the Python 3.11 to use (default: found on PATH/pyenv)")
    install.add_argument("--force", action="store_true", help="recreate it even if it works")
    install.set_defaults(handler=run_install)
    status = actions.add_parser("status", help="say where gradient graphs are built")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=run_status)


def run_install(args: argparse.Namespace) -> int:
    _builder_env.install(args.python, force=args.force, log=lambda line: print(line, file=sys.stderr))
    return EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    status = _builder_env.status()
    if args.json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    print(f"onnxruntime {status['onnxruntime']}: "
          f"{'has' if status['in_process_builder'] else 'has no'} gradient builder in this process")
    print(f"builds in: {status['builds_in']}")
    if status["ready"]:
        print(f"builder environment: {status['environment']} (python {status['python']}, "
              f"onnxruntime-training {status['builder_onnxruntime']})")
    else:
        print(f"builder environment: none ready at {status['environment']}; run `onnxgrad builder install`")
    return EXIT_OK
