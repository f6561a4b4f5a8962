"""``onnxgrad train`` and ``scripts/convert_and_train.py``: the bundled default,
data formats, optimizers, checkpoints (resume, interrupted writes), framework
models, progress output and argument errors."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxgrad import _files, _train

# The main job's data set, loss curve and these tests' data come with the train extra (CI's core-only run lacks it).
pytest.importorskip("sklearn", reason="scikit-learn is in the train extra")
pytest.importorskip("matplotlib", reason="matplotlib is in the train extra")

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIGITS = ROOT / "models" / "digits_mlp.onnx"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def train_json(cli, out_dir: pathlib.Path, *argv: str) -> dict:
    code, out, err = cli("train", "--out-dir", out_dir, "--json", *argv)
    assert code == 0, err
    return json.loads(out)


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)


def _session_accuracy(model_path: str, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of a saved model run by a bare InferenceSession (batches padded to a fixed size if needed)."""
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    (info,) = session.get_inputs()
    batch = info.shape[0] if isinstance(info.shape[0], int) else len(x)
    predictions = []
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        real = len(xb)
        if real < batch:
            xb = np.concatenate([xb, np.repeat(xb[-1:], batch - real, axis=0)])
        (logits,) = session.run(None, {info.name: xb})
        predictions.append(np.argmax(logits[:real], axis=-1))
    return float(np.mean(np.concatenate(predictions) == y))


def _validation_split(seed: int = 0, fraction: float = 0.2):
    x, y = _digits()
    _, _, x_val, y_val = _train.split(_train.Dataset(x, y, "digits"), fraction, seed)
    return x_val, y_val


def _weights(model_path: str) -> dict[str, np.ndarray]:
    return {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(model_path).graph.initializer}


# --------------------------------------------------------------------------------------------------------------
# The bundled default


def test_bundled_default_reaches_95_percent_and_the_saved_model_agrees(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output folder is runs/digits under the current folder
    start = time.perf_counter()
    code, out, err = cli("train")
    elapsed = time.perf_counter() - start
    assert code == 0, err
    assert elapsed < 60, f"the bundled default took {elapsed:.1f} s"
    run_dir = tmp_path / "runs" / "digits"

    metrics = json.loads((run_dir / "metrics.json").read_text())
    accuracy = metrics["val_accuracy"]
    assert accuracy >= 0.95
    assert len(metrics["history"]) == 20 and metrics["train_samples"] == 1438 and metrics["val_samples"] == 359
    assert f"val accuracy {100 * accuracy:.1f}%" in out
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0] / 10

    # Per-epoch summaries on stderr, no progress bar (stderr is not a terminal here).
    epochs = [line for line in err.splitlines() if re.match(r"epoch +\d+/20  train loss", line)]
    assert len(epochs) == 20 and "\r" not in err

    # The saved model: inference only, run by a bare session, reaches the reported accuracy.
    model_path = str(run_dir / "model.onnx")
    model = onnx.load(model_path)
    assert [i.name for i in model.graph.input] == ["x"] and [o.name for o in model.graph.output] == ["logits"]
    assert {n.domain for n in model.graph.node} == {""}, "training ops left in the inference model"
    x_val, y_val = _validation_split()
    assert _session_accuracy(model_path, x_val, y_val) == pytest.approx(accuracy, abs=1e-12)

    assert (run_dir / "loss_curve.png").read_bytes()[:8] == PNG_MAGIC
    assert (run_dir / "checkpoint.npz").is_file()
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoint.npz", "loss_curve.png", "metrics.json", "model.onnx"
    ], "temporary files left behind"


