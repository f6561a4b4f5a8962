"""Data-parallel training on torch.distributed (gloo, 2 ranks on localhost, started by torchrun).

Two ranks with batch B must train exactly as one process with batch 2B (within float32 rounding: the
gradients are summed in another order): every parameter, the optimizer state and the metrics, for SGD,
Momentum and Adam, a mean and a sum loss, and a training set that divides neither into batches nor
between the ranks. A rank killed mid-epoch under ``--max-restarts`` must end in the same result; a hung
peer must end the job after the process group's timeout.

Each torchrun launch costs seconds, so one launch trains several configurations and every assertion of
a configuration reads the same run. Every launch runs under a timeout: a hang fails, it never blocks.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from onnxgrad import _train, distributed
from onnxgrad.errors import InputError

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _gloo() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return dist.is_available() and dist.is_gloo_available()


needs_gloo = pytest.mark.skipif(not _gloo(), reason="needs torch with torch.distributed and gloo (the .[all] extra)")

RANKS, BATCH = 2, 8
#: 251 digits, a fifth held out: 201 training samples, neither a multiple of the global batch (16) nor of
#: the ranks, so the last batch is short (9 samples: 5 + 4) and the sampler pads rank 1 by one sample.
SAMPLES = 251
#: Float32 tolerance: the ranks' gradients are summed in another order than one batch's.
RTOL, ATOL = 2e-5, 2e-6
LAUNCH_TIMEOUT = 240


# ---------------------------------------------------------------------------------------------------------------
# The sharding helper (numpy only)


def test_shards_are_disjoint_padded_to_equal_length_and_reshuffled_per_epoch():
    n, world = 11, 3
    shards = [distributed.shard(n, r, world, epoch=4, seed=7) for r in range(world)]
    assert {len(s) for s in shards} == {4}  # ceil(11 / 3), padded
    real = np.concatenate([s.indices[s.real] for s in shards])
    np.testing.assert_array_equal(np.sort(real), np.arange(n))  # every sample once, padding left out
    assert sum(int((~s.real).sum()) for s in shards) == 1
    order = distributed.epoch_order(n, 4, 7)
    for rank, s in enumerate(shards):  # dealt out in turn from the epoch's order, padded from its start
        np.testing.assert_array_equal(s.indices, np.resize(order, 12)[rank::world])
    again = distributed.shard(n, 1, world, epoch=4, seed=7)
    np.testing.assert_array_equal(again.indices, shards[1].indices)  # the same on every call
    other = distributed.shard(n, 1, world, epoch=5, seed=7)
    assert not np.array_equal(other.indices, shards[1].indices)  # reshuffled per epoch


@pytest.mark.parametrize("n, batch", [(201, 8), (32, 8), (17, 4)])
def test_step_k_of_all_ranks_holds_the_single_process_batch_k(n, batch):
    single = list(distributed.shard(n, 0, 1, epoch=2, seed=3).batches(RANKS * batch))
    ranks = [list(distributed.shard(n, r, RANKS, epoch=2, seed=3).batches(batch)) for r in range(RANKS)]
    assert [len(b) for b in ranks[0]] and len({len(r) for r in ranks}) == 1  # same step count on every rank
    assert len(ranks[0]) == len(single)
    for step, whole in enumerate(single):
        together = np.concatenate([r[step] for r in ranks])
        np.testing.assert_array_equal(np.sort(together), np.sort(whole), err_msg=f"step {step}")


def test_drop_last_keeps_only_steps_full_on_every_rank():
    parts = [distributed.shard(21, r, RANKS, seed=1) for r in range(RANKS)]
    batches = [list(p.batches(4, drop_last=True)) for p in parts]
    assert [len(b) for b in batches] == [2, 2] and all(len(x) == 4 for b in batches for x in b)


def test_shard_refuses_a_rank_outside_the_world_and_too_few_samples():
    with pytest.raises(InputError, match=r"rank 2 is not in \[0, 2\)"):
        distributed.shard(10, 2, 2)
    with pytest.raises(InputError, match="1 sample\\(s\\) cannot be shared by 2 ranks"):
        distributed.shard(1, 0, 2)


def test_a_single_process_reduces_nothing():
    grads = (np.ones(3, np.float32), [np.zeros((2, 2), np.float32)])
    assert not distributed.context().distributed
    assert distributed.all_reduce_grads(grads) is grads
    assert distributed.all_reduce(grads) is grads
    with pytest.raises(InputError, match="'mean' or 'sum', not 'none'"):
        distributed.all_reduce_grads(grads, "none")


@needs_gloo
@pytest.mark.parametrize("n, world, drop_last", [(10, 3, False), (10, 3, True), (7, 2, False), (8, 4, False)])
def test_unshuffled_shards_are_distributed_samplers(n, world, drop_last):
    from torch.utils.data import DistributedSampler

    for rank in range(world):
        sampler = DistributedSampler(range(n), world, rank, shuffle=False, drop_last=drop_last)
        ours = distributed.shard(n, rank, world, shuffle=False, drop_last=drop_last)
        np.testing.assert_array_equal(ours.indices, list(sampler), err_msg=f"rank {rank}")


# ---------------------------------------------------------------------------------------------------------------
# Launching torchrun


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _torchrun(*args: str, max_restarts: int = 0) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={RANKS}",
        "--rdzv-backend=c10d", f"--rdzv-endpoint=localhost:{_free_port()}", f"--max-restarts={max_restarts}",
        "--monitor-interval=0.2", *args,
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _start(command: list[str], log: pathlib.Path) -> subprocess.Popen:
    # A session of its own, so that a timeout can end torchrun and every rank it started.
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait(process: subprocess.Popen, log: pathlib.Path, timeout: float = LAUNCH_TIMEOUT) -> str:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail(f"torchrun did not finish within {timeout} s:\n{log.read_text()[-4000:]}")
    return log.read_text()


def _run(command: list[str], log: pathlib.Path, timeout: float = LAUNCH_TIMEOUT) -> str:
    return _wait(_start(command, log), log, timeout)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> pathlib.Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=(digits.data[:SAMPLES] / 16.0).astype(np.float32), y=digits.target[:SAMPLES].astype(np.int64))
    return path


def _settings(data: pathlib.Path, optimizer: str, reduction: str, **more) -> dict:
    lr = {"sgd": 0.2, "momentum": 0.05, "adam": 0.01}[optimizer] / (2 * BATCH if reduction == "sum" else 1)
    return {"data": str(data), "optimizer": optimizer, "reduction": reduction, "learning_rate": lr, "epochs": 2,
            **more}


def _single(settings: dict, out_dir: pathlib.Path) -> _train.TrainResult:
    """The reference: one process, batch RANKS * BATCH."""
    return _train.train(_train.TrainConfig(out_dir=str(out_dir), batch_size=RANKS * BATCH, **settings))


def _checkpoint(path: str | pathlib.Path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files if key != "meta"}
        meta = json.loads(str(archive["meta"]))
    return arrays, meta


def _assert_same_training(got_dir: pathlib.Path, want: _train.TrainResult) -> None:
    """Every parameter, the optimizer state and every epoch's metrics of two runs agree."""
    got, got_meta = _checkpoint(got_dir / _train.CHECKPOINT)
    expected, want_meta = _checkpoint(want.checkpoint_path)
    assert sorted(got) == sorted(expected)
    assert any(k.startswith("param/") for k in got) and any(k.startswith("optim/") for k in got)
    for key, value in expected.items():
        assert got[key].shape == value.shape and got[key].dtype == value.dtype, key
        if value.dtype.kind == "f":
            np.testing.assert_allclose(got[key], value, rtol=RTOL, atol=ATOL, err_msg=key)
        else:  # the optimizer's kind and step count
            np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert got_meta["epoch"] == want_meta["epoch"] == len(want.history)
    for mine, theirs in zip(got_meta["history"], want.history, strict=True):
        for field in ("epoch", "train_loss", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(mine[field], theirs[field], rtol=RTOL, err_msg=f"epoch {theirs['epoch']} {field}")
    metrics = json.loads((got_dir / _train.METRICS).read_text())
    np.testing.assert_allclose(metrics["val_loss"], want.val_loss, rtol=RTOL)
    assert metrics["world_size"] == RANKS and metrics["val_samples"] == want.val_samples


# ---------------------------------------------------------------------------------------------------------------
# Equivalence: 2 ranks x batch B == 1 process x batch 2B

#: Trained by one torchrun launch of _RUNNER (the Python API under torchrun).
SCRIPTED = [(o, r) for o in ("sgd", "momentum", "adam") for r in ("mean", "sum") if (o, r) != ("adam", "mean")]

_RUNNER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from onnxgrad import _train, distributed

    ctx = distributed.init(timeout=120)
    real_finish = _train.report._finish

    def finish(config, data, description, backbone, *args, **kwargs):
        # Every rank's final weights: the ranks must hold the same ones.
        np.savez(f"{config.out_dir}-rank{ctx.rank}.npz", **{p.name: p.value for p in backbone.trainable_params()})
        return real_finish(config, data, description, backbone, *args, **kwargs)

    _train.report._finish = finish
    for out_dir, settings in json.loads(sys.argv[1]).items():
        result = _train.train(_train.TrainConfig(out_dir=out_dir, batch_size=int(sys.argv[2]), **settings))
        assert result.world_size == ctx.world_size and result.rank == ctx.rank
    distributed.shutdown()
    """
)


@pytest.fixture(scope="module")
def scripted_runs(tmp_path_factory, data) -> pathlib.Path:
    if not _gloo():
        pytest.skip("needs torch with torch.distributed and gloo (the .[all] extra)")
    root = tmp_path_factory.mktemp("ranks")
    script = root / "runner.py"
    script.write_text(_RUNNER)
    runs = {str(root / f"{o}-{r}"): _settings(data, o, r) for o, r in SCRIPTED}
    output = _run(_torchrun(str(script), json.dumps(runs), str(BATCH)), root / "log.txt")
    for out_dir in runs:
        assert os.path.exists(os.path.join(out_dir, _train.CHECKPOINT)), output[-4000:]
    return root


@needs_gloo
@pytest.mark.parametrize("optimizer, reduction", SCRIPTED)
def test_two_ranks_train_as_one_process_with_twice_the_batch(scripted_runs, data, tmp_path, optimizer, reduction):
    settings = _settings(data, optimizer, reduction)
    want = _single(settings, tmp_path / "single")
    run_dir = scripted_runs / f"{optimizer}-{reduction}"
    _assert_same_training(run_dir, want)
    ranks = [np.load(f"{run_dir}-rank{r}.npz") for r in range(RANKS)]
    for name in ranks[0].files:  # every rank stepped the same optimizer with the same gradients
        np.testing.assert_array_equal(ranks[1][name], ranks[0][name], err_msg=name)
    assert not list(run_dir.parent.glob(f"{run_dir.name}/*.tmp-*"))


@needs_gloo
def test_onnxgrad_train_nproc_per_node_trains_as_one_process_with_twice_the_batch(data, tmp_path):
    settings = _settings(data, "adam", "mean")
    out_dir = tmp_path / "two"
    command = [
        sys.executable, "-m", "onnxgrad", "train", "--nproc-per-node", str(RANKS), "--data", str(data),
        "--optimizer", "adam", "--lr", str(settings["learning_rate"]), "--epochs", "2",
        "--batch-size", str(BATCH), "--out-dir", str(out_dir), "--json",
    ]
    output = _run(command, tmp_path / "log.txt")
    result = json.loads(output[output.index("{\n"):output.rindex("}") + 1])  # rank 0 alone prints the result
    assert result["world_size"] == RANKS and output.count('"world_size"') == 1, output
    assert output.count("epoch 2/2") == 1  # progress from rank 0 only
    _assert_same_training(out_dir, _single(settings, tmp_path / "single"))
    for name in (_train.MODEL, _train.CURVE, _train.METRICS):
        assert (out_dir / name).is_file(), name


# ---------------------------------------------------------------------------------------------------------------
# Fault tolerance


def _children(pid: int) -> list[int]:
    found = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _rank_pid(root: int, rank: int) -> int | None:
    """The process below ``root`` that torchrun started as ``rank``."""
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"TORCHELASTIC_RUN_ID" in b"".join(environ):
            return pid
        stack += _children(pid)
    return None


def _mid_epoch_checkpoint(path: pathlib.Path) -> bool:
    try:
        _, meta = _checkpoint(path)
    except (OSError, ValueError, KeyError, EOFError):
        return False  # not written yet
    return meta["epoch"] >= 1 and bool(meta.get("position"))


@needs_gloo
def test_a_rank_killed_mid_epoch_restarts_the_group_which_resumes_to_the_same_result(data, tmp_path):
    settings = _settings(data, "momentum", "mean", epochs=12)
    out_dir = tmp_path / "restarted"
    command = _torchrun(
        "-m", "onnxgrad", "-v", "train", "--data", str(data), "--optimizer", "momentum", "--lr",
        str(settings["learning_rate"]), "--epochs", "12", "--batch-size", str(BATCH), "--out-dir", str(out_dir),
        "--checkpoint-every", "1", "--timeout", "60", max_restarts=1,
    )
    log = tmp_path / "log.txt"
    process = _start(command, log)
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    killed = None
    while killed is None and process.poll() is None and time.monotonic() < deadline:
        if _mid_epoch_checkpoint(out_dir / _train.CHECKPOINT):
            pid = _rank_pid(process.pid, 1)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)  # mid-epoch: the last checkpoint is between two steps
                killed = pid
        time.sleep(0.02)
    output = _wait(process, log)
    assert killed is not None, f"the run ended before a rank could be killed:\n{output[-4000:]}"
    assert process.returncode == 0, output[-4000:]
    assert "resumed from" in output and "after epoch" in output, output[-4000:]
    _assert_same_training(out_dir, _single(settings, tmp_path / "single"))


_HUNG = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from onnxgrad import distributed

    ctx = distributed.init(timeout=float(sys.argv[1]))
    grads = (np.ones(3, np.float32),)
    np.testing.assert_array_equal(distributed.all_reduce_grads(grads)[0], grads[0])
    if ctx.rank == 1:
        time.sleep(600)  # hung: never joins the next all-reduce
    distributed.all_reduce_grads(grads)
    """
)


