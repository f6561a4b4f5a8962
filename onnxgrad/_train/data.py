"""Reading the data set, the seeded train/validation split, and checking the labels before training."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from onnxgrad import nn
from onnxgrad._train.config import DIGITS, TrainConfig
from onnxgrad.errors import InputError


@dataclasses.dataclass
class Dataset:
    """Inputs and labels, and where they came from."""

    x: np.ndarray
    y: np.ndarray
    source: str


def load_data(config: TrainConfig) -> Dataset:
    """Reads the data the config names.

    Raises:
        InputError: a missing or unreadable file, missing keys or columns,
            inputs and labels of different lengths.
    """
    if config.data == DIGITS:
        try:
            from sklearn.datasets import load_digits
        except ImportError as err:
            raise InputError(
                "The digits data comes with scikit-learn: pip install 'onnxgrad[train]' (or pass --data FILE)."
            ) from err
        digits = load_digits()
        return Dataset((digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64), "sklearn digits")
    path = config.data
    if not os.path.isfile(path):
        raise InputError(f"No data file at {path!r}: pass an existing .npz or .csv file.")
    suffix = pathlib.Path(path).suffix.lower()
    if suffix == ".npz":
        x, y = _read_npz(path, config.x_key, config.y_key)
    elif suffix in (".csv", ".txt"):
        x, y = _read_csv(path, config.label_column)
    else:
        raise InputError(f"Data file {path!r} is neither .npz nor .csv: save the arrays with np.savez or as CSV.")
    if len(x) != len(y):
        raise InputError(f"{path!r} has {len(x)} inputs but {len(y)} labels: give one label per sample.")
    if len(x) < 2:
        raise InputError(f"{path!r} has {len(x)} sample(s): training needs at least 2 (train and validation).")
    return Dataset(x, y, path)


def _read_npz(path: str, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            missing = [k for k in (x_key, y_key) if k not in keys]
            if missing:
                raise InputError(
                    f"{path!r} has no array {missing[0]!r}; it holds {keys}. Name the arrays with --x-key/--y-key."
                )
            return archive[x_key], archive[y_key]
    except InputError:
        raise
    except Exception as err:  # zipfile / numpy format errors
        raise InputError(f"{path!r} is not a readable .npz file ({type(err).__name__}: {err}).") from err


def _read_csv(path: str, label_column: int | str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, encoding="utf-8") as handle:
        first = handle.readline()
    delimiter = ";" if first.count(";") > first.count(",") else ","
    try:
        float(first.split(delimiter)[0])
        skip = 0
    except ValueError:
        skip = 1  # a header row
    if isinstance(label_column, str):
        header = [name.strip().strip('"') for name in first.split(delimiter)] if skip else []
        if label_column not in header:
            found = f"its header has {header}" if header else "it has no header row"
            raise InputError(f"{path!r} has no column named {label_column!r} ({found}): pass a header name or an index.")
        label_column = header.index(label_column)
    try:
        table = np.loadtxt(path, delimiter=delimiter, skiprows=skip, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise InputError(f"{path!r} is not a numeric CSV table ({err}): every cell must be a number.") from err
    columns = table.shape[1]
    if columns < 2 or not -columns <= label_column < columns:
        raise InputError(
            f"{path!r} has {columns} column(s); label column {label_column} does not exist: "
            "pick it with --label-column (the inputs are the other columns)."
        )
    label_column %= columns
    y = table[:, label_column]
    x = np.delete(table, label_column, axis=1).astype(np.float32)
    if np.all(y == np.round(y)):
        y = y.astype(np.int64)
    return x, y


def split(dataset: Dataset, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A seeded train/validation split: ``(x_train, y_train, x_val, y_val)``.

    Raises:
        InputError: a fraction outside (0, 1) or one that leaves a split empty.
    """
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"The validation fraction must be between 0 and 1, got {val_fraction}.")
    n = len(dataset.x)
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n_val >= n:
        raise InputError(
            f"A validation fraction of {val_fraction} of {n} samples leaves an empty split: choose another fraction."
        )
    order = np.random.default_rng(seed).permutation(n)
    val, train_ = order[:n_val], order[n_val:]
    return dataset.x[train_], dataset.y[train_], dataset.x[val], dataset.y[val]