def test_convert_and_train_script_is_the_same_command(tmp_path):
    script = ROOT / "scripts" / "convert_and_train.py"
    done = subprocess.run(
        [sys.executable, str(script), "--epochs", "2", "--out-dir", str(tmp_path / "run"), "--json"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert len(result["history"]) == 2 and result["val_accuracy"] > 0.8
    assert (tmp_path / "run" / "model.onnx").is_file()


# --------------------------------------------------------------------------------------------------------------
# Loss falls; optimizers; data formats; losses


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--optimizer", "sgd", "--lr", "0.2"],
        ["--optimizer", "momentum", "--lr", "0.05", "--nesterov"],
        ["--optimizer", "adam", "--weight-decay", "1e-4"],
        ["--optimizer", "sgd", "--momentum", "0.5", "--reduction", "sum", "--lr", "0.005"],
    ],
    ids=["adam", "sgd", "momentum-nesterov", "adam-decay", "sgd-sum"],
)
def test_loss_falls(cli, tmp_path, options):
    result = train_json(cli, tmp_path, "--epochs", "3", *options)
    train_losses = [h["train_loss"] for h in result["history"]]
    val_losses = [h["val_loss"] for h in result["history"]]
    assert train_losses[-1] < train_losses[0] and val_losses[-1] < val_losses[0], result["history"]
    assert result["val_accuracy"] > 0.8
    assert _session_accuracy(result["model_path"], *_validation_split()) == pytest.approx(result["val_accuracy"])


def test_npz_data_with_named_arrays(cli, tmp_path):
    x, y = _digits()
    np.savez(tmp_path / "data.npz", pixels=x[:600], digit=y[:600])
    result = train_json(cli, tmp_path / "run", "--data", tmp_path / "data.npz", "--x-key", "pixels", "--y-key", "digit",
        "--epochs", "4", "--val-fraction", "0.25", "--seed", "3",
    )
    assert result["train_samples"] == 450 and result["val_samples"] == 150
    _, _, x_val, y_val = _train.split(_train.Dataset(x[:600], y[:600], "npz"), 0.25, 3)
    assert _session_accuracy(result["model_path"], x_val, y_val) == pytest.approx(result["val_accuracy"])


def test_csv_data_with_header_and_label_column(cli, tmp_path):
    x, y = _digits()
    table = np.column_stack([y[:400], x[:400]])
    header = "label," + ",".join(f"p{i}" for i in range(64))
    np.savetxt(tmp_path / "data.csv", table, delimiter=",", header=header, comments="", fmt="%.6g")
    result = train_json(cli, tmp_path / "run", "--data", tmp_path / "data.csv", "--label-column", "0", "--epochs", "3"
    )
    assert result["train_samples"] == 320 and result["val_samples"] == 80
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]


def test_dense_softmax_ce_takes_class_indices_as_one_hot(cli, tmp_path):
    result = train_json(cli, tmp_path, "--loss", "softmax_ce", "--epochs", "2")
    assert result["val_accuracy"] > 0.8
    assert _session_accuracy(result["model_path"], *_validation_split()) == pytest.approx(result["val_accuracy"])


def test_regression_loss_reports_no_accuracy(cli, tmp_path):
    x, _ = _digits()
    targets = np.stack([x[:300, :32].sum(1), x[:300, 32:].sum(1)] * 5, axis=1).astype(np.float32) / 10
    np.savez(tmp_path / "reg.npz", x=x[:300], y=targets)
    result = train_json(cli, tmp_path / "run", "--data", tmp_path / "reg.npz", "--loss", "mse", "--epochs", "3")
    assert result["val_accuracy"] is None
    assert result["history"][-1]["val_loss"] < result["history"][0]["val_loss"]


def test_fixed_batch_model_pads_the_last_validation_batch(cli, tmp_path):
    model = onnx.load(DIGITS)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 16
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 16
    onnx.save(model, tmp_path / "fixed.onnx")
    result = train_json(cli, tmp_path / "run", "--model", tmp_path / "fixed.onnx", "--batch-size", "16", "--epochs", "2"
    )
    assert result["val_samples"] % 16 != 0  # the last validation batch is padded
    assert _session_accuracy(result["model_path"], *_validation_split()) == pytest.approx(result["val_accuracy"])

    code, _, err = cli("train", "--model", tmp_path / "fixed.onnx", "--out-dir", tmp_path / "r2")
    assert code == 1
    assert "The model's input 'x' has shape [16, 64]" in err and "--batch-size" in err


# --------------------------------------------------------------------------------------------------------------
# Checkpoints


