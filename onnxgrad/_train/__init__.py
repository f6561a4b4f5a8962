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

The parts: :mod:`.config` (what to train, events, the result), :mod:`.data`
(reading, splitting, labels), :mod:`.model` (model, optimizer),
:mod:`.checkpoint`, :mod:`.loop` (the training loop and validation),
:mod:`.ranks` (the glue to :mod:`onnxgrad.distributed`) and :mod:`.report`
(the deployable model, curve and metrics).
"""

# The parts, and the output file names the command line reads, stay reachable as attributes of the package.
from onnxgrad._files import remove_stale_temporaries
from onnxgrad._train import checkpoint, config, data, loop, model, ranks, report  # noqa: F401
from onnxgrad._train.checkpoint import load_checkpoint, save_checkpoint
from onnxgrad._train.config import (
    CHECKPOINT,  # noqa: F401
    CURVE,  # noqa: F401
    DEFAULT_MODEL,
    DEFAULT_OUT_DIR,
    DIGITS,
    METRICS,  # noqa: F401
    MODEL,  # noqa: F401
    EpochEvent,
    StepEvent,
    TrainConfig,
    TrainingInterrupted,
    TrainResult,
)
from onnxgrad._train.data import Dataset, check_labels, load_data, split
from onnxgrad._train.loop import train
from onnxgrad._train.model import optimizer_for, resolve_model
from onnxgrad._train.report import deployable_model

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_OUT_DIR",
    "DIGITS",
    "TrainConfig",
    "TrainResult",
    "StepEvent",
    "EpochEvent",
    "Dataset",
    "train",
    "load_data",
    "split",
    "optimizer_for",
    "resolve_model",
    "save_checkpoint",
    "load_checkpoint",
    "deployable_model",
    "check_labels",
    "TrainingInterrupted",
    "remove_stale_temporaries",
]
