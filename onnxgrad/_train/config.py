"""What to train and what a run reports: the configuration, progress events, the result, and the
file names and defaults every part shares."""

from __future__ import annotations

import dataclasses
import os

from onnxgrad import distributed

#: The bundled default model, relative to the repository root.
DEFAULT_MODEL = os.path.join("models", "digits_mlp.onnx")
DEFAULT_OUT_DIR = os.path.join("runs", "digits")
#: ``data`` value selecting scikit-learn's bundled 8x8 digits (pixels scaled to [0, 1]).
DIGITS = "digits"
CHECKPOINT = "checkpoint.npz"
MODEL = "model.onnx"
CURVE = "loss_curve.png"
METRICS = "metrics.json"


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
        loss: a name from :func:`onnxgrad.nn.loss_names`.
        reduction: the loss's reduction (``mean``, ``sum`` or ``none``).
        optimizer: ``sgd``, ``momentum`` or ``adam``.
        learning_rate: None: the optimizer's default (:data:`onnxgrad.optim.OPTIMIZERS`).
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

