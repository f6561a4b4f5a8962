"""Convert and train: the implementation behind ``onnxgrad train`` and
``scripts/convert_and_train.py``.

:func:`train` takes a :class:`TrainConfig`: a model (an ONNX file, or a
MindSpore ``Cell`` / PyTorch module named ``package.module:attribute`` and
exported to ONNX through its front-end), data (NPZ or CSV arrays, or
scikit-learn's bundled 8x8 digits), a loss from :mod:`onnxgrad.nn` and an
optimizer from :mod:`onnxgrad.optim`. Training runs on the ONNX graph:
``ForwardValueAndGrad`` gives the loss and weight gradients and the optimizer
updates the weights in place. Each epoch it evaluates on the validation split
and writes a checkpoint atomically; at the end (or on Ctrl-C, for the last
finished epoch) it writes, in ``out_dir``:

- ``model.onnx``: the trained model for inference (no loss, no backward; the
  weights are initializers; a symbolic batch size where the graph allows, see
  :func:`deployable_model`), which a bare ``onnxruntime.InferenceSession`` runs;
- ``checkpoint.npz``: weights, optimizer state and history (resume from it);
- ``loss_curve.png``: train and validation loss (and accuracy) per epoch;
- ``metrics.json``: the configuration, per-epoch history and final metrics.

Nothing here prints: progress goes to the ``progress`` callback as
:class:`StepEvent` and :class:`EpochEvent`, and to ``logging``.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import logging
import math
import os
import pathlib
import time
from typing import Any, Callable

import numpy as np
import onnx

from onnxgrad import _device, _engine, _export, _files, _frontend, distributed, nn, optim
from onnxgrad._api import ForwardValueAndGrad
from onnxgrad._files import remove_stale_temporaries
from onnxgrad._graph import unique_name
from onnxgrad._network import Network, ParameterTuple, load
from onnxgrad.errors import ConversionError, InputError, OnnxGradError

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_OUT_DIR",
    "DIGITS",
    "OPTIMIZERS",
    "TrainConfig",
    "TrainResult",
    "StepEvent",
    "EpochEvent",
    "Dataset",
    "train",
    "load_data",
    "split",
    "make_loss",
    "loss_names",
    "make_optimizer",
    "resolve_model",
    "save_checkpoint",
    "load_checkpoint",
    "deployable_model",
    "check_labels",
    "TrainingInterrupted",
    "remove_stale_temporaries",
]

logger = logging.getLogger(__name__)

# Training alternates sessions (the step's, then the evaluation's): ORT's spinning
# thread pools then fight over the cores. Without spinning an MLP 784-512-256-10
# step plus an eval forward took 2.96 ms instead of 4.49 (alone: 2.24 vs 1.97).
_NO_SPIN_CONFIG = {"session.intra_op.allow_spinning": "0"}


def _providers(provider: str) -> list[str]:
    return [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]

#: The bundled default model, relative to the repository root.
DEFAULT_MODEL = os.path.join("models", "digits_mlp.onnx")
DEFAULT_OUT_DIR = os.path.join("runs", "digits")
#: ``data`` value selecting scikit-learn's bundled 8x8 digits (pixels scaled to [0, 1]).
DIGITS = "digits"

CHECKPOINT = "checkpoint.npz"
MODEL = "model.onnx"
CURVE = "loss_curve.png"
METRICS = "metrics.json"
_FORMAT = 1

#: Optimizer names and their default learning rates.
OPTIMIZERS = {"sgd": 0.1, "momentum": 0.1, "adam": 3e-3}

# Loss names for the command line: (class in onnxgrad.nn, keyword arguments); each class exists (a test
# checks). Any other LossFn subclass in onnxgrad.nn is offered by its class name.
_LOSS_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "sparse_softmax_ce": ("SoftmaxCrossEntropyWithLogits", {"sparse": True}),
    "softmax_ce": ("SoftmaxCrossEntropyWithLogits", {"sparse": False}),
    "cross_entropy": ("CrossEntropyLoss", {}),
    "nll": ("NLLLoss", {}),
    "mse": ("MSELoss", {}),
    "l1": ("L1Loss", {}),
    "smooth_l1": ("SmoothL1Loss", {}),
    "huber": ("HuberLoss", {}),
    "bce_with_logits": ("BCEWithLogitsLoss", {}),
}


@dataclasses.dataclass
class TrainConfig:
    """What to train, on what, and how.

    Attributes:
        model: an ``.onnx`` path, or ``package.module:attribute`` naming a
            MindSpore Cell or PyTorch module (an instance, a class or a
            factory called with no arguments). None: the bundled
            ``models/digits_mlp.onnx``.
        data: an ``.npz`` or ``.csv`` file, or :data:`DIGITS` (the default).
        x_key: NPZ array holding the inputs.
        y_key: NPZ array holding the labels.
        label_column: CSV column holding the labels: an index (negative counts
            from the end) or the name of a header column.
        loss: a name from :func:`loss_names`.
        reduction: the loss's reduction (``mean``, ``sum`` or ``none``).
        optimizer: ``sgd``, ``momentum`` or ``adam``.
        learning_rate: None: the optimizer's default (:data:`OPTIMIZERS`).
        momentum: momentum of ``sgd`` and ``momentum``. None: 0 for ``sgd``
            (plain SGD, as ``torch.optim.SGD``), 0.9 for ``momentum``.
        nesterov: Nesterov momentum (``sgd``, ``momentum``).
        weight_decay: L2 penalty added to the gradients.
        beta1: Adam's first-moment decay.
        beta2: Adam's second-moment decay.
        epochs: total epochs (a resumed run continues up to this number).
        batch_size: samples per step.
        val_fraction: share of the samples held out for validation.
        seed: seeds the split and the per-epoch shuffling.
        out_dir: where the outputs go.
        resume: a checkpoint to resume from (None: start fresh).
        force: start fresh even if ``out_dir`` holds a checkpoint (which is
            overwritten); without it such a run is refused.
        provider: the ONNX Runtime execution provider, e.g.
            ``CUDAExecutionProvider`` (the CPU provider backs up kernels it
            lacks). On a device the weights and the optimizer state stay there
            between steps; only each batch goes over, and the loss comes back.
        threads: ONNX Runtime's intra-op threads (``intra_op_num_threads``).
            None: ORT's default (every core) for a single process; under
            torchrun, the machine's cores divided by its ranks.
        checkpoint_every: also write a checkpoint (with the sampler's epoch and
            position) every this many steps; 0: only after each epoch.
        timeout: under torchrun, seconds a collective waits for a peer before
            the job fails (a hung peer).

    Under torchrun (``RANK``/``WORLD_SIZE`` set) training is data-parallel:
    ``batch_size`` is per rank, each rank takes its shard of every batch
    (:func:`onnxgrad.distributed.shard`), gradients are reduced across the
    ranks, and rank 0 writes the outputs and reports progress.
    """

    model: str | None = None
    data: str = DIGITS
    x_key: str = "x"
    y_key: str = "y"
    label_column: int | str = -1
    loss: str = "sparse_softmax_ce"
    reduction: str = "mean"
    optimizer: str = "adam"
    learning_rate: float | None = None
    momentum: float | None = None
    nesterov: bool = False
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    epochs: int = 20
    batch_size: int = 32
    val_fraction: float = 0.2
    seed: int = 0
    out_dir: str = DEFAULT_OUT_DIR
    resume: str | None = None
    force: bool = False
    provider: str = "CPUExecutionProvider"
    threads: int | None = None
    checkpoint_every: int = 0
    timeout: float = distributed.DEFAULT_TIMEOUT


@dataclasses.dataclass
class StepEvent:
    """One training step finished."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    samples_per_second: float