def test_resume_continues_exactly_where_it_stopped(cli, tmp_path):
    straight = train_json(cli, tmp_path / "straight", "--epochs", "4")
    train_json(cli, tmp_path / "split", "--epochs", "2")
    resumed = train_json(cli, tmp_path / "split", "--epochs", "4", "--resume")
    assert resumed["start_epoch"] == 2 and len(resumed["history"]) == 4
    for a, b in zip(straight["history"], resumed["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_accuracy"] == b["val_accuracy"]
    want, got = _weights(straight["model_path"]), _weights(resumed["model_path"])
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7, err_msg=f"weight[{name}]")

    # An explicit checkpoint path into a new folder; nothing left to train resumes to the same model.
    again = train_json(cli, tmp_path / "other", "--epochs", "4", "--resume", tmp_path / "split" / "checkpoint.npz")
    assert again["start_epoch"] == 4 and len(again["history"]) == 4
    for name in want:
        np.testing.assert_allclose(_weights(again["model_path"])[name], want[name], rtol=1e-6, atol=1e-7)


def test_interrupted_checkpoint_write_keeps_the_previous_checkpoint(cli, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    train_json(cli, run_dir, "--epochs", "2")
    checkpoint = run_dir / "checkpoint.npz"
    before = checkpoint.read_bytes()

    real_write = _files._write_file

    def write_half_then_fail(handle, data):
        handle.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_files, "_write_file", write_half_then_fail)
    code, out, err = cli("train", "--out-dir", run_dir, "--epochs", "4", "--resume")
    assert code == 1 and out == ""
    # One clean line: no traceback beside it.
    assert re.fullmatch(
        r"onnxgrad: error: Cannot write '.*checkpoint\.npz' \(No space left on device\): free some disk space or "
        r"choose another --out-dir \(the previous file is intact\)\.\n",
        err,
    ), err
    assert checkpoint.read_bytes() == before, "the previous checkpoint was damaged"
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        ["checkpoint.npz", "loss_curve.png", "metrics.json", "model.onnx"]
    ), "a temporary checkpoint was left behind"

    monkeypatch.setattr(_files, "_write_file", real_write)
    resumed = train_json(cli, run_dir, "--epochs", "4", "--resume")
    straight = train_json(cli, tmp_path / "straight", "--epochs", "4")
    assert resumed["start_epoch"] == 2
    want, got = _weights(straight["model_path"]), _weights(resumed["model_path"])
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7, err_msg=f"weight[{name}]")


def test_checkpoint_holds_weights_optimizer_state_and_history(cli, tmp_path):
    result = train_json(cli, tmp_path, "--epochs", "2", "--optimizer", "momentum")
    with np.load(result["checkpoint_path"], allow_pickle=False) as archive:
        keys = set(archive.files)
        meta = json.loads(str(archive["meta"]))
        assert str(archive["optim/optimizer"]) == "Momentum" and int(archive["optim/step"]) == 2 * 45
    assert {f"param/{n}" for n in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")} <= keys
    assert {f"optim/moments/{n}" for n in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")} <= keys
    assert meta["epoch"] == 2 and len(meta["history"]) == 2 and meta["format"] == 1


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ["--resume"], r"No checkpoint at '.*checkpoint\.npz': train without --resume first"),
        ("garbage", ["--resume"], r"is not a readable onnxgrad checkpoint"),
        ("adam", ["--resume", "--optimizer", "sgd"], r"saved by Adam, not SGD: resume with the same optimizer"),
    ],
    ids=["missing", "garbage", "other-optimizer"],
)
def test_bad_checkpoints(cli, tmp_path, setup, args, message):
    if setup == "garbage":
        tmp_path.joinpath("checkpoint.npz").write_bytes(b"not a zip file")
    elif setup == "adam":
        train_json(cli, tmp_path, "--epochs", "1")
    code, out, err = cli("train", "--out-dir", tmp_path, "--epochs", "2", *args)
    assert code == 1 and out == ""
    assert re.search(message, err.strip().splitlines()[-1]), err


def test_checkpoint_of_another_model_is_refused(cli, tmp_path):
    train_json(cli, tmp_path, "--epochs", "1")
    model = onnx.load(DIGITS)
    model.graph.initializer[0].name = "renamed.weight"
    model.graph.node[0].input[1] = "renamed.weight"
    onnx.save(model, tmp_path / "renamed.onnx")
    code, _, err = cli("train", "--model", tmp_path / "renamed.onnx", "--out-dir", tmp_path, "--resume")
    assert code == 1
    assert "lacks" in err or "The checkpoint holds weights" in err


# --------------------------------------------------------------------------------------------------------------
# Framework models as package.module:attribute