def _class_count(logits_shape: tuple) -> int | None:
    classes = logits_shape[-1] if len(logits_shape) >= 2 else None
    return classes if isinstance(classes, int) and classes > 1 else None


def check_labels(y: np.ndarray, loss_fn: nn.LossFn, logits_shape: tuple, source: str) -> np.ndarray:
    """Checks the labels of the whole data set before training; returns them (integer-valued floats as int64).

    Raises:
        InputError: labels that are not numbers, not finite, or not classes of
            the model's output (negative, e.g. -1 for "unlabelled", or too large).
    """
    if y.dtype.kind not in "biuf":
        raise InputError(f"The labels of {source} have dtype {y.dtype}: labels must be numbers (class indices or targets).")
    allowed = loss_fn.label_dtypes()
    takes_ints = any(d.kind in "iu" for d in allowed) or not any(d.kind == "f" for d in allowed)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            bad = int(np.flatnonzero(~np.isfinite(y.reshape(len(y), -1)).any(axis=1))[0])
            raise InputError(f"Sample {bad} of {source} has label {y[bad]}: every label must be a finite number.")
        if takes_ints and np.all(y == np.round(y)):
            y = y.astype(np.int64)  # integer-valued floats (NPZ saved as float64) are class indices, as in CSV
    classes = _class_count(logits_shape)
    if y.dtype.kind in "iu" and y.ndim == 1 and classes is not None:
        outside = np.flatnonzero((y < 0) | (y >= classes))
        if len(outside):
            first = int(outside[0])
            hint = (
                "negative labels (such as -1 for 'unlabelled') are not classes: drop those samples"
                if y[first] < 0
                else "check --label-column, or give the model one output per class"
            )
            raise InputError(
                f"{len(outside)} label(s) of {source} are not classes of the model's {classes} outputs, e.g. sample "
                f"{first} has label {int(y[first])} (labels must be in [0, {classes})): {hint}."
            )
    return y


def _label_array(y: np.ndarray, loss_fn: nn.LossFn, logits_shape: tuple) -> np.ndarray:
    """Labels in a dtype (and, for per-class targets, a shape) the loss takes."""
    allowed = loss_fn.label_dtypes()
    ints = [d for d in allowed if d.kind in "iu"]
    floats = [d for d in allowed if d.kind == "f"]
    if y.dtype.kind in "iub":
        if ints:
            return y.astype(np.int64 if np.dtype(np.int64) in ints else ints[0])
        classes = logits_shape[-1] if len(logits_shape) >= 2 else None
        if y.ndim == 1 and isinstance(classes, int) and classes > 1 and floats:
            if y.min() < 0 or y.max() >= classes:
                raise InputError(f"Class labels must be in [0, {classes}), got {y.min()}..{y.max()}.")
            return np.eye(classes, dtype=floats[0])[y]  # class indices to one-hot targets
        if floats:
            return y.astype(floats[0])
    elif y.dtype.kind == "f" and floats:
        return y.astype(np.float32 if np.dtype(np.float32) in floats else floats[0])
    raise InputError(
        f"{type(loss_fn).__name__} takes labels of dtype {[str(d) for d in allowed]}, the data has {y.dtype}: "
        "pick a loss that fits the labels (class indices: sparse_softmax_ce)."
    )


def _is_classification(loss_fn: nn.LossFn, labels: np.ndarray, logits_shape: tuple) -> bool:
    """Whether to report accuracy: logits ``[N, C]`` and class-index labels (or a cross-entropy loss)."""
    if len(logits_shape) != 2 or not isinstance(logits_shape[-1], int) or logits_shape[-1] < 2:
        return False
    name = type(loss_fn).__name__
    return (labels.dtype.kind in "iub" and labels.ndim == 1) or "CrossEntropy" in name or "NLL" in name