@dataclasses.dataclass
class EpochEvent:
    """One epoch finished and was evaluated (accuracy None when not a classification)."""

    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    val_accuracy: float | None
    seconds: float
    samples_per_second: float


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        history: one dict per epoch (the fields of :class:`EpochEvent`).
        val_loss: the last validation loss.
        val_accuracy: the last validation accuracy (None when not a classification).
        train_samples: training samples.
        val_samples: validation samples.
        seconds: training time of this run (resumed epochs excluded).
        start_epoch: epochs already done before this run (from the checkpoint).
        model_path: the inference model.
        checkpoint_path: the last checkpoint.
        curve_path: the loss-curve PNG (None without matplotlib).
        metrics_path: the metrics JSON.
        notes: what the user should know about the outputs (e.g. an
            inference model that keeps a fixed batch size).
        rank: this process's rank (only rank 0 writes the outputs).
        world_size: the number of data-parallel ranks.
    """

    history: list[dict]
    val_loss: float
    val_accuracy: float | None
    train_samples: int
    val_samples: int
    seconds: float
    start_epoch: int
    model_path: str
    checkpoint_path: str
    curve_path: str | None
    metrics_path: str
    notes: list[str] = dataclasses.field(default_factory=list)
    rank: int = 0
    world_size: int = 1


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); what the last finished epoch left is saved.

    Attributes:
        epoch: the epoch the checkpoint, ``model.onnx`` and ``metrics.json``
            hold (None: no epoch finished, nothing was written).
        result: the result as of that epoch (None when nothing was written).
    """

    def __init__(self, epoch: int | None, result: TrainResult | None) -> None:
        super().__init__(epoch)
        self.epoch, self.result = epoch, result


