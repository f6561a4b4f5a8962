"""``onnxgrad train``: convert and train a model, alone or on several ranks through torchrun."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any, Sequence, TextIO

from onnxgrad import _train, optim
from onnxgrad.cli._common import EXIT_OK, add_loss_options, column_arg, positive_int, print_notes
from onnxgrad.errors import InputError

logger = logging.getLogger("onnxgrad")


def add_parser(commands: Any) -> None:
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
        type=column_arg,
        default=defaults.label_column,
        metavar="COLUMN",
        help="CSV label column: an index (negative counts from the end) or a header name (default: -1, the last)",
    )
    add_loss_options(train, defaults.loss)
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
        "--batch-size", type=positive_int, default=defaults.batch_size, help=f"default: {defaults.batch_size}"
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
        type=positive_int,
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
        type=positive_int,
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
    train.set_defaults(handler=run)


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


def run(args: argparse.Namespace) -> int:
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
    print_notes(result.notes)
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