@pytest.mark.parametrize("attribute", ["mindspore_mlp", "MindSporeMLP"], ids=["factory", "class"])
def test_mindspore_cell_is_converted_and_trained(cli, tmp_path, attribute):
    pytest.importorskip("mindspore")
    result = train_json(cli, tmp_path, "--model", f"train_nets:{attribute}", "--epochs", "3")
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    assert result["val_accuracy"] > 0.8
    assert _session_accuracy(result["model_path"], *_validation_split()) == pytest.approx(result["val_accuracy"])


@pytest.mark.parametrize("attribute", ["torch_mlp", "torch_instance"], ids=["factory", "instance"])
def test_torch_module_is_converted_and_trained(cli, tmp_path, attribute):
    pytest.importorskip("torch")
    result = train_json(cli, tmp_path, "--model", f"train_nets:{attribute}", "--epochs", "3")
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    assert _session_accuracy(result["model_path"], *_validation_split()) == pytest.approx(result["val_accuracy"])


@pytest.mark.parametrize(
    ("attribute", "framework", "input_name"),
    [
        ("torch_mlp", "torch", "input"),
        ("torch_batch_reshape", "torch", "x"),  # x.reshape(x.shape[0], ...): exported with the batch folded in
        ("mindspore_mlp", "mindspore", "x"),
        (None, None, "x"),
    ],
    ids=["torch", "torch-reshape", "mindspore", "onnx"],
)
def test_saved_model_is_deployable_on_the_whole_data_set(cli, tmp_path, attribute, framework, input_name):
    # Exported for --batch-size 32, the model still runs every batch size: here all 1797 digits at once.
    if framework:
        pytest.importorskip(framework)
    model_args = ["--model", f"train_nets:{attribute}"] if attribute else []
    result = train_json(cli, tmp_path, *model_args, "--epochs", "2")
    assert result["notes"] == []
    model = onnx.load(result["model_path"])
    assert [i.name for i in model.graph.input] == [input_name]
    assert [o.name for o in model.graph.output] == ["logits"]  # converted outputs get a name, files keep theirs
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    session = ort.InferenceSession(result["model_path"], providers=["CPUExecutionProvider"])
    x, y = _digits()
    (logits,) = session.run(None, {input_name: x})
    assert logits.shape == (len(x), 10)
    x_val, y_val = _validation_split()
    (val_logits,) = session.run(None, {input_name: x_val})
    assert np.mean(np.argmax(val_logits, axis=-1) == y_val) == pytest.approx(result["val_accuracy"])


def test_batch_dependent_model_keeps_its_batch_size_and_says_so(cli, tmp_path):
    pytest.importorskip("torch")
    code, out, err = cli("train", "--out-dir", tmp_path, "--model", "train_nets:torch_batch_mean", "--epochs", "1"
    )
    assert code == 0, err
    assert "note: model.onnx takes batches of exactly 32" in err
    model = onnx.load(tmp_path / "model.onnx")
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 32
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"x": _digits()[0][:32]})
    assert logits.shape == (32, 10)


# --------------------------------------------------------------------------------------------------------------
# Output and errors


