"""Data-parallel training on ``torch.distributed``: the pieces a custom loop needs.

onnxgrad does no communication, rendezvous or process management of its own:
``torchrun`` starts one process per rank and sets their environment, and
``torch.distributed`` (gloo on the CPU, NCCL for CUDA) all-reduces. Each rank
runs ``ForwardValueAndGrad`` on its shard of the batch; :func:`all_reduce_grads`
averages the gradients so that every rank steps the same optimizer with the
same gradients and the parameters stay identical.

- :func:`init` joins the process group torchrun describes (a single-process
  :class:`Context` when not under torchrun, so one script runs either way);
- :func:`all_reduce_grads` reduces the structures ``ForwardValueAndGrad``
  returns (arrays, OrtValues, tuples of them, ``(input part, weight part)``);
- :func:`shard` gives each rank a disjoint share of an epoch with
  ``torch.utils.data.DistributedSampler``'s semantics (shared seed, the same
  reshuffle per epoch, padding to equal length), marking the padding.

torch is imported only when a process group is used: ``pip install
'onnxgrad[distributed]'`` (the CPU build of torch).

Example: a script's training loop, run with ``torchrun --nproc-per-node 2 script.py`` (not a
doctest: it needs the processes torchrun starts; ``scripts/distributed_example.py`` is the whole
script)::

    ctx = onnxgrad.distributed.init()
    fvg = onnxgrad.ForwardValueAndGrad(cell, params, get_by_list=True)
    opt = onnxgrad.optim.SGD(params, 0.1)
    for epoch in range(epochs):
        part = onnxgrad.distributed.shard(len(x), ctx.rank, ctx.world_size, epoch=epoch, seed=0)
        for index in part.batches(batch_size):
            loss, grads = fvg(x[index], y[index])
            opt.step(onnxgrad.distributed.all_reduce_grads(grads))
    onnxgrad.distributed.shutdown()
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
from typing import Any, Iterator, Mapping

import numpy as np

from onnxgrad import _device
from onnxgrad.errors import InputError, RuntimeFailure

__all__ = [
    "DEFAULT_TIMEOUT",
    "Context",
    "Shard",
    "under_torchrun",
    "init",
    "shutdown",
    "context",
    "all_reduce",
    "all_reduce_grads",
    "broadcast_object",
    "epoch_order",
    "shard",
]

logger = logging.getLogger(__name__)

#: Seconds a collective waits for a peer before it fails (the process group's timeout): a hung peer ends the
#: job after this long instead of blocking it forever. torch's own default is 30 minutes.
DEFAULT_TIMEOUT = 300.0

_REDUCE_OPS = ("mean", "sum")


@dataclasses.dataclass(frozen=True)
class Context:
    """Where this process stands in the job.

    Attributes:
        rank: this process's rank, 0 .. world_size - 1.
        world_size: the number of ranks (1: a single process, no process group).
        local_rank: the rank on this machine (the device index for NCCL).
        local_world_size: ranks on this machine (they share its cores).
        backend: ``"gloo"`` or ``"nccl"``; None for a single process.
        restart_count: how often torchrun restarted the group (``--max-restarts``).
        timeout: seconds a collective waits for a peer.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None
    restart_count: int = 0
    timeout: float = DEFAULT_TIMEOUT

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, which writes outputs and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether gradients are reduced across processes."""
        return self.backend is not None


_SINGLE = Context()
_current: Context | None = None


def under_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether torchrun (or another launcher setting ``RANK``/``WORLD_SIZE``) started this process."""
    env = os.environ if environ is None else environ
    return "RANK" in env and "WORLD_SIZE" in env


def _torch_distributed() -> Any:
    try:
        import torch.distributed as dist
    except ImportError as err:
        raise InputError(
            f"Data-parallel training needs torch.distributed ({err}): pip install 'onnxgrad[distributed]' "
            "(the CPU build of torch; README, 'Training on several machines')."
        ) from err
    if not dist.is_available():
        raise InputError("This torch build has no torch.distributed: install the CPU build from PyTorch's index.")
    return dist


