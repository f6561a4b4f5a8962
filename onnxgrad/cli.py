"""The ``onnxgrad`` command: ``inspect``, ``grad``, ``train`` and ``builder``.

Only argument parsing and presentation live here; the work is done by
``_inspect``, ``_export`` and ``_train``. Data goes to stdout (``--json`` for
machines), diagnostics and progress to stderr. Exit codes: 0 success, 1 an
error onnxgrad reports (one line on stderr), 2 bad arguments, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any, Sequence, TextIO

import numpy as np

from onnxgrad import __version__, _builder_env, _export, _inspect, _inspect_text, _train, nn, optim
from onnxgrad._network import load
from onnxgrad.errors import InputError, OnnxGradError
from onnxgrad.nn._loss import LABEL, LOSS_OUTPUT

__all__ = ["build_parser", "main"]

logger = logging.getLogger("onnxgrad")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# ---------------------------------------------------------------------------------------------------------------
# Argument types


def _shape_arg(text: str) -> tuple[str, tuple[int, ...]]:
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


def _names_arg(text: str) -> list[str] | str:
    if text in (_export.ALL, "none"):
        return text
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give names separated by commas, 'all' or 'none'")
    return names


def _dtype_arg(text: str) -> np.dtype:
    try:
        return np.dtype(text)
    except TypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a numpy dtype (e.g. int64, float32)") from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _column_arg(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text  # a header name


def _shapes(pairs: list[tuple[str, tuple[int, ...]]] | None) -> dict[str, tuple[int, ...]]:
    return dict(pairs or [])


# ---------------------------------------------------------------------------------------------------------------
# Parser

_SHAPE_HELP = (
    "concrete shape of an input, e.g. x=32,64 (repeatable). Named sizes shared by other inputs follow; "
    "other symbolic sizes are set to 1"
)

_GRAD_EPILOG = f"""\
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


def _add_loss_options(parser: argparse.ArgumentParser, default: str | None) -> None:
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


