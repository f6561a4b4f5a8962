"""``onnxgrad inspect``: a model's interface, parameters and ops, and whether it can be differentiated."""

from __future__ import annotations

import argparse
import json
from typing import Any

from onnxgrad import _inspect, _inspect_text
from onnxgrad.cli._common import EXIT_OK, SHAPE_HELP, shape_arg, shapes


def add_parser(commands: Any) -> None:
    inspect = commands.add_parser(
        "inspect",
        help="show a model's interface, parameters, ops and whether it can be differentiated",
        description="Show a model's interface, parameters and ops, and whether onnxgrad can differentiate it: "
        "for each op type whether it has a gradient, which inputs and weights reach the outputs, and which "
        "nodes block a gradient (found by building the gradient, as `grad` would).",
    )
    inspect.add_argument("model", metavar="MODEL", help="an .onnx file (external data beside it is read)")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.add_argument("--shape", action="append", type=shape_arg, metavar="NAME=DIMS", help=SHAPE_HELP)
    inspect.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # In a child process: a model that crashes native code ends the child, not this command.
    report = _inspect.inspect_isolated(args.model, shapes(args.shape))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(_inspect_text.to_text(report))
    return EXIT_OK
