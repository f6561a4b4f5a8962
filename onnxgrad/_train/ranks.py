"""Glue between training and :mod:`onnxgrad.distributed`: which checkpoint a rank starts from, rank 0's
state sent to every rank, and where in its epoch a checkpoint stopped."""

from __future__ import annotations

import io
import os
from typing import Any

from onnxgrad import distributed, optim
from onnxgrad._network import Network
from onnxgrad._train.checkpoint import _checkpoint_bytes, _restore, load_checkpoint
from onnxgrad._train.config import TrainConfig
from onnxgrad.errors import InputError


def _resume_from(config: TrainConfig, ctx: distributed.Context, checkpoint_path: str) -> str | None:
    """The checkpoint to start from (rank 0 decides; other ranks get its state): ``--resume``'s, the run's own
    after torchrun restarted the group, or none.

    Raises:
        InputError: ``out_dir`` holds an earlier run's checkpoint and neither resume nor force was asked for.
    """
    if config.resume:
        return config.resume
    if not ctx.is_main or not os.path.exists(checkpoint_path):
        return None
    if ctx.restart_count > 0:
        return checkpoint_path  # torchrun --max-restarts restarted the group: go on from the last checkpoint
    if not config.force:
        raise InputError(
            f"{config.out_dir!r} holds the checkpoint of an earlier run: continue it with --resume, overwrite it "
            "with --force, or choose another --out-dir."
        )
    if ctx.distributed:  # a restart before this run's first checkpoint must not resume the earlier run
        os.remove(checkpoint_path)
    return None


def _start_state(ctx: distributed.Context, resume: str | None, backbone: Network, optimizer: optim.Optimizer) -> dict:
    """Restores the checkpoint (if any); under torchrun rank 0 sends its weights, optimizer state and
    checkpoint metadata to every rank, so that all start identical (as DDP does) even where only rank 0's
    disk holds the checkpoint or a framework model drew different initial weights per rank."""
    if not ctx.distributed:
        return load_checkpoint(resume, backbone, optimizer) if resume else {}
    state: tuple[str, Any] = ("ok", None)
    meta: dict = {}
    if ctx.is_main:
        try:
            meta = load_checkpoint(resume, backbone, optimizer) if resume else {}
            state = ("ok", _checkpoint_bytes(backbone, optimizer, meta))
        except InputError as err:
            state = ("error", str(err))
    kind, payload = distributed.broadcast_object(state)
    if kind == "error":
        raise InputError(payload)
    if not ctx.is_main:
        meta = _restore(io.BytesIO(payload), "rank 0's checkpoint", backbone, optimizer)
    return meta


def _resume_position(meta: dict, ctx: distributed.Context, config: TrainConfig, resume: str | None) -> dict:
    """Where in its epoch the checkpoint stopped: ``{"step", "global_batch", "loss_sum", "seen"}``.

    Raises:
        InputError: a mid-epoch checkpoint written with another global batch (ranks x batch size).
    """
    position = {"step": 0, "global_batch": ctx.world_size * config.batch_size, "loss_sum": 0.0, "seen": 0}
    saved = meta.get("position")
    if not saved:
        return position
    if saved["global_batch"] != position["global_batch"]:
        raise InputError(
            f"{resume!r} was written mid-epoch with a global batch of {saved['global_batch']} samples (ranks x "
            f"batch size); this run has {ctx.world_size} x {config.batch_size}: resume with the same number of "
            "ranks and --batch-size, or from a checkpoint written at the end of an epoch."
        )
    return saved