def _with_parent(subparsers: Any, parent: argparse.ArgumentParser) -> Any:
    """Makes every command that ``subparsers`` adds take ``parent``'s options too."""
    add_parser = subparsers.add_parser

    def add_with_parent(*args: Any, **kwargs: Any) -> argparse.ArgumentParser:
        return add_parser(*args, parents=[parent, *kwargs.pop("parents", [])], **kwargs)

    subparsers.add_parser = add_with_parent
    return subparsers


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
    commands = _with_parent(parser.add_subparsers(dest="command", metavar="COMMAND"), verbose)

    inspect = commands.add_parser(
        "inspect",
        help="show a model's interface, parameters, ops and whether it can be differentiated",
        description="Show a model's interface, parameters and ops, and whether onnxgrad can differentiate it: "
        "for each op type whether it has a gradient, which inputs and weights reach the outputs, and which "
        "nodes block a gradient (found by building the gradient, as `grad` would).",
    )
    inspect.add_argument("model", metavar="MODEL", help="an .onnx file (external data beside it is read)")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.add_argument("--shape", action="append", type=_shape_arg, metavar="NAME=DIMS", help=_SHAPE_HELP)
    inspect.set_defaults(handler=_cmd_inspect)

    grad = commands.add_parser(
        "grad",
        help="write the forward+backward graph as a standalone ONNX file",
        description="Write the forward+backward graph of MODEL as a standalone ONNX file, checked with "
        "onnx.checker.",
        epilog=_GRAD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grad.add_argument("model", metavar="MODEL", help="an .onnx file")
    grad.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the file to write")
    grad.add_argument(
        "--inputs",
        type=_names_arg,
        default="none",
        metavar="NAMES",
        help="float inputs to differentiate: comma-separated names, 'all' or 'none' (default: none)",
    )
    grad.add_argument(
        "--weights",
        type=_names_arg,
        default=_export.ALL,
        metavar="NAMES",
        help="trainable weights to differentiate: comma-separated names, 'all' or 'none' (default: all)",
    )
    _add_loss_options(grad, None)
    grad.add_argument(
        "--label-dtype", type=_dtype_arg, metavar="DTYPE", help="dtype of the label input (default: the loss's first)"
    )
    grad.add_argument(
        "--sens", action="store_true", help=f"take the output sensitivities as inputs '<output>{_export.SENS_SUFFIX}'"
    )
    grad.add_argument("--shape", action="append", type=_shape_arg, metavar="NAME=DIMS", help=_SHAPE_HELP)
    grad.add_argument(
        "--weights-as-inputs", action="store_true", help="keep the trainable weights as graph inputs"
    )
    grad.add_argument(
        "--external-data", action="store_true", help="write the tensors to OUT.onnx.data (for models over 2 GB)"
    )
    grad.add_argument("--json", action="store_true", help="print the file's interface as JSON")
    grad.set_defaults(handler=_cmd_grad)

    train = commands.add_parser(
        "train",
        help="convert and train a model (default: an MLP on scikit-learn's 8x8 digits)",
        description="Convert a model to ONNX (if needed), attach a loss and train it with SGD, Momentum or Adam. "
        "With no arguments: the bundled MLP (models/digits_mlp.onnx) on scikit-learn's 8x8 digits. Writes "
        f"{_train.MODEL} (inference only), {_train.CHECKPOINT}, {_train.CURVE} and {_train.METRICS} to --out-dir.",
    )
    defaults = _train.TrainConfig()
    train.add_argument(
        "--model",
        metavar="SPEC",
        help="an .onnx file, or package.module:attribute naming a MindSpore Cell or PyTorch nn.Module "
        "(instance, class or factory) (default: models/digits_mlp.onnx)",
    )
    train.add_argument(
        "--data",
        default=_train.DIGITS,
        metavar="FILE",
        help="an .npz (arrays --x-key, --y-key) or .csv (numbers; a header row is skipped) file, or 'digits' "
        "(default: scikit-learn's digits, pixels scaled to [0, 1])",
    )
    train.add_argument("--x-key", default=defaults.x_key, help="NPZ array of inputs (default: x)")
    train.add_argument("--y-key", default=defaults.y_key, help="NPZ array of labels (default: y)")
    train.add_argument(
        "--label-column",
        type=_column_arg,
        default=defaults.label_column,
        metavar="COLUMN",
        help="CSV label column: an index (negative counts from the end) or a header name (default: -1, the last)",
    )
    _add_loss_options(train, defaults.loss)
    train.add_argument(
        "--optimizer", default=defaults.optimizer, choices=sorted(optim.OPTIMIZERS), help="default: adam"
    )
    rates = ", ".join(f"{k} {v:g}" for k, v in optim.OPTIMIZERS.items())
    train.add_argument("--lr", type=float, metavar="RATE", help=f"learning rate (default: {rates})")
    train.add_argument(
        "--momentum", type=float, default=defaults.momentum, help="default: 0 for sgd (plain SGD), 0.9 for momentum"
    )
    train.add_argument("--nesterov", action="store_true", help="Nesterov momentum (sgd, momentum)")
    train.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="L2 penalty (default: 0)")
    train.add_argument("--beta1", type=float, default=defaults.beta1, help="Adam (default: 0.9)")
    train.add_argument("--beta2", type=float, default=defaults.beta2, help="Adam (default: 0.999)")
    train.add_argument("--epochs", type=int, default=defaults.epochs, help=f"default: {defaults.epochs}")
    train.add_argument(
        "--batch-size", type=_positive_int, default=defaults.batch_size, help=f"default: {defaults.batch_size}"
    )
    train.add_argument(
        "--val-fraction", type=float, default=defaults.val_fraction, help="validation share (default: 0.2)"
    )
    train.add_argument("--seed", type=int, default=defaults.seed, help="split and shuffling seed (default: 0)")
    train.add_argument("--out-dir", default=defaults.out_dir, help=f"default: {defaults.out_dir}")
    train.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="CHECKPOINT",
        help=f"continue from a checkpoint (default: OUT_DIR/{_train.CHECKPOINT}) up to --epochs",
    )
    train.add_argument(
        "--force", action="store_true", help=f"start afresh, overwriting OUT_DIR/{_train.CHECKPOINT} of an earlier run"
    )
    train.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    train.add_argument(
        "--provider",
        default=defaults.provider,
        metavar="NAME",
        help="ONNX Runtime execution provider, e.g. CUDAExecutionProvider or CANNExecutionProvider; weights "
        "and optimizer state stay on the device (default: CPUExecutionProvider)",
    )
    train.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="ONNX Runtime intra-op threads per process (default: every core; under torchrun the machine's cores "
        "divided by its ranks)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=defaults.checkpoint_every,
        metavar="STEPS",
        help="also checkpoint every STEPS steps, with the sampler's epoch and position (default: after each epoch)",
    )
    distributed = train.add_argument_group(
        "data-parallel",
        "Under torchrun (torchrun --nproc-per-node M --rdzv-backend c10d --rdzv-endpoint HOST:PORT -m onnxgrad "
        "train ...) each rank trains on its shard of every batch; --batch-size is per rank.",
    )
    distributed.add_argument(
        "--nproc-per-node",
        type=_positive_int,
        metavar="M",
        help="launch M ranks on this machine through torchrun's launcher (torch.distributed.run --standalone)",
    )
    distributed.add_argument(
        "--max-restarts",
        type=int,
        default=0,
        metavar="K",
        help="with --nproc-per-node: restart the group up to K times after a rank fails; it resumes from the last "
        "checkpoint (default: 0)",
    )
    distributed.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout,
        metavar="SECONDS",
        help=f"seconds a rank waits for a peer before the job fails (default: {defaults.timeout:g})",
    )
    train.add_argument("--json", action="store_true", help="print the result as JSON")
    train.set_defaults(handler=_cmd_train)

    builder = commands.add_parser(
        "builder",
        help="set up or show where gradient graphs are built",
        description="Gradient graphs are built by onnxruntime-training-cpu 1.19.2, which exists for Python <= 3.11 "
        "only. Where this process's onnxruntime has no builder (plain onnxruntime, onnxruntime-gpu, "
        "onnxruntime-cann, Python 3.12+), graphs are built in a builder environment: a Python 3.11 virtual "
        "environment run as a subprocess ($ONNXGRAD_BUILDER_DIR, default ~/.cache/onnxgrad/builder).",
    )
    actions = _with_parent(builder.add_subparsers(dest="action", metavar="ACTION", required=True), verbose)
    install = actions.add_parser("install", help="create the builder environment (does nothing if it works)")
    install.add_argument("--python", metavar="PYTHON", help="the Python 3.11 to use (default: found on PATH/pyenv)")
    install.add_argument("--force", action="store_true", help="recreate it even if it works")
    install.set_defaults(handler=_cmd_builder_install)
    status = actions.add_parser("status", help="say where gradient graphs are built")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_cmd_builder_status)
    return parser