def init(
    provider: str = "CPUExecutionProvider", timeout: float = DEFAULT_TIMEOUT, backend: str | None = None
) -> Context:
    """Joins the process group torchrun's environment describes.

    Under torchrun (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``
    set) this calls ``torch.distributed.init_process_group`` once; later calls
    return the same context. Without torchrun it returns a single-process
    context and imports nothing.

    Args:
        provider: the ONNX Runtime execution provider the ranks run on; it
            picks the backend: NCCL for ``CUDAExecutionProvider``, gloo
            otherwise.
        timeout: seconds a collective waits for a peer before it raises (a
            hung or dead peer then ends the job instead of blocking it).
        backend: force a backend (``"gloo"`` or ``"nccl"``).

    Returns:
        The :class:`Context`.

    Raises:
        InputError: torch is missing, or a bad timeout or backend.
    """
    global _current
    if _current is not None:
        return _current
    if not under_torchrun():
        return _SINGLE
    if not timeout > 0:
        raise InputError(f"The process group timeout must be > 0 seconds, got {timeout}.")
    dist = _torch_distributed()
    if backend is None:
        backend = "nccl" if provider == "CUDAExecutionProvider" else "gloo"
    if backend not in ("gloo", "nccl"):
        raise InputError(f"Unknown backend {backend!r}: use 'gloo' (CPU) or 'nccl' (CUDA).")
    env = os.environ
    if not dist.is_initialized():
        _init_process_group(dist, backend, datetime.timedelta(seconds=timeout), env)
    _current = Context(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(env.get("LOCAL_RANK", 0)),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", 1)),
        backend=dist.get_backend(),
        restart_count=int(env.get("TORCHELASTIC_RESTART_COUNT", 0)),
        timeout=timeout,
    )
    logger.info("rank %d of %d joined the %s process group", _current.rank, _current.world_size, _current.backend)
    return _current


def _init_process_group(dist: Any, backend: str, timeout: datetime.timedelta, env: Mapping[str, str]) -> None:
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        dist.init_process_group(backend=backend, timeout=timeout)
        return
    # torchrun's c10d rendezvous keeps one store for every restart of the group, and init_process_group's keys are
    # the same in each attempt: a restarted rank could read the dead group's keys (gloo then connects to a dead
    # rank's port and fails, or the init barrier miscounts). The same store client as env:// makes, under a prefix
    # per attempt.
    store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), int(env["WORLD_SIZE"]), is_master=False,
                          timeout=timeout)
    attempt = f"onnxgrad/{env.get('TORCHELASTIC_RUN_ID', '')}/attempt_{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    dist.init_process_group(backend=backend, store=dist.PrefixStore(attempt, store), rank=int(env["RANK"]),
                            world_size=int(env["WORLD_SIZE"]), timeout=timeout)


def context() -> Context:
    """The current context: the one :func:`init` returned, or a single process before it."""
    return _current if _current is not None else _SINGLE


def shutdown() -> None:
    """Leaves the process group :func:`init` joined (nothing for a single process)."""
    global _current
    if _current is None:
        return
    _current = None
    dist = _torch_distributed()
    if dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------------
# Reductions


def _flatten(tree: Any, leaves: list) -> Any:
    """The structure of ``tree`` with each leaf replaced by its index in ``leaves``."""
    if isinstance(tree, (tuple, list)):
        return type(tree)(_flatten(item, leaves) for item in tree)
    leaves.append(tree)
    return len(leaves) - 1


def _unflatten(structure: Any, leaves: list) -> Any:
    if isinstance(structure, (tuple, list)):
        return type(structure)(_unflatten(item, leaves) for item in structure)
    return leaves[structure]


