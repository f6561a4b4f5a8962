"""The training loop: :func:`train`, one epoch of steps (gradients reduced across the ranks under
torchrun) and the validation."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pathlib
import time
from typing import Any, Callable

import numpy as np

from onnxgrad import _device, _engine, distributed, nn, optim
from onnxgrad._api import ForwardValueAndGrad
from onnxgrad._files import remove_stale_temporaries
from onnxgrad._network import Network, ParameterTuple
from onnxgrad._train import report
from onnxgrad._train.checkpoint import load_checkpoint, save_checkpoint
from onnxgrad._train.config import CHECKPOINT, EpochEvent, StepEvent, TrainConfig, TrainingInterrupted, TrainResult
from onnxgrad._train.data import _is_classification, _label_array, check_labels, load_data, split
from onnxgrad._train.model import optimizer_for, resolve_model
from onnxgrad._train.ranks import _resume_from, _resume_position, _start_state
from onnxgrad.errors import InputError

logger = logging.getLogger(__name__)


# Training alternates sessions (the step's, then the evaluation's): ORT's spinning
# thread pools then fight over the cores, so the sessions do not spin (README, Speed).
_NO_SPIN_CONFIG = {"session.intra_op.allow_spinning": "0"}


def _providers(provider: str) -> list[str]:
    return [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]


class _Evaluator:
    """Validation loss (mean per sample) and accuracy, batch by batch.

    The loss comes from a copy of the loss with ``reduction='none'``, so that a
    fixed-size model's last batch can be padded and the padding dropped. Under
    torchrun each rank evaluates every ``world_size``-th sample and the sums
    are reduced, so every rank gets the metrics of the whole split.
    """

    def __init__(
        self,
        backbone: Network,
        cell: Network,
        batch_size: int,
        fixed: bool,
        classification: bool,
        providers: list,
        session_config: dict = _NO_SPIN_CONFIG,
    ):
        self.backbone, self.cell = backbone, cell
        self.batch_size, self.fixed, self.classification = batch_size, fixed, classification
        self.options = _engine.RunOptions(providers, session_config)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        ctx = distributed.context()
        x, y = x[ctx.rank :: ctx.world_size], y[ctx.rank :: ctx.world_size]
        total_loss, correct, n = 0.0, 0, len(x)
        for start in range(0, n, self.batch_size):
            xb, yb = x[start : start + self.batch_size], y[start : start + self.batch_size]
            real = len(xb)
            if self.fixed and real < self.batch_size:  # repeat the last sample; its results are dropped
                pad = self.batch_size - real
                xb = np.concatenate([xb, np.repeat(xb[-1:], pad, axis=0)])
                yb = np.concatenate([yb, np.repeat(yb[-1:], pad, axis=0)])
            losses = np.asarray(_engine.forward(self.cell, [xb, yb], options=self.options))[:real]
            total_loss += float(losses.reshape(real, -1).mean(axis=1).sum())
            if self.classification:
                logits = np.asarray(_engine.forward(self.backbone, [xb], options=self.options))[:real]
                truth = yb[:real] if yb.ndim == 1 else np.argmax(yb[:real], axis=-1)
                correct += int(np.sum(np.argmax(logits, axis=-1) == truth))
        if ctx.distributed:
            total_loss, correct, n = distributed.all_reduce(np.array([total_loss, correct, n], np.float64)).tolist()
        return total_loss / n, (correct / n if self.classification else None)


def _check_finite(loss: float, where: str, optimizer: optim.Optimizer) -> None:
    if not math.isfinite(loss):
        raise InputError(
            f"The loss became {loss} at {where}: lower the learning rate (now {optimizer.learning_rate:g})."
        )


def train(config: TrainConfig, progress: Callable[[StepEvent | EpochEvent], None] | None = None) -> TrainResult:
    """Converts (if needed) and trains a model; writes the outputs to ``config.out_dir``.

    Args:
        config: what to train and how.
        progress: called with a :class:`StepEvent` after each step and an
            :class:`EpochEvent` after each epoch.

    Returns:
        The history, final metrics and output paths.

    Raises:
        InputError: bad data, labels, names, hyperparameters or checkpoint; an
            earlier run's checkpoint in ``out_dir`` without ``resume`` or
            ``force``; an output that cannot be written (a full disk).
        ModelError: an unreadable model file.
        ConversionError: a framework model could not be exported.
        TrainingInterrupted: Ctrl-C; the last finished epoch is saved.

    Example:
        >>> result = train(TrainConfig(epochs=5, out_dir="runs/quick"))
        >>> result.val_accuracy > 0.9
        True
    """
    if config.epochs < 0:
        raise InputError(f"epochs must be >= 0, got {config.epochs}.")
    if config.batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {config.batch_size}.")
    if config.checkpoint_every < 0:
        raise InputError(f"checkpoint_every must be >= 0 steps, got {config.checkpoint_every}.")
    joined = distributed.context().distributed
    ctx = distributed.init(config.provider, config.timeout)
    result = _train(config, progress, ctx)
    # Leave only a process group this call joined; not after a failure, where a dead peer could block the exit.
    if ctx.distributed and not joined:
        distributed.shutdown()
    return result


def _train(
    config: TrainConfig, progress: Callable[[StepEvent | EpochEvent], None] | None, ctx: distributed.Context
) -> TrainResult:
    loss_fn = nn.make_loss(config.loss, config.reduction)
    data = load_data(config)
    out_dir = pathlib.Path(config.out_dir)
    checkpoint_path = str(out_dir / CHECKPOINT)
    resume = _resume_from(config, ctx, checkpoint_path)
    x_train, _, _, _ = split(data, config.val_fraction, config.seed)

    backbone, description = resolve_model(config.model, x_train[: config.batch_size].astype(np.float32))
    if len(backbone.inputs) != 1 or len(backbone.outputs) != 1:
        raise InputError(
            f"train takes a model with one input and one output; this one has inputs "
            f"{[i.name for i in backbone.inputs]} and outputs {[o.name for o in backbone.outputs]}."
        )
    info = backbone.inputs[0]
    if info.shape is not None and not info.accepts((config.batch_size, *x_train.shape[1:])):
        raise InputError(
            f"The model's input {info.name!r} has shape {info.shape_text()}; the data's samples have shape "
            f"{list(x_train.shape[1:])} (batches of {config.batch_size}): match the data (and --batch-size) "
            "to the model."
        )
    fixed = info.shape is not None and len(info.shape) > 0 and isinstance(info.shape[0], int)
    logits_shape = tuple(backbone.outputs[0].shape or ())
    data = dataclasses.replace(data, y=check_labels(data.y, loss_fn, logits_shape, data.source))
    x_train, y_train, x_val, y_val = split(data, config.val_fraction, config.seed)
    x_train, x_val = x_train.astype(info.dtype), x_val.astype(info.dtype)
    classification = _is_classification(loss_fn, y_train, logits_shape)
    y_train = _label_array(y_train, loss_fn, logits_shape)
    y_val = _label_array(y_val, loss_fn, logits_shape)
    if fixed and len(x_train) < config.batch_size:
        raise InputError(
            f"The model takes batches of exactly {config.batch_size} but there are {len(x_train)} training samples: "
            "use a smaller batch or more data."
        )

    cell = nn.WithLossCell(backbone, loss_fn, label_dtype=y_train.dtype)
    params = ParameterTuple(backbone.trainable_params())
    if not params:
        raise InputError("The model has no trainable weights (no float initializers): there is nothing to train.")
    providers = _providers(config.provider)
    session_config = _session_config(config, ctx)
    grad_fn = ForwardValueAndGrad(cell, params, get_by_list=True, providers=providers, session_config=session_config)
    # On a device, batches go over as OrtValues, so the gradients stay there for the optimizer.
    device = _device.device_of(providers)
    to_device = (lambda a: _device.to_device(a, device)) if _device.resident(device) else (lambda a: a)
    optimizer = optimizer_for(config, params)
    eval_cell = nn.WithLossCell(backbone, nn.make_loss(config.loss, "none"), label_dtype=y_train.dtype)
    evaluate = _Evaluator(backbone, eval_cell, config.batch_size, fixed, classification, providers, session_config)

    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out_dir)
    meta = _start_state(ctx, resume, backbone, optimizer)
    history: list[dict] = list(meta.get("history", []))
    start_epoch = int(meta.get("epoch", len(history)))
    position = _resume_position(meta, ctx, config, resume)
    if resume:
        logger.info("resumed from %s after epoch %d, step %d", resume, start_epoch, position["step"])

    logger.info(
        "training %s on %s: %d train / %d validation samples, %s, %s, %d rank(s)",
        description, data.source, len(x_train), len(x_val), loss_fn, optimizer, ctx.world_size,
    )
    notes = []
    if resume and start_epoch >= config.epochs:
        notes.append(
            f"the checkpoint is at epoch {start_epoch} and --epochs is {config.epochs}: nothing left to train; "
            f"raise --epochs to train on (e.g. --epochs {start_epoch + 10})."
        )

    def save(epoch: int, at: dict | None = None) -> None:
        """Rank 0 writes the checkpoint: after ``epoch`` epochs, plus ``at`` (the sampler's position) mid-epoch."""
        if ctx.is_main:
            position_meta = {"position": at} if at else {}
            meta = {"epoch": epoch, **position_meta, "history": history}
            save_checkpoint(checkpoint_path, backbone, optimizer, meta)

    epoch_loop = _EpochLoop(config, ctx, x_train, y_train, fixed, grad_fn, to_device, optimizer,
                            progress if ctx.is_main else None, save)
    started = time.perf_counter()
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            record = _train_epoch(epoch, epoch_loop, position if epoch == start_epoch + 1 else None)
            with np.errstate(over="ignore", invalid="ignore"):
                record["val_loss"], record["val_accuracy"] = evaluate(x_val, y_val)
            _check_finite(record["val_loss"], f"the validation after epoch {epoch}", optimizer)
            record["seconds"] = time.perf_counter() - record.pop("started")
            history.append(record)
            save(epoch)
            logger.debug("epoch %d: %s", epoch, record)
            if progress is not None and ctx.is_main:
                progress(EpochEvent(epochs=config.epochs, **record))
    except KeyboardInterrupt as interrupt:
        if not ctx.is_main or not os.path.exists(checkpoint_path) or not history:
            raise TrainingInterrupted(None, None) from interrupt
        # The saved epoch's weights and history, not a partial epoch (nor one whose checkpoint write was cut off).
        meta = load_checkpoint(checkpoint_path, backbone, optimizer)
        history, saved = list(meta.get("history", [])), int(meta.get("epoch", 0))
        result = report._finish(config, data, description, backbone, optimizer, history, evaluate, x_val, y_val,
                         len(x_train), time.perf_counter() - started, start_epoch, checkpoint_path, notes,
                         ctx, interrupted=True)
        raise TrainingInterrupted(saved, result) from interrupt
    seconds = time.perf_counter() - started
    if ctx.is_main and not os.path.exists(checkpoint_path):
        save(start_epoch)
    return report._finish(config, data, description, backbone, optimizer, history, evaluate, x_val, y_val,
                   len(x_train), seconds, start_epoch, checkpoint_path, notes, ctx)


def _session_config(config: TrainConfig, ctx: distributed.Context) -> dict:
    """ORT session entries: no spinning, and the intra-op threads (the cores shared by the ranks on a machine)."""
    threads = config.threads
    if threads is None and ctx.local_world_size > 1:
        # torchrun's OMP_NUM_THREADS=1 does not reach ORT's pool: each rank would start one thread per core.
        threads = max(1, (os.cpu_count() or 1) // ctx.local_world_size)
    if threads is None:
        return _NO_SPIN_CONFIG
    if threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}.")
    return {**_NO_SPIN_CONFIG, "intra_op_num_threads": str(threads)}


def _train_epoch(epoch: int, loop: _EpochLoop, resume: dict | None) -> dict:
    """One epoch of steps (from ``resume``'s step on); returns its history record (validation still to fill in)."""
    return loop(epoch, resume)


class _EpochLoop:
    """One epoch of steps on this rank's shard, gradients reduced across the ranks.

    Each step the ranks' batches together hold the samples of one single-process
    batch of ``world_size * batch_size`` (:func:`distributed.shard`); padding is
    left out and a mean loss's gradients are weighted by each rank's samples, so
    the reduced gradient is that batch's gradient whatever the last batch's size.
    """

    def __init__(self, config: TrainConfig, ctx: distributed.Context, x: np.ndarray, y: np.ndarray, fixed: bool,
                 grad_fn: ForwardValueAndGrad, to_device: Callable[[np.ndarray], Any], optimizer: optim.Optimizer,
                 progress: Callable[[StepEvent | EpochEvent], None] | None, save: Callable[..., None]) -> None:
        self.config, self.ctx, self.x, self.y, self.fixed = config, ctx, x, y, fixed
        self.grad_fn, self.to_device, self.optimizer = grad_fn, to_device, optimizer
        self.progress, self.save = progress, save

    def __call__(self, epoch: int, resume: dict | None) -> dict:
        """Trains ``epoch`` (from ``resume``'s step on); returns its history record (validation still to fill in)."""
        config, ctx = self.config, self.ctx
        epoch_start = time.perf_counter()
        part = distributed.shard(len(self.x), ctx.rank, ctx.world_size, epoch=epoch, seed=config.seed)
        steps = part.steps(config.batch_size, drop_last=self.fixed)
        first = resume["step"] if resume else 0
        loss_sum, seen = (resume["loss_sum"], resume["seen"]) if resume else (0.0, 0)
        seen_here = 0
        for step, index in enumerate(part.batches(config.batch_size, drop_last=self.fixed), 1):
            if step <= first:
                continue  # done before the checkpoint this run resumed from
            loss_value, count = self._step(index)
            _check_finite(loss_value, f"epoch {epoch}, step {step}", self.optimizer)
            loss_sum += loss_value * count
            seen += count
            seen_here += count
            if self.progress is not None:
                elapsed = time.perf_counter() - epoch_start
                self.progress(StepEvent(epoch, config.epochs, step, steps, loss_value, seen_here / max(elapsed, 1e-9)))
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < steps:
                at = {"step": step, "global_batch": ctx.world_size * config.batch_size, "loss_sum": loss_sum,
                      "seen": seen}
                self.save(epoch - 1, at)
        train_seconds = time.perf_counter() - epoch_start
        return {
            "epoch": epoch,
            "train_loss": loss_sum / max(seen, 1),
            "val_loss": None,
            "val_accuracy": None,
            "started": epoch_start,
            "samples_per_second": seen_here / max(train_seconds, 1e-9),
        }

    def _step(self, index: np.ndarray) -> tuple[float, int]:
        """One optimizer step; returns the batch's mean loss per sample and its samples (all ranks together)."""
        count = len(index)
        reduction = self.config.reduction
        if count:
            loss, grads = self.grad_fn(self.to_device(self.x[index]), self.to_device(self.y[index]))
            loss_value = float(np.mean(_device.to_host(loss)))
            if reduction == "sum":
                loss_value /= count  # report the mean per sample, like the validation loss
        else:  # this rank's share of the last batch is empty: it adds nothing
            grads = [self.to_device(np.zeros(p.shape, p.dtype)) for p in self.optimizer.params]
            loss_value = 0.0
        if self.ctx.distributed:
            # "none" is differentiated as the sum of its elements.
            grads, (loss_total,), total = distributed._reduce_grads(
                grads, "mean" if reduction == "mean" else "sum", count, (loss_value * count,)
            )
            count = int(total)
            loss_value = float(loss_total) / count
            grads = [g if _device.is_ortvalue(g) else self.to_device(g) for g in grads]
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by the loss
            self.optimizer.step(grads)
        return loss_value, count