# ---------------------------------------------------------------------------------------------------------------
# Commands


def _print_notes(notes: Sequence[str], hint: str = "") -> None:
    for note in notes:
        print(f"onnxgrad: note: {note}{hint}", file=sys.stderr)


def _cmd_inspect(args: argparse.Namespace) -> int:
    # In a child process: a model that crashes native code ends the child, not this command.
    report = _inspect.inspect_isolated(args.model, _shapes(args.shape))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(_inspect_text.to_text(report))
    return EXIT_OK


def _cmd_builder_install(args: argparse.Namespace) -> int:
    _builder_env.install(args.python, force=args.force, log=lambda line: print(line, file=sys.stderr))
    return EXIT_OK


def _cmd_builder_status(args: argparse.Namespace) -> int:
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


def _tensor_dicts(infos, model) -> list[dict[str, Any]]:
    docs = {v.name: v.doc_string for v in [*model.graph.input, *model.graph.output]}
    return [
        {"name": i.name, "dtype": str(i.dtype), "shape": None if i.shape is None else list(i.shape),
         "description": docs.get(i.name, "")}
        for i in infos
    ]


def _cmd_grad(args: argparse.Namespace) -> int:
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
        network, inputs, weights, sens=args.sens, shapes=_shapes(args.shape), weights_as_inputs=args.weights_as_inputs
    )
    _print_notes(
        [n for n in exported.notes if "symbolic size" in n], " (choose it with --shape NAME=D1,D2,...)"
    )
    _print_notes([n for n in exported.notes if "symbolic size" not in n])
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