def _failure(what: str, ctx: Context, err: Exception) -> RuntimeFailure:
    return RuntimeFailure(
        f"{what} across {ctx.world_size} ranks failed on rank {ctx.rank} ({type(err).__name__}: "
        f"{' '.join(str(err).split())[:400]}): a peer died, or did not answer within the process group's timeout "
        f"({ctx.timeout:g} s). Under torchrun --max-restarts the group restarts (and `onnxgrad train` resumes from "
        "its last checkpoint); otherwise check the other ranks' output."
    )


def _reduce_flat(dist: Any, ctx: Context, flat: np.ndarray) -> np.ndarray:
    """Sums a contiguous 1-D array across ranks (through the device for NCCL)."""
    import torch

    tensor = torch.from_numpy(flat)
    if ctx.backend == "nccl":
        tensor = tensor.to(f"cuda:{ctx.local_rank}")
    try:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    except Exception as err:  # gloo/NCCL report timeouts and dead peers as RuntimeError subclasses
        raise _failure("An all-reduce", ctx, err) from err
    return tensor.cpu().numpy() if ctx.backend == "nccl" else flat


def all_reduce(tree: Any, op: str = "sum", bucket: bool = True) -> Any:
    """Sums (or averages) every array of ``tree`` across the ranks.

    Args:
        tree: an array, a number, an OrtValue, or tuples/lists of them (any
            nesting); the result has the same nesting and leaf types (numpy
            in, numpy out; an OrtValue comes back as an OrtValue on its device).
        op: ``"sum"`` or ``"mean"`` (the sum divided by the number of ranks).
            With ``"mean"``, integer leaves (the zero gradients of integer
            inputs) pass through unchanged.
        bucket: one all-reduce per dtype over all leaves concatenated (fewer,
            larger messages); False: one all-reduce per leaf.

    Returns:
        The reduced tree; for a single process, ``tree`` itself.

    Raises:
        InputError: an unknown op or a leaf that is not a tensor.
        RuntimeFailure: a peer died or did not answer within the timeout.
    """
    if op not in _REDUCE_OPS:
        raise InputError(f"Unknown reduction {op!r}: use one of {list(_REDUCE_OPS)}.")
    ctx = context()
    if not ctx.distributed:
        return tree
    dist = _torch_distributed()
    leaves: list = []
    structure = _flatten(tree, leaves)
    arrays = []
    for i, leaf in enumerate(leaves):
        value = _host(leaf)
        if value.dtype.kind not in "biuf":
            raise InputError(f"Leaf {i} of the tree has dtype {value.dtype}: all-reduce takes numeric tensors.")
        arrays.append(value)
    reduce = [i for i, a in enumerate(arrays) if op == "sum" or a.dtype.kind == "f"]
    results = list(arrays)
    groups: dict[Any, list[int]] = {}
    for i in reduce:
        groups.setdefault(arrays[i].dtype if bucket else i, []).append(i)
    for members in groups.values():  # each a bucket: one collective
        flat = np.concatenate([arrays[i].reshape(-1) for i in members]).astype(arrays[members[0]].dtype, copy=False)
        flat = _reduce_flat(dist, ctx, np.ascontiguousarray(flat))
        if op == "mean":
            flat = flat / np.asarray(ctx.world_size, flat.dtype)
        offset = 0
        for i in members:
            size = arrays[i].size
            results[i] = flat[offset : offset + size].reshape(arrays[i].shape)
            offset += size
    out = []
    for leaf, value in zip(leaves, results):
        if isinstance(leaf, (int, float)):
            value = value.item()  # a Python number stays one
        out.append(_like(leaf, value))
    return _unflatten(structure, out)


def _like(leaf: Any, value: np.ndarray) -> Any:
    """``value`` as an OrtValue on ``leaf``'s device (``leaf`` an OrtValue), else ``value``."""
    if not _device.is_ortvalue(leaf):
        return value
    name = leaf.device_name().lower()
    device_id = 0 if name == "cpu" else int(leaf._ortvalue.__dlpack_device__()[1])
    return _device.to_device(value, (name, device_id))