@dataclasses.dataclass
class Dataset:
    """Inputs and labels, and where they came from."""

    x: np.ndarray
    y: np.ndarray
    source: str


# ---------------------------------------------------------------------------------------------------------------
# Data


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


# ---------------------------------------------------------------------------------------------------------------
# Model, loss, optimizer


def _loss_classes() -> dict[str, type]:
    """The LossFn subclasses ``onnxgrad.nn`` exports, by class name."""
    classes = {}
    for cls_name in getattr(nn, "__all__", ()):
        cls = getattr(nn, cls_name, None)
        if isinstance(cls, type) and issubclass(cls, nn.LossFn) and cls is not nn.LossFn:
            classes[cls_name] = cls
    return classes


def loss_names() -> dict[str, str]:
    """Loss names offered by :func:`make_loss`: ``{name: what it builds}``.

    Short names for the losses that have one, class names for the others;
    :func:`make_loss` also takes every class name.
    """
    classes = _loss_classes()
    names = {}
    for alias, (cls_name, kwargs) in _LOSS_ALIASES.items():
        if cls_name in classes:
            args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            names[alias] = f"nn.{cls_name}({args})"
    covered = {cls_name for cls_name, _ in _LOSS_ALIASES.values()}
    for cls_name in classes:
        if cls_name not in covered:
            names[cls_name] = f"nn.{cls_name}()"
    return names


def make_loss(name: str, reduction: str = "mean") -> nn.LossFn:
    """The loss called ``name`` (a name from :func:`loss_names`, or a loss class name) with this reduction.

    Raises:
        InputError: an unknown name or reduction.
    """
    classes = _loss_classes()
    if name in _LOSS_ALIASES and _LOSS_ALIASES[name][0] in classes:
        cls_name, kwargs = _LOSS_ALIASES[name]
    elif name in classes:
        cls_name, kwargs = name, {}
    else:
        raise InputError(f"Unknown loss {name!r}: choose one of {sorted(loss_names())} (or a loss class name).")
    return classes[cls_name](reduction=reduction, **kwargs)


def make_optimizer(config: TrainConfig, params: ParameterTuple) -> optim.Optimizer:
    """The optimizer the config names, over ``params``.

    Raises:
        InputError: an unknown optimizer or a bad hyperparameter.
    """
    name = config.optimizer.lower()
    if name not in OPTIMIZERS:
        raise InputError(f"Unknown optimizer {config.optimizer!r}: choose one of {sorted(OPTIMIZERS)}.")
    lr = OPTIMIZERS[name] if config.learning_rate is None else config.learning_rate
    if name == "sgd":
        momentum = 0.0 if config.momentum is None else config.momentum
        return optim.SGD(params, lr, momentum, config.weight_decay, config.nesterov)
    if name == "momentum":
        momentum = 0.9 if config.momentum is None else config.momentum
        return optim.Momentum(params, lr, momentum, config.weight_decay, use_nesterov=config.nesterov)
    return optim.Adam(params, lr, config.beta1, config.beta2, weight_decay=config.weight_decay)