def test_progress_bar_on_request_and_summaries_always(cli, tmp_path):
    code, out, err = cli("train", "--out-dir", tmp_path / "a", "--epochs", "2", "--progress")
    assert code == 0
    assert "\r" in err and re.search(r"epoch 1/2 \[[#-]{24}\] \d+/45 loss \d+\.\d{4} [\d,]+ samples/s", err)
    assert re.search(r"epoch 2/2  train loss \d\.\d{4}  val loss \d\.\d{4}  val acc +\d+\.\d%", err)
    assert out.startswith("trained 2 epoch(s) in ")
    assert "wrote " in out and "model.onnx" in out

    code, _, err = cli("train", "--out-dir", tmp_path / "b", "--epochs", "2", "--no-progress")
    assert code == 0 and "\r" not in err and len(err.strip().splitlines()) == 2


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--optimizer", "rmsprop"], 2, "invalid choice: 'rmsprop'"),
        (["--batch-size", "0"], 2, "must be >= 1"),
        (["--loss", "hinge"], 1, r"Unknown loss 'hinge': choose one of"),
        (["--val-fraction", "1.5"], 1, "The validation fraction must be between 0 and 1, got 1.5"),
        (["--data", "missing.npz"], 1, r"No data file at 'missing.npz'"),
        (["--data", "DATA.npz", "--x-key", "inputs"], 1, r"has no array 'inputs'; it holds \['x', 'y'\]"),
        (["--data", "DATA.txt.json"], 1, "is neither .npz nor .csv"),
        (["--model", "no_such_module_xyz:Net"], 1, r"Cannot import 'no_such_module_xyz'"),
        (["--model", "train_nets:missing"], 1, r"'train_nets' has no attribute 'missing'"),
        (["--model", "train_nets:not_a_network"], 1, r"is a int, not a MindSpore Cell or PyTorch nn.Module"),
        (["--model", "missing.onnx"], 1, r"No model file at 'missing.onnx'"),
        (["--lr", "-1"], 1, "learning_rate must be >= 0"),
        (["--lr", "1e20", "--optimizer", "sgd"], 1, r"The loss became (nan|inf) at .* lower the learning rate"),
        (["--loss", "sparse_softmax_ce", "--data", "FLOATS.npz"], 1, r"takes labels of dtype \['int32', 'int64'\]"),
    ],
    ids=["optimizer", "batch", "loss", "fraction", "data", "npz-key", "format", "import", "attribute",
         "not-a-network", "model", "lr", "diverges", "label-dtype"],
)
def test_bad_arguments(cli, tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    x, y = _digits()
    np.savez(tmp_path / "DATA.npz", x=x[:50], y=y[:50])
    np.savez(tmp_path / "FLOATS.npz", x=x[:50], y=y[:50].astype(np.float32) + 0.5)
    (tmp_path / "DATA.txt.json").write_text("{}")
    got, out, err = cli("train", "--out-dir", tmp_path / "run", "--epochs", "1", *args)
    assert got == code and out == ""
    assert re.search(message, err), err
    if code == 1:
        assert len(err.strip().splitlines()) == 1 or "diverges" in message or err.strip().splitlines()[-1].startswith(
            "onnxgrad: error: "
        )


# --------------------------------------------------------------------------------------------------------------
# Labels, checkpoints, interruption and the other rough edges of a first run


def _npz(tmp_path, y, x=None) -> pathlib.Path:
    digits_x, _ = _digits()
    path = tmp_path / "data.npz"
    np.savez(path, x=digits_x[: len(y)] if x is None else x, y=y)
    return path


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.r_[np.arange(10), 10] % 11, r"1 label\(s\) of .* are not classes of the model's 10 outputs, e\.g\. sample "
         r"10 has label 10 \(labels must be in \[0, 10\)\): check --label-column"),
        (np.r_[np.arange(10), -1], r"sample 10 has label -1 .*negative labels \(such as -1 for 'unlabelled'\) are "
         r"not classes: drop those samples"),
        (np.array(list("abcdefghijk")), r"have dtype <U1: labels must be numbers"),
        (np.r_[np.arange(10), np.nan], r"Sample 10 of .* has label nan: every label must be a finite number"),
    ],
    ids=["too-large", "minus-one", "strings", "nan"],
)
def test_bad_labels_are_refused_before_training(cli, tmp_path, labels, message):
    # Before: GatherElements' internal error (too large), or 0% accuracy trained silently (-1).
    data = _npz(tmp_path, labels)
    code, out, err = cli("train", "--data", data, "--out-dir", tmp_path / "run", "--epochs", "1")
    assert code == 1 and out == "", err
    assert re.search(message, err), err
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_label_count_must_match_the_inputs(cli, tmp_path):
    x, y = _digits()
    data = _npz(tmp_path, y[:50], x=x[:60])
    code, _, err = cli("train", "--data", data, "--out-dir", tmp_path / "run")
    assert code == 1 and "has 60 inputs but 50 labels: give one label per sample" in err


def test_integer_valued_float64_npz_labels_are_class_indices(cli, tmp_path):
    x, y = _digits()
    as_int = train_json(cli, tmp_path / "int", "--data", _npz(tmp_path, y, x), "--epochs", "2")
    as_float = train_json(cli, tmp_path / "float", "--data", _npz(tmp_path, y.astype(np.float64), x), "--epochs", "2")
    assert [h["val_loss"] for h in as_float["history"]] == [h["val_loss"] for h in as_int["history"]]