def all_reduce_grads(grads: Any, reduction: str = "mean", samples: int | None = None, bucket: bool = True) -> Any:
    """Reduces the gradients ``ForwardValueAndGrad`` returned on each rank's shard of a batch.

    With a ``mean`` loss every rank's gradient is a mean over its shard, so the
    gradients are averaged; with unequal shards (the last batch of an epoch)
    pass ``samples``, this rank's sample count, and the average is weighted by
    it, which gives exactly the gradient of the mean over the whole batch. With
    a ``sum`` loss the gradients are summed.

    Args:
        grads: what ``ForwardValueAndGrad`` returned as gradients: an array, a
            tuple of arrays (input or weight part), or ``(input part, weight
            part)``; arrays or OrtValues.
        reduction: the loss's reduction, ``"mean"`` or ``"sum"``.
        samples: this rank's samples in the batch (only for ``mean``; 0 is
            allowed: pass zero gradients, they count for nothing).
        bucket: see :func:`all_reduce`.

    Returns:
        The reduced gradients, nested as ``grads``; for a single process,
        ``grads`` itself.

    Raises:
        InputError: a reduction other than mean or sum, or a negative count.
        RuntimeFailure: a peer died or did not answer within the timeout.
    """
    if reduction not in _REDUCE_OPS:
        raise InputError(
            f"all_reduce_grads takes the loss's reduction, 'mean' or 'sum', not {reduction!r}: reduce a 'none' "
            "loss to a scalar first."
        )
    if not context().distributed:
        return grads
    return _reduce_grads(grads, reduction, samples, (), bucket)[0]


def _reduce_grads(
    grads: Any, reduction: str, samples: int | None, extra: tuple[float, ...], bucket: bool = True
) -> tuple[Any, np.ndarray, float]:
    """:func:`all_reduce_grads`, with ``extra`` numbers summed in the same collective (a training loop's loss).

    Returns:
        ``(reduced grads, summed extra, samples of all ranks)``.
    """
    if samples is not None and samples < 0:
        raise InputError(f"samples must be >= 0, got {samples}.")
    leaves: list = []
    structure = _flatten(grads, leaves)
    weighted = reduction == "mean" and samples is not None
    host = [_scaled(leaf, samples) if weighted and samples is not None else _host(leaf) for leaf in leaves]
    dtype = next((h.dtype for h in host if h.dtype.kind == "f"), np.dtype(np.float64))
    stats = np.array([samples or 0, *extra], dtype)  # the grads' dtype: one bucket, one collective
    stats, reduced = all_reduce((stats, host), "sum", bucket)
    count = float(stats[0])
    if reduction == "mean":
        divisor = count if weighted else float(context().world_size)
        if divisor == 0:
            raise InputError("No rank had a sample in this batch: every rank passed samples=0.")
        out = [_divided(leaf, value, divisor) for leaf, value in zip(leaves, reduced)]
    else:
        out = [_like(leaf, value) for leaf, value in zip(leaves, reduced)]
    return _unflatten(structure, out), stats[1:], count


def _host(leaf: Any) -> np.ndarray:
    return _device.to_host(leaf) if _device.is_ortvalue(leaf) else np.asarray(leaf)


def _scaled(leaf: Any, factor: float) -> np.ndarray:
    value = _host(leaf)
    return value * np.asarray(factor, value.dtype) if value.dtype.kind == "f" else value


def _divided(leaf: Any, value: np.ndarray, count: float) -> Any:
    if value.dtype.kind != "f":
        return leaf
    return _like(leaf, value / np.asarray(count, value.dtype))


def broadcast_object(value: Any, source: int = 0) -> Any:
    """Rank ``source``'s ``value`` on every rank (picklable; for a single process, ``value``).

    Raises:
        RuntimeFailure: a peer died or did not answer within the timeout.
    """
    ctx = context()
    if not ctx.distributed:
        return value
    dist = _torch_distributed()
    box = [value if ctx.rank == source else None]
    try:
        dist.broadcast_object_list(box, src=source)
    except Exception as err:
        raise _failure("A broadcast", ctx, err) from err
    return box[0]


