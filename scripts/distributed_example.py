#!/usr/bin/env python3
"""A custom data-parallel training loop with :mod:`onnxgrad.distributed`.

Each rank differentiates the bundled MLP (``models/digits_mlp.onnx``) on its
shard of every batch, the gradients are all-reduced, and every rank steps the
same optimizer, so the weights stay identical. ``--batch-size`` is per rank:
two ranks with batch B train as one process with batch 2B.

Run it on one machine with two ranks, or as a single process::

    torchrun --nproc-per-node 2 scripts/distributed_example.py --epochs 3
    python scripts/distributed_example.py --epochs 3 --batch-size 64

Rank 0 prints one line per epoch and, with ``--out``, saves the weights
(``np.load(out)[name]``).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import onnxgrad
from onnxgrad import distributed

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "digits_mlp.onnx")


def digits(samples: int | None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (pixels in [0, 1]), the first ``samples`` of them."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)
    return x[:samples], y[:samples]


def train(epochs: int, batch_size: int, learning_rate: float, samples: int | None, seed: int = 0) -> dict:
    """Trains the MLP data-parallel (or alone outside torchrun); returns the weights by name."""
    ctx = distributed.init()
    x, y = digits(samples)
    loss_fn = onnxgrad.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    cell = onnxgrad.nn.WithLossCell(onnxgrad.load(MODEL), loss_fn)
    params = onnxgrad.ParameterTuple(cell.trainable_params())
    # Ranks on one machine share its cores: one ORT thread pool per rank, sized to its share.
    threads = max(1, (os.cpu_count() or 1) // ctx.local_world_size)
    grad_fn = onnxgrad.ForwardValueAndGrad(
        cell, params, get_by_list=True, session_config={"intra_op_num_threads": str(threads)}
    )
    optimizer = onnxgrad.optim.SGD(params, learning_rate, momentum=0.9)
    for epoch in range(1, epochs + 1):
        part = distributed.shard(len(x), ctx.rank, ctx.world_size, epoch=epoch, seed=seed)
        total = 0.0
        for index in part.batches(batch_size):
            if len(index):
                loss, grads = grad_fn(x[index], y[index])
            else:  # this rank's share of the last batch is empty: it still joins the all-reduce
                loss, grads = np.float32(0), [np.zeros_like(p.value) for p in params]
            # Weighted by each rank's samples: the gradient of the mean over the whole batch.
            grads = distributed.all_reduce_grads(grads, "mean", samples=len(index))
            optimizer.step(grads)
            total += float(loss) * len(index)
        epoch_loss = float(distributed.all_reduce(np.array([total]))[0]) / len(x)
        if ctx.is_main:
            print(f"epoch {epoch}: train loss {epoch_loss:.4f} ({ctx.world_size} rank(s))", flush=True)
    return {p.name: p.value.copy() for p in params}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--samples", type=int, default=None, help="use the first N digits (default: all)")
    parser.add_argument("--out", help="save the trained weights to this .npz (rank 0)")
    args = parser.parse_args(argv)
    weights = train(args.epochs, args.batch_size, args.lr, args.samples)
    if args.out and distributed.context().is_main:
        np.savez(args.out, **weights)
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
