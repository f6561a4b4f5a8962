#!/usr/bin/env python3
"""Data-parallel step time on this machine: one process against ranks started by torchrun.

For each model (the bundled digits MLP, 64-64-10, and an MLP 784-512-256-10) the same global batch is
trained by one process and by ``--ranks`` ranks (each with the global batch divided among them), on
the same cores. The ranks' parameters after the run are checked against the single process's (float32
rounding grown over the steps; the largest difference is printed), and it reports per step: the whole
step, the forward+backward, the all-reduce and the optimizer; the bytes each rank all-reduces; and
the all-reduce of the gradients as one flat bucket against one all-reduce per tensor, interleaved.

    python scripts/bench_distributed.py [--ranks 2] [--steps 200] [--json]

The parent launches ``torch.distributed.run`` (torchrun) for the ranks and runs the single process
itself; the workers print one JSON line each (rank 0).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {"digits_mlp 64-64-10": (64, [64], 10, 256), "mlp 784-512-256-10": (784, [512, 256], 10, 256)}


def mlp(inputs: int, hidden: list[int], classes: int, seed: int = 0) -> onnx.ModelProto:
    """An MLP (Gemm + Relu), He-initialised with a fixed seed."""
    rng = np.random.default_rng(seed)
    sizes = [inputs, *hidden, classes]
    nodes, inits, x = [], [], "x"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:]), 1):
        inits += [numpy_helper.from_array(rng.normal(0, np.sqrt(2 / a), (a, b)).astype(np.float32), f"fc{i}.weight"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"fc{i}.bias")]
        out = "logits" if i == len(sizes) - 1 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [x, f"fc{i}.weight", f"fc{i}.bias"], [out], name=f"fc{i}"))
        if out != "logits":
            nodes.append(helper.make_node("Relu", [out], [f"a{i}"], name=f"relu{i}"))
            x = f"a{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", inputs])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _median_ms(times: list[float]) -> float:
    return float(np.median(times) * 1e3)


def worker(name: str, steps: int, warmup: int, out: str | None) -> dict:
    """Trains ``name`` for ``warmup + steps`` steps on this rank's shard; times each part of the step."""
    import onnxgrad
    from onnxgrad import distributed

    ctx = distributed.init()
    inputs, hidden, classes, global_batch = MODELS[name]
    rng = np.random.default_rng(1)
    samples = global_batch * 8
    x = rng.normal(size=(samples, inputs)).astype(np.float32)
    y = rng.integers(0, classes, samples).astype(np.int64)
    loss_fn = onnxgrad.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    cell = onnxgrad.nn.WithLossCell(onnxgrad.load(mlp(inputs, hidden, classes)), loss_fn)
    params = onnxgrad.ParameterTuple(cell.trainable_params())
    threads = max(1, (os.cpu_count() or 1) // ctx.local_world_size)
    config = {"intra_op_num_threads": str(threads), "session.intra_op.allow_spinning": "0"}
    grad_fn = onnxgrad.ForwardValueAndGrad(cell, params, get_by_list=True, session_config=config)
    optimizer = onnxgrad.optim.SGD(params, 0.05, momentum=0.9)
    batch = global_batch // ctx.world_size
    parts = {"step": [], "forward_backward": [], "all_reduce": [], "optimizer": []}
    epoch, batches = 0, iter(())
    for step in range(warmup + steps):
        index = next(batches, None)
        if index is None:
            epoch += 1
            batches = distributed.shard(samples, ctx.rank, ctx.world_size, epoch=epoch).batches(batch)
            index = next(batches)
        t0 = time.perf_counter()
        _, grads = grad_fn(x[index], y[index])
        t1 = time.perf_counter()
        grads = distributed.all_reduce_grads(grads, "mean", samples=len(index))
        t2 = time.perf_counter()
        optimizer.step(grads)
        t3 = time.perf_counter()
        if step >= warmup:
            for key, value in zip(parts, (t3 - t0, t1 - t0, t2 - t1, t3 - t2)):
                parts[key].append(value)
    result = {"model": name, "ranks": ctx.world_size, "threads_per_rank": threads, "global_batch": global_batch,
              **{f"{k}_ms": _median_ms(v) for k, v in parts.items()},
              "grad_bytes": int(sum(p.value.nbytes for p in params))}
    if ctx.distributed:  # the reduction alone, bucketed against per tensor, interleaved
        flat, per_tensor = [], []
        for _ in range(steps):
            for bucket, times in ((True, flat), (False, per_tensor)):
                t0 = time.perf_counter()
                distributed.all_reduce_grads(grads, "mean", samples=batch, bucket=bucket)
                times.append(time.perf_counter() - t0)
        result.update(all_reduce_flat_ms=_median_ms(flat), all_reduce_per_tensor_ms=_median_ms(per_tensor),
                      tensors=len(params))
    if out and ctx.is_main:
        np.savez(out, **{p.name: p.value for p in params})
    distributed.shutdown()
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _run(command: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args.worker, args.steps, args.warmup, args.out)
        if "RANK" not in os.environ or os.environ["RANK"] == "0":
            print(json.dumps(result), flush=True)
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            common = [__file__, "--worker", name, "--steps", str(args.steps), "--warmup", str(args.warmup)]
            single = _run([sys.executable, *common, "--out", os.path.join(tmp, "single.npz")])
            ranks = _run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
                          f"--nproc-per-node={args.ranks}", "--rdzv-backend=c10d",
                          f"--rdzv-endpoint=localhost:{_free_port()}", *common,
                          "--out", os.path.join(tmp, "ranks.npz")])
            with np.load(os.path.join(tmp, "single.npz")) as a, np.load(os.path.join(tmp, "ranks.npz")) as b:
                # Numerics before timing: the same training, to float32 rounding grown over the steps.
                ranks["max_param_difference"] = max(float(np.max(np.abs(b[k] - a[k]))) for k in a.files)
            if not ranks["max_param_difference"] < 1e-3:
                raise SystemExit(f"{name}: {args.ranks} ranks trained other weights than one process "
                                 f"(max difference {ranks['max_param_difference']:.3g})")
            rows += [single, ranks]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<22}{'ranks':>6}{'thr':>5}{'step ms':>9}{'fwd+bwd':>9}{'reduce':>8}{'optim':>7}"
          f"{'bytes/step':>12}{'flat ms':>9}{'per-tensor ms':>15}{'max diff':>10}")
    for r in rows:
        flat = f"{r['all_reduce_flat_ms']:.3f}" if "all_reduce_flat_ms" in r else "-"
        per = f"{r['all_reduce_per_tensor_ms']:.3f}" if "all_reduce_per_tensor_ms" in r else "-"
        print(f"{r['model']:<22}{r['ranks']:>6}{r['threads_per_rank']:>5}{r['step_ms']:>9.3f}"
              f"{r['forward_backward_ms']:>9.3f}{r['all_reduce_ms']:>8.3f}{r['optimizer_ms']:>7.3f}"
              f"{r['grad_bytes'] if r['ranks'] > 1 else 0:>12,}{flat:>9}{per:>15}"
              f"{r.get('max_param_difference', 0):>10.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