@needs_gloo
def test_a_hung_peer_ends_the_job_after_the_process_group_timeout(tmp_path):
    script = tmp_path / "hung.py"
    script.write_text(_HUNG)
    process = _start(_torchrun(str(script), "3"), tmp_path / "log.txt")
    output = _wait(process, tmp_path / "log.txt", timeout=120)
    assert process.returncode != 0
    assert "RuntimeFailure: An all-reduce across 2 ranks failed on rank 0" in output, output[-4000:]
    assert "did not answer within the process group's timeout (3 s)" in output


# ---------------------------------------------------------------------------------------------------------------
# The scripts (one process: nothing to launch)


def _script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_custom_loop_example_on_two_ranks_trains_as_one_process_with_twice_the_batch(tmp_path):
    pytest.importorskip("sklearn", reason="the example trains on scikit-learn's digits (the train extra)")
    example = _script("distributed_example")
    args = ["--epochs", "2", "--samples", "301"]  # 301: the last batch is short and rank 1 is padded
    alone = tmp_path / "alone.npz"
    assert example.main([*args, "--batch-size", str(RANKS * BATCH), "--out", str(alone)]) == 0
    if not _gloo():
        pytest.skip("the two-rank half needs torch with torch.distributed and gloo (the .[all] extra)")
    ranks = tmp_path / "ranks.npz"
    command = _torchrun(str(ROOT / "scripts" / "distributed_example.py"), *args, "--batch-size", str(BATCH),
                        "--out", str(ranks))
    output = _run(command, tmp_path / "log.txt")
    assert output.count("epoch 2: train loss") == 1 and "(2 rank(s))" in output, output[-4000:]
    with np.load(alone) as want, np.load(ranks) as got:
        assert sorted(got.files) == sorted(want.files) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
        for name in want.files:
            np.testing.assert_allclose(got[name], want[name], rtol=RTOL, atol=ATOL, err_msg=name)


def test_the_benchmark_worker_times_every_part_of_a_step():
    bench = _script("bench_distributed")
    result = bench.worker("digits_mlp 64-64-10", steps=3, warmup=1, out=None)
    assert result["ranks"] == 1 and result["grad_bytes"] == 4 * (64 * 64 + 64 + 64 * 10 + 10)
    assert all(result[f"{k}_ms"] >= 0 for k in ("step", "forward_backward", "all_reduce", "optimizer"))