class _ProgressBar:
    """A one-line progress bar with loss and throughput, redrawn at most 10 times a second.

    Args:
        stream: where to draw (stderr).
        enabled: draw the bar; epoch summaries are written either way.
        width: the bar's width in characters.
    """

    def __init__(self, stream: TextIO, enabled: bool, width: int = 24) -> None:
        self.stream, self.enabled, self.width = stream, enabled, width
        self._last = 0.0
        self._drawn = 0

    def __call__(self, event: _train.StepEvent | _train.EpochEvent) -> None:
        if isinstance(event, _train.StepEvent):
            self._step(event)
        else:
            self._epoch(event)

    def _step(self, event: _train.StepEvent) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and event.step != event.steps):
            return
        self._last = now
        done = int(self.width * event.step / max(event.steps, 1))
        bar = "#" * done + "-" * (self.width - done)
        line = (
            f"epoch {event.epoch}/{event.epochs} [{bar}] {event.step}/{event.steps} "
            f"loss {event.loss:.4f} {event.samples_per_second:,.0f} samples/s"
        )
        self.stream.write("\r" + line.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(line)

    def _epoch(self, event: _train.EpochEvent) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0
        digits = len(str(event.epochs))
        accuracy = "" if event.val_accuracy is None else f"  val acc {100 * event.val_accuracy:5.1f}%"
        self.stream.write(
            f"epoch {event.epoch:>{digits}}/{event.epochs}  train loss {event.train_loss:.4f}  "
            f"val loss {event.val_loss:.4f}{accuracy}  {event.seconds:.2f} s  "
            f"{event.samples_per_second:,.0f} samples/s\n"
        )
        self.stream.flush()


#: Options of `onnxgrad train` that only the launching process reads (each takes a value).
_LAUNCH_OPTIONS = ("--nproc-per-node", "--max-restarts")


def _launch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Runs this `train` command on ``--nproc-per-node`` ranks through torchrun's own launcher."""
    from onnxgrad import distributed

    if distributed.under_torchrun():
        raise InputError("--nproc-per-node launches torchrun itself: leave it out when already under torchrun.")
    distributed._torch_distributed()  # says how to install torch if it is missing
    forwarded, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        flag = next((f for f in _LAUNCH_OPTIONS if arg == f or arg.startswith(f + "=")), None)
        if flag is not None:
            skip = arg == flag
            continue
        forwarded.append(arg)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc_per_node}",
        f"--max-restarts={args.max_restarts}", "-m", "onnxgrad", *forwarded,
    ]
    logger.info("launching: %s", " ".join(command))
    return subprocess.call(command)


def _cmd_train(args: argparse.Namespace) -> int:
    if args.nproc_per_node is not None:
        return _launch(args, args.argv)
    if args.model and ":" in args.model and not os.path.exists(args.model):
        # Like `python -m`, import the user's package from the current folder.
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
    resume = args.resume
    if resume == "":
        resume = os.path.join(args.out_dir, _train.CHECKPOINT)
    config = _train.TrainConfig(
        model=args.model,
        data=args.data,
        x_key=args.x_key,
        y_key=args.y_key,
        label_column=args.label_column,
        loss=args.loss,
        reduction=args.reduction,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        momentum=args.momentum,
        nesterov=args.nesterov,
        weight_decay=args.weight_decay,
        beta1=args.beta1,
        beta2=args.beta2,
        epochs=args.epochs,
        batch_size=args.batch_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        out_dir=args.out_dir,
        resume=resume,
        force=args.force,
        provider=args.provider,
        threads=args.threads,
        checkpoint_every=args.checkpoint_every,
        timeout=args.timeout,
    )
    show_bar = sys.stderr.isatty() if args.progress is None else args.progress
    result = _train.train(config, _ProgressBar(sys.stderr, show_bar))
    if result.rank != 0:
        return EXIT_OK  # rank 0 reports for the group
    _print_notes(result.notes)
    if args.json:
        data = {k: v for k, v in vars(result).items()}
        print(json.dumps(data, indent=2))
        return EXIT_OK
    trained = len(result.history) - result.start_epoch
    accuracy = "" if result.val_accuracy is None else f", val accuracy {100 * result.val_accuracy:.1f}%"
    resumed = f" (resumed after epoch {result.start_epoch})" if result.start_epoch else ""
    print(
        f"trained {trained} epoch(s){resumed} in {result.seconds:.2f} s: val loss {result.val_loss:.4f}{accuracy} "
        f"({result.train_samples} train / {result.val_samples} validation samples)"
    )
    written = [result.model_path, result.checkpoint_path, result.curve_path, result.metrics_path]
    print("wrote " + ", ".join(p for p in written if p))
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------------------
# Entry point


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