def _default_model_path() -> str:
    candidates = [
        pathlib.Path(DEFAULT_MODEL),
        pathlib.Path(__file__).resolve().parent.parent / DEFAULT_MODEL,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise InputError(
        f"The bundled model {DEFAULT_MODEL} is not here: run from a clone of the repository, or pass --model."
    )


def _is_model_path(spec: str) -> bool:
    return spec.endswith(".onnx") or os.path.exists(spec) or ":" not in spec


def _import_object(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise InputError(f"{spec!r} is not package.module:attribute: name the module and the Cell or nn.Module in it.")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise InputError(
            f"Cannot import {module_name!r} ({err}): run from the folder that holds it or put it on PYTHONPATH."
        ) from err
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{module_name!r} has no attribute {attribute!r}: check the name after the colon.")
        obj = getattr(obj, part)
    return obj


def _frontend_for(obj: Any, spec: str) -> _frontend.Frontend | None:
    try:
        return _frontend.frontend_for(obj)
    except ImportError as err:
        raise ConversionError(
            f"{spec!r} is a {type(obj).__name__}, but its front-end cannot be imported ({err}): install the "
            "framework (pip install 'onnxgrad[mindspore]' or 'onnxgrad[torch]'), or export the model to ONNX."
        ) from err


#: How the front-ends' errors for a network that cannot run on the example inputs begin their advice.
_EXAMPLE_ADVICE = ("Pass example inputs", "Check that the example inputs")


def _misfit_detail(message: str) -> str | None:
    """The front-end's error without its advice, when it says the network failed on the example inputs
    (PyTorch: forward raised; MindSpore: the export failed on a shape); None for other export failures."""
    torch_misfit = "failed on the example inputs" in message
    mindspore_misfit = "could not export" in message and any(w in message for w in ("dimension", "shape"))
    if not (torch_misfit or mindspore_misfit):
        return None
    cuts = [message.find(advice) for advice in _EXAMPLE_ADVICE if advice in message]
    return message[: min(cuts)].rstrip() if cuts else message


def resolve_model(spec: str | None, example: np.ndarray) -> tuple[Network, str]:
    """The model to train as a Network, converting a framework object if needed.

    Args:
        spec: an ``.onnx`` path, ``package.module:attribute``, or None for the
            bundled model.
        example: a batch of inputs (a framework object is exported for its
            shape and dtype).

    Returns:
        ``(network, description)``.

    Raises:
        ModelError: an unreadable ONNX file.
        InputError: an unimportable object, or one that is no Cell or nn.Module.
        ConversionError: the front-end could not export it.
    """
    if spec is None:
        path = _default_model_path()
        return load(path), path
    if _is_model_path(spec):
        return load(spec), spec
    obj = _import_object(spec)
    frontend = _frontend_for(obj, spec)
    if frontend is None and callable(obj):
        try:
            obj = obj()  # a class or a factory
        except TypeError as err:  # a constructor that needs arguments
            raise InputError(
                f"{spec!r} cannot be built without arguments ({err}): point --model at an instance, or at a function "
                "that builds the network with its arguments, e.g. `def model(): return Linear(64, 10)` in a module "
                "of yours, then --model yourmodule:model."
            ) from err
        frontend = _frontend_for(obj, spec)
    if frontend is None:
        raise InputError(
            f"{spec!r} is a {type(obj).__name__}, not a MindSpore Cell or PyTorch nn.Module (nor a class or "
            "factory making one): point it at the network."
        )
    try:
        model = frontend.export([example])
    except ConversionError as err:
        detail = _misfit_detail(str(err))
        if detail is None:
            raise
        # The front-end's advice (other example inputs) is for the Python API; the CLI has the data.
        raise InputError(
            f"{spec!r} does not run on the data: {detail} The data's samples have shape "
            f"{list(example.shape[1:])} and dtype {example.dtype}: make the network's first layer take samples "
            "of that shape, or pass data (--data) whose samples fit the network."
        ) from err
    except OnnxGradError:
        raise
    except Exception as err:
        raise ConversionError(
            f"Exporting {spec!r} to ONNX failed ({type(err).__name__}: {err}); check that it runs on a batch of "
            f"shape {list(example.shape)}."
        ) from err
    return load(model), f"{spec} ({type(obj).__name__}, converted to ONNX)"


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints


def _write_atomically(path: str, data: bytes) -> None:
    """Writes ``path`` whole or not at all (:func:`onnxgrad._files.atomic_write`).

    Raises:
        InputError: the file cannot be written (e.g. the disk is full); the previous one is intact.
    """
    try:
        _files.atomic_write(path, data)
    except OSError as err:
        raise InputError(
            f"Cannot write {path!r} ({err.strerror or err}): free some disk space or choose another --out-dir "
            "(the previous file is intact)."
        ) from None  # the cause is in the message; a chained traceback would only repeat it


def save_checkpoint(path: str | os.PathLike, network: Network, optimizer: optim.Optimizer, meta: dict) -> None:
    """Writes weights, optimizer state and ``meta`` to ``path`` atomically.

    The data goes to a temporary file in the same folder, is flushed to disk,
    and then replaces ``path`` in one rename: an interrupted write leaves the
    previous checkpoint intact.

    Raises:
        InputError: the checkpoint cannot be written (e.g. the disk is full).
    """
    # Built in memory: only plain writes can meet a full disk.
    _write_atomically(os.fspath(path), _checkpoint_bytes(network, optimizer, meta))


def _checkpoint_bytes(network: Network, optimizer: optim.Optimizer, meta: dict) -> bytes:
    arrays = {f"param/{p.name}": p.value for p in network.trainable_params()}
    arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    arrays["meta"] = np.array(json.dumps({"format": _FORMAT, **meta}))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def load_checkpoint(path: str | os.PathLike, network: Network, optimizer: optim.Optimizer) -> dict:
    """Restores weights and optimizer state from a checkpoint; returns its ``meta``.

    Raises:
        InputError: a missing or unreadable checkpoint, or one saved for other
            weights or another optimizer.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"No checkpoint at {path!r}: train without --resume first, or give the checkpoint's path.")
    return _restore(path, path, network, optimizer)


def _restore(source: str | io.BytesIO, path: str, network: Network, optimizer: optim.Optimizer) -> dict:
    """Restores a checkpoint read from ``source`` (a file or its bytes); ``path`` names it in errors."""
    try:
        with np.load(source, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.keys()}
        meta = json.loads(str(arrays.pop("meta")))
    except Exception as err:
        raise InputError(f"{path!r} is not a readable onnxgrad checkpoint ({type(err).__name__}: {err}).") from err
    params = network.parameters_dict()
    saved = {key[len("param/") :]: value for key, value in arrays.items() if key.startswith("param/")}
    if set(saved) != set(params):
        raise InputError(
            f"The checkpoint holds weights {sorted(saved)}, the model {sorted(params)}: resume with the same model."
        )
    for name, value in saved.items():
        if value.shape != params[name].shape:
            raise InputError(
                f"The checkpoint's {name!r} has shape {list(value.shape)}, the model's {list(params[name].shape)}: "
                "resume with the same model."
            )
    optimizer.load_state_dict({key[len("optim/") :]: v for key, v in arrays.items() if key.startswith("optim/")})
    for name, value in saved.items():
        params[name].set_data(value.astype(params[name].dtype, copy=False))
    return meta


# ---------------------------------------------------------------------------------------------------------------
# The deployable model

#: Name of the output of a converted framework model (their exporters number the outputs).
LOGITS = "logits"
#: The symbolic batch dimension of the deployable model.
BATCH_DIM = "batch"


def _rename_output(model: onnx.ModelProto, new: str) -> None:
    """Renames the model's single output everywhere it occurs in the main graph."""
    old = model.graph.output[0].name
    if old == new or any(new in (*n.input, *n.output) for n in model.graph.node):
        return
    for node in model.graph.node:
        node.output[:] = [new if name == old else name for name in node.output]
        node.input[:] = [new if name == old else name for name in node.input]
    model.graph.output[0].name = new


def _batch_free_reshapes(graph: onnx.GraphProto, batch: int) -> None:
    """Reshapes to a constant shape that starts with the batch size copy the input's first size instead.

    Exporters fold ``x.view(x.size(0), -1)`` to the traced batch; ``0`` in a
    Reshape's shape keeps the input's size. Whether that was right is checked
    on data afterwards (:func:`deployable_model`).
    """
    constants = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    taken = {name for node in graph.node for name in (*node.input, *node.output)} | set(constants)
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in constants:
            continue
        if any(a.name == "allowzero" and a.i for a in node.attribute):
            continue
        shape = constants[node.input[1]]
        if shape.ndim != 1 or not len(shape) or shape[0] != batch:
            continue
        name = unique_name(f"{node.input[1]}/batch_free", taken)
        graph.initializer.append(onnx.numpy_helper.from_array(np.concatenate([[0], shape[1:]]).astype(shape.dtype), name))
        node.input[1] = name


def _with_symbolic_batch(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """A copy whose input and output batch sizes are symbolic (None when the batch is not a fixed size)."""
    dims = [v.type.tensor_type.shape.dim for v in (*model.graph.input[:1], *model.graph.output[:1])]
    if not dims[0] or not dims[0][0].HasField("dim_value"):
        return None
    batch = dims[0][0].dim_value
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for value in (copy.graph.input[0], copy.graph.output[0]):
        shape = value.type.tensor_type.shape.dim
        if shape and shape[0].HasField("dim_value") and shape[0].dim_value == batch:
            shape[0].dim_param = BATCH_DIM
    del copy.graph.value_info[:]  # inferred again for the new sizes
    _batch_free_reshapes(copy.graph, batch)
    return copy


def _same_rows(got: Any, want: np.ndarray) -> bool:
    got = np.asarray(got)
    scale = float(np.max(np.abs(want), initial=0.0)) + 1.0
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=1e-4, atol=1e-5 * scale))


def deployable_model(backbone: Network, converted: bool, samples: np.ndarray) -> tuple[onnx.ModelProto, list[str]]:
    """The trained network as a plain inference model, and notes about it.

    A converted framework model's output is named :data:`LOGITS` (an ONNX
    file keeps its names). A batch size fixed at export becomes symbolic when
    the graph gives the same rows for other batch sizes (checked on
    ``samples``, at least ``batch + 1`` of them); otherwise it stays fixed and
    a note says so.
    """
    model = _export.inference_model(backbone)
    if converted:
        _rename_output(model, LOGITS)
    candidate = _with_symbolic_batch(model)
    if candidate is None:
        return model, []
    batch = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    reference = np.asarray(backbone(samples[:batch]))
    try:
        network = load(candidate)
        works = _same_rows(network(samples[: batch + 1])[:batch], reference)
        works = works and _same_rows(network(samples[:1]), reference[:1])
    except OnnxGradError as err:
        logger.debug("the batch size stays fixed: %s", err)
        works = False
    if works:
        return candidate, []
    return model, [
        f"{MODEL} takes batches of exactly {batch}: the exported graph depends on the batch size (e.g. a reshape "
        "to a constant shape); pad the last batch, or export the model with a dynamic batch axis."
    ]


# ---------------------------------------------------------------------------------------------------------------
# Training


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


def _is_classification(loss_fn: nn.LossFn, labels: np.ndarray, logits_shape: tuple) -> bool:
    """Whether to report accuracy: logits ``[N, C]`` and class-index labels (or a cross-entropy loss)."""
    if len(logits_shape) != 2 or not isinstance(logits_shape[-1], int) or logits_shape[-1] < 2:
        return False
    name = type(loss_fn).__name__
    return (labels.dtype.kind in "iub" and labels.ndim == 1) or "CrossEntropy" in name or "NLL" in name


def _save_curve(path: str, history: list[dict], title: str) -> str | None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        logger.warning("matplotlib is not installed: no loss curve (pip install 'onnxgrad[train]')")
        return None
    epochs = [h["epoch"] for h in history]
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    axes.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation loss")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("loss")
    handles, labels = axes.get_legend_handles_labels()
    if all(h["val_accuracy"] is not None for h in history):
        twin = axes.twinx()
        accuracy = [100 * h["val_accuracy"] for h in history]  # percent, as the command line prints it
        twin.plot(epochs, accuracy, color="tab:green", marker=".", label="val accuracy (%)")
        twin.set_ylabel("validation accuracy (%)")
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    axes.legend(handles, labels, loc="center right")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    _write_atomically(path, buffer.getvalue())
    return path


def _write_json(path: str, data: dict) -> None:
    _write_atomically(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


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
    loss_fn = make_loss(config.loss, config.reduction)
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
    optimizer = make_optimizer(config, params)
    eval_cell = nn.WithLossCell(backbone, make_loss(config.loss, "none"), label_dtype=y_train.dtype)
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
        result = _finish(config, data, description, backbone, optimizer, history, evaluate, x_val, y_val,
                         len(x_train), time.perf_counter() - started, start_epoch, checkpoint_path, notes,
                         ctx, interrupted=True)
        raise TrainingInterrupted(saved, result) from interrupt
    seconds = time.perf_counter() - started
    if ctx.is_main and not os.path.exists(checkpoint_path):
        save(start_epoch)
    return _finish(config, data, description, backbone, optimizer, history, evaluate, x_val, y_val,
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


def _finish(
    config: TrainConfig,
    data: Dataset,
    description: str,
    backbone: Network,
    optimizer: optim.Optimizer,
    history: list[dict],
    evaluate: _Evaluator,
    x_val: np.ndarray,
    y_val: np.ndarray,
    train_samples: int,
    seconds: float,
    start_epoch: int,
    checkpoint_path: str,
    notes: list[str],
    ctx: distributed.Context,
    interrupted: bool = False,
) -> TrainResult:
    """Writes (on rank 0) the inference model, the loss curve and the metrics; returns the result."""
    if not history:  # nothing trained and nothing resumed: still report where the model stands
        val_loss, val_accuracy = evaluate(x_val, y_val)
    else:
        val_loss, val_accuracy = history[-1]["val_loss"], history[-1]["val_accuracy"]
    out_dir = pathlib.Path(config.out_dir)
    model_path = str(out_dir / MODEL)
    curve_path = str(out_dir / CURVE) if history else None
    metrics_path = str(out_dir / METRICS)
    result = TrainResult(
        history=history,
        val_loss=val_loss,
        val_accuracy=val_accuracy,
        train_samples=train_samples,
        val_samples=len(x_val),
        seconds=seconds,
        start_epoch=start_epoch,
        model_path=model_path,
        checkpoint_path=checkpoint_path,
        curve_path=curve_path,
        metrics_path=metrics_path,
        notes=list(notes),
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    if not ctx.is_main:
        return result
    converted = config.model is not None and not _is_model_path(config.model)
    samples = np.resize(x_val, (config.batch_size + 1, *x_val.shape[1:]))  # x_val repeated as needed
    deployable, model_notes = deployable_model(backbone, converted, samples)
    _export.save_model(deployable, model_path)
    title = f"{description} on {data.source}"
    result.curve_path = _save_curve(curve_path, history, title) if curve_path is not None else None
    result.notes.extend(model_notes)
    settings = dataclasses.asdict(config)
    settings["learning_rate"] = optimizer.learning_rate  # the effective values, defaults resolved
    if hasattr(optimizer, "momentum"):
        settings["momentum"] = optimizer.momentum
    _write_json(
        metrics_path,
        {
            "model": description,
            "data": data.source,
            "config": settings,
            "interrupted": interrupted,
            **{k: v for k, v in dataclasses.asdict(result).items() if k != "history"},
            "history": history,
        },
    )
    return result

