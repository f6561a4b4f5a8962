"""What the commands share: exit codes, argument types, the loss options and notes on stderr."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import numpy as np

from onnxgrad import _export, nn

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

SHAPE_HELP = (
    "concrete shape of an input, e.g. x=32,64 (repeatable). Named sizes shared by other inputs follow; "
    "other symbolic sizes are set to 1"
)


# ---------------------------------------------------------------------------------------------------------------
# Argument types


def shape_arg(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=D1,D2,... (e.g. x=32,64)")
    try:
        shape = tuple(int(d) for d in dims.split(",")) if dims.strip() else ()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be integers, e.g. x=32,64") from None
    if any(d < 0 for d in shape):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be >= 0")
    return name, shape


def names_arg(text: str) -> list[str] | str:
    if text in (_export.ALL, "none"):
        return text
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give names separated by commas, 'all' or 'none'")
    return names


def dtype_arg(text: str) -> np.dtype:
    try:
        return np.dtype(text)
    except TypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a numpy dtype (e.g. int64, float32)") from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def column_arg(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text  # a header name


def shapes(pairs: list[tuple[str, tuple[int, ...]]] | None) -> dict[str, tuple[int, ...]]:
    return dict(pairs or [])


# ---------------------------------------------------------------------------------------------------------------
# Parser pieces


def add_loss_options(parser: argparse.ArgumentParser, default: str | None) -> None:
    names = nn.loss_names()
    parser.add_argument(
        "--loss",
        default=default,
        metavar="NAME",
        help=f"loss from onnxgrad.nn appended to the model's single output: {', '.join(names)}"
        + (f" (default: {default})" if default else ""),
    )
    parser.add_argument(
        "--reduction", default="mean", choices=("mean", "sum", "none"), help="the loss's reduction (default: mean)"
    )


def with_parent(subparsers: Any, parent: argparse.ArgumentParser) -> Any:
    """Makes every command that ``subparsers`` adds take ``parent``'s options too."""
    add_parser = subparsers.add_parser

    def add_with_parent(*args: Any, **kwargs: Any) -> argparse.ArgumentParser:
        return add_parser(*args, parents=[parent, *kwargs.pop("parents", [])], **kwargs)

    subparsers.add_parser = add_with_parent
    return subparsers


# ---------------------------------------------------------------------------------------------------------------
# Output


def print_notes(notes: Sequence[str], hint: str = "") -> None:
    for note in notes:
        print(f"onnxgrad: note: {note}{hint}", file=sys.stderr)