def test_label_column_by_header_name(cli, tmp_path):
    x, y = _digits()
    table = np.column_stack([y[:400], x[:400]])
    path = tmp_path / "data.csv"
    header = ",".join(["digit", *(f"p{i}" for i in range(64))])
    np.savetxt(path, table, delimiter=",", header=header, comments="", fmt="%g")
    by_name = train_json(cli, tmp_path / "name", "--data", path, "--label-column", "digit", "--epochs", "2")
    by_index = train_json(cli, tmp_path / "index", "--data", path, "--label-column", "0", "--epochs", "2")
    assert [h["val_loss"] for h in by_name["history"]] == [h["val_loss"] for h in by_index["history"]]
    code, _, err = cli("train", "--data", path, "--label-column", "label", "--out-dir", tmp_path / "bad")
    assert code == 1 and "has no column named 'label' (its header has ['digit', 'p0'," in err


def test_second_run_refuses_to_overwrite_a_checkpoint(cli, tmp_path):
    train_json(cli, tmp_path, "--epochs", "1")
    before = (tmp_path / "checkpoint.npz").read_bytes()
    code, out, err = cli("train", "--out-dir", tmp_path, "--epochs", "1")
    assert code == 1 and out == ""
    assert "holds the checkpoint of an earlier run: continue it with --resume, overwrite it with --force" in err
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    forced = train_json(cli, tmp_path, "--epochs", "2", "--force")
    assert forced["start_epoch"] == 0 and len(forced["history"]) == 2


def test_resume_at_the_final_epoch_says_there_is_nothing_to_train(cli, tmp_path):
    train_json(cli, tmp_path, "--epochs", "2")
    code, out, err = cli("train", "--out-dir", tmp_path, "--epochs", "2", "--resume")
    assert code == 0 and "trained 0 epoch(s) (resumed after epoch 2)" in out
    assert "note: the checkpoint is at epoch 2 and --epochs is 2: nothing left to train; raise --epochs" in err


def test_ctrl_c_saves_the_last_epoch_and_says_how_to_resume(cli, tmp_path, monkeypatch):
    real_epoch = _train.loop._train_epoch

    def interrupted_in_epoch_3(epoch, *args, **kwargs):
        if epoch == 3:
            raise KeyboardInterrupt
        return real_epoch(epoch, *args, **kwargs)

    monkeypatch.setattr(_train.loop, "_train_epoch", interrupted_in_epoch_3)
    code, out, err = cli("train", "--out-dir", tmp_path, "--epochs", "5")
    assert code == 130
    assert re.search(r"interrupted; saved epoch 2 to .*checkpoint\.npz, .*model\.onnx and .*metrics\.json\. "
                     r"Continue with: onnxgrad train --resume --out-dir", err), err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["interrupted"] is True and [h["epoch"] for h in metrics["history"]] == [1, 2]
    with np.load(tmp_path / "checkpoint.npz") as archive:
        saved = {k[len("param/"):]: archive[k] for k in archive.files if k.startswith("param/")}
    model_weights = _weights(str(tmp_path / "model.onnx"))
    for name, value in saved.items():  # the model holds the saved epoch's weights
        np.testing.assert_array_equal(model_weights[name], value, err_msg=name)

    monkeypatch.setattr(_train.loop, "_train_epoch", real_epoch)
    resumed = train_json(cli, tmp_path, "--epochs", "3", "--resume")
    assert resumed["start_epoch"] == 2 and len(resumed["history"]) == 3


def test_sgd_is_plain_and_metrics_record_the_effective_hyperparameters(cli, tmp_path):
    result = train_json(cli, tmp_path, "--epochs", "1", "--optimizer", "sgd")
    config = json.loads(pathlib.Path(result["metrics_path"]).read_text())["config"]
    assert config["learning_rate"] == 0.1 and config["momentum"] == 0.0
    with np.load(result["checkpoint_path"]) as archive:
        assert not [k for k in archive.files if "momentum" in k], "plain SGD keeps no momentum buffer"
    momentum = train_json(cli, tmp_path / "m", "--epochs", "1", "--optimizer", "momentum")
    config = json.loads(pathlib.Path(momentum["metrics_path"]).read_text())["config"]
    assert config["learning_rate"] == 0.1 and config["momentum"] == 0.9


def test_verbose_flag_after_the_command(cli, tmp_path):
    code, _, err = cli("train", "-v", "--out-dir", tmp_path, "--epochs", "0")
    assert code == 0 and "onnxgrad: INFO: training " in err


