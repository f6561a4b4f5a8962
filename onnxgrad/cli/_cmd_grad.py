"""``onnxgrad grad``: write a model's forward+backward graph as a standalone ONNX file."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np

from onnxgrad import _export, _inspect_text, nn
from onnxgrad._network import load
from onnxgrad.cli._common import (
    EXIT_OK,
    SHAPE_HELP,
    add_loss_options,
    dtype_arg,
    names_arg,
    print_notes,
    shape_arg,
    shapes,
)
from onnxgrad.errors import InputError
from onnxgrad.nn._loss import LABEL, LOSS_OUTPUT

_EPILOG = f"""\
The file's inputs, in order:
  the network's inputs (with --loss: the model's inputs, then '{LABEL}');
  with --sens: '<output>{_export.SENS_SUFFIX}' per float output, shaped like it: the gradient fed into the
    output (without --sens it is ones, i.e. the gradients of sum(outputs));
  with --weights-as-inputs: every trainable weight, by initializer name (otherwise they are
    initializers holding the model's values).
Its outputs, in order:
  the network's outputs (with --loss: '{LOSS_OUTPUT}');
  '{_export.LOSS}': the scalar differentiated, sum of ReduceSum(output * sensitivity);
  '<x>_grad' for each differentiated input, then each weight.
Shapes are fixed at export. The file runs in a training build of ONNX Runtime
(onnxruntime-training) with nothing from onnxgrad.
"""


def add_parser(commands: Any) -> None:
    grad = commands.add_parser(
        "grad",
        help="write the forward+backward graph as a standalone ONNX file",
        description="Write the forward+backward graph of MODEL as a standalone ONNX file, checked with "
        "onnx.checker.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grad.add_argument("model", metavar="MODEL", help="an .onnx file")
    grad.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the file to write")
    grad.add_argument(
        "--inputs",
        type=names_arg,
        default="none",
        metavar="NAMES",
        help="float inputs to differentiate: comma-separated names, 'all' or 'none' (default: none)",
    )
    grad.add_argument(
        "--weights",
        type=names_arg,
        default=_export.ALL,
        metavar="NAMES",
        help="trainable weights to differentiate: comma-separated names, 'all' or 'none' (default: all)",
    )
    add_loss_options(grad, None)
    grad.add_argument(
        "--label-dtype", type=dtype_arg, metavar="DTYPE", help="dtype of the label input (default: the loss's first)"
    )
    grad.add_argument(
        "--sens", action="store_true", help=f"take the output sensitivities as inputs '<output>{_export.SENS_SUFFIX}'"
    )
    grad.add_argument("--shape", action="append", type=shape_arg, metavar="NAME=DIMS", help=SHAPE_HELP)
    grad.add_argument(
        "--weights-as-inputs", action="store_true", help="keep the trainable weights as graph inputs"
    )
    grad.add_argument(
        "--external-data", action="store_true", help="write the tensors to OUT.onnx.data (for models over 2 GB)"
    )
    grad.add_argument("--json", action="store_true", help="print the file's interface as JSON")
    grad.set_defaults(handler=run)


def _tensor_dicts(infos, model) -> list[dict[str, Any]]:
    docs = {v.name: v.doc_string for v in [*model.graph.input, *model.graph.output]}
    return [
        {"name": i.name, "dtype": str(i.dtype), "shape": None if i.shape is None else list(i.shape),
         "description": docs.get(i.name, "")}
        for i in infos
    ]


def run(args: argparse.Namespace) -> int:
    network = load(args.model)
    if args.loss:
        loss_fn = nn.make_loss(args.loss, args.reduction)
        allowed = loss_fn.label_dtypes()
        if args.label_dtype is not None and np.dtype(args.label_dtype) not in allowed:
            raise InputError(
                f"--loss {args.loss} takes labels of dtype {[str(d) for d in allowed]}, not "
                f"{np.dtype(args.label_dtype)}: fix --label-dtype."
            )
        network = nn.WithLossCell(network, loss_fn, label_dtype=args.label_dtype)
    inputs = () if args.inputs == "none" else args.inputs
    weights = () if args.weights == "none" else args.weights
    exported = _export.export_gradient(
        network, inputs, weights, sens=args.sens, shapes=shapes(args.shape), weights_as_inputs=args.weights_as_inputs
    )
    print_notes(
        [n for n in exported.notes if "symbolic size" in n], " (choose it with --shape NAME=D1,D2,...)"
    )
    print_notes([n for n in exported.notes if "symbolic size" not in n])
    _export.save_model(exported.model, args.output, external_data=args.external_data)
    ins = _tensor_dicts(exported.inputs, exported.model)
    outs = _tensor_dicts(exported.outputs, exported.model)
    if args.json:
        print(json.dumps({"path": args.output, "inputs": ins, "outputs": outs, "notes": exported.notes}, indent=2))
        return EXIT_OK
    size = os.path.getsize(args.output)
    print(f"wrote {args.output} ({_inspect_text.size_text(size)}): onnx.checker passed")
    for title, rows in (("inputs", ins), ("outputs", outs)):
        print(title)
        table = [[r["name"], r["dtype"], _inspect_text.shape_text(r["shape"]), r["description"]] for r in rows]
        print("\n".join(_inspect_text.table(table)))
    return EXIT_OK