# ---------------------------------------------------------------------------------------------------------------
# Sharding


def epoch_order(n: int, epoch: int, seed: int, shuffle: bool = True) -> np.ndarray:
    """The order of ``n`` samples in ``epoch``: the same on every rank (and for one process)."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


@dataclasses.dataclass
class Shard:
    """One rank's samples of an epoch.

    Attributes:
        indices: sample indices, padded to the same length on every rank.
        real: False where ``indices`` is padding (a repeat of a sample from the
            start of the epoch, as DistributedSampler pads); a loop that wants
            the single-process result leaves those out.
        rank: the rank this shard is for.
        world_size: the number of ranks.
        samples: the epoch's samples on all ranks together, padding excluded.
    """

    indices: np.ndarray
    real: np.ndarray
    rank: int = 0
    world_size: int = 1
    samples: int = 0

    def __len__(self) -> int:
        return len(self.indices)

    def steps(self, batch_size: int, drop_last: bool = False) -> int:
        """The number of batches :meth:`batches` yields: the same on every rank."""
        if drop_last:
            return self.samples // (batch_size * self.world_size)
        return math.ceil(len(self.indices) / batch_size)

    def batches(self, batch_size: int, drop_last: bool = False, keep_padding: bool = False) -> Iterator[np.ndarray]:
        """This rank's batches of ``batch_size`` indices, in order.

        Step ``k`` of all ranks together holds the samples of step ``k`` of a
        single process with batch ``batch_size * world_size`` (padding left
        out). Every rank yields the same number of batches; the last may be
        short, or even empty on some ranks: still call the all-reduce
        (:func:`all_reduce_grads` with ``samples=0`` and zero gradients).

        Args:
            batch_size: samples per rank and step.
            drop_last: leave out the last step unless it is full on every rank.
            keep_padding: yield the padding too (DistributedSampler's batches).

        Raises:
            InputError: a batch size below 1.
        """
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}.")
        for step in range(self.steps(batch_size, drop_last)):
            part = slice(step * batch_size, (step + 1) * batch_size)
            yield self.indices[part] if keep_padding else self.indices[part][self.real[part]]


def shard(
    n: int,
    rank: int,
    world_size: int,
    epoch: int = 0,
    seed: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Shard:
    """This rank's share of an epoch of ``n`` samples, as ``torch.utils.data.DistributedSampler`` shares it.

    The epoch's order (:func:`epoch_order`: seeded by ``seed`` and ``epoch``,
    the same on every rank) is padded with its first samples to a multiple of
    ``world_size`` and dealt out in turn: rank ``r`` gets positions ``r, r +
    world_size, ...``. With ``drop_last`` the tail is cut instead of padded.
    Unlike DistributedSampler the order is numpy's, the one a single process
    (``world_size=1``) uses, so that ``world_size`` ranks with batch ``B``
    see the batches of one process with batch ``world_size * B``.

    Args:
        n: the number of samples.
        rank: this rank.
        world_size: the number of ranks.
        epoch: the epoch (reshuffles).
        seed: shared by every rank.
        shuffle: False: the samples in order.
        drop_last: cut the tail instead of padding.

    Raises:
        InputError: a rank outside ``[0, world_size)`` or fewer samples than ranks.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"rank {rank} is not in [0, {world_size}): pass the context's rank and world_size.")
    if n < world_size:
        raise InputError(f"{n} sample(s) cannot be shared by {world_size} ranks: use more data or fewer ranks.")
    order = epoch_order(n, epoch, seed, shuffle)
    total = (n // world_size) * world_size if drop_last else math.ceil(n / world_size) * world_size
    mine = np.arange(rank, total, world_size)  # positions in the epoch's order
    return Shard(order[mine % n], mine < n, rank, world_size, min(n, total))