def test_loss_curve_has_a_title_and_percent_accuracy(cli, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    figures = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append(self), real_savefig(self, *a, **k)))
    result = train_json(cli, tmp_path, "--epochs", "2")
    (figure,) = figures
    axes, twin = figure.axes
    assert "digits_mlp.onnx on sklearn digits" in axes.get_title()
    assert twin.get_ylabel() == "validation accuracy (%)"
    accuracy = twin.get_lines()[0].get_ydata()
    assert accuracy[-1] == pytest.approx(100 * result["val_accuracy"])


def test_stale_temporary_files_of_killed_runs_are_removed(cli, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        tmp_path.mkdir(exist_ok=True)
        stale = [tmp_path / f"checkpoint.npz.tmp-{dead_pid}", tmp_path / f".model.onnx.tmp-{dead_pid}",
                 tmp_path / f"loss_curve.png.tmp-{dead_pid}.png", tmp_path / f".metrics.json.tmp-{dead_pid}-0123abcd"]
        live = tmp_path / f"checkpoint.npz.tmp-{alive.pid}"
        for path in [*stale, live]:
            path.write_bytes(b"partial")
        try:
            train_json(cli, tmp_path, "--epochs", "1")
        finally:
            alive.kill()
    assert not any(p.exists() for p in stale)
    assert live.exists(), "a running writer's file must stay"


_FIT = r"The data's samples have shape \[64\] and dtype float32: make the network's first layer take samples of that "


@pytest.mark.parametrize(
    ("spec", "framework", "message"),
    [
        ("torch.nn:Linear", "torch", r"'torch\.nn:Linear' cannot be built without arguments \(.*missing 2 required "
         r"positional arguments.*\): point --model at an instance, or at a function that builds the network"),
        ("train_nets:torch_wrong_input", "torch",
         r"'train_nets:torch_wrong_input' does not run on the data: .*784x10.*" + _FIT),
        ("train_nets:mindspore_wrong_input", "mindspore",
         r"'train_nets:mindspore_wrong_input' does not run on the data: .*784.*" + _FIT),
    ],
    ids=["class-needing-arguments", "torch-input-size", "mindspore-input-size"],
)
def test_framework_model_errors_give_advice_for_the_command_line(cli, tmp_path, monkeypatch, spec, framework,
                                                                 message):
    pytest.importorskip(framework)
    monkeypatch.chdir(tmp_path)  # MindSpore writes its analyze_fail report into the current folder
    code, out, err = cli("train", "--model", spec, "--out-dir", tmp_path / "run", "--epochs", "1")
    assert code == 1 and out == ""
    assert re.search(message, err.strip().splitlines()[-1]), err
    assert not [advice for advice in _train.model._EXAMPLE_ADVICE if advice in err]  # the Python API's advice


def test_mindspore_export_prints_no_deprecation_warning(cli, tmp_path):
    pytest.importorskip("mindspore")
    env = {k: v for k, v in os.environ.items() if k != "GLOG_v"}  # MindSpore's default log level
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT)])
    done = cli.subprocess("train", "--model", "train_nets:mindspore_mlp", "--epochs", "1", "--out-dir", tmp_path,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "will be deleted" not in done.stderr and "mindspore.onnx.export" not in done.stderr


def test_quick_start_installs_no_framework_and_ci_runs_the_readme_test_command():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    frameworks = ("torch", "mindspore", "tensorflow", "jax", "transformers")

    def names(requirements):
        return [re.split(r"[<>=!;\[ ]", r, maxsplit=1)[0].lower() for r in requirements]

    # The core install and the main job's extras (README: `.[cpu,train]`) pull no framework.
    for group in (project["dependencies"], *(project["optional-dependencies"][e] for e in ("cpu", "train"))):
        assert not [n for n in names(group) if n.startswith(frameworks)], group
    readme = (ROOT / "README.md").read_text()
    assert '.venv/bin/pip install -e ".[cpu,train]" && .venv/bin/onnxgrad train' in readme
    test_install = 'python3 -m venv .venv && .venv/bin/pip install -q -e ".[all]"'
    assert f"{test_install} && .venv/bin/python -m pytest -q" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_install in ci and ".venv/bin/python -m pytest -q" in ci
