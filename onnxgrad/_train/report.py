"""The outputs of a run: the deployable inference model, the loss curve and ``metrics.json``."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import pathlib
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from onnxgrad import _export, distributed, optim
from onnxgrad._graph import unique_name
from onnxgrad._network import Network, load
from onnxgrad._train.checkpoint import _write_atomically
from onnxgrad._train.config import CURVE, METRICS, MODEL, TrainConfig, TrainResult
from onnxgrad._train.model import _is_model_path
from onnxgrad.errors import OnnxGradError

if TYPE_CHECKING:
    from onnxgrad._train.data import Dataset
    from onnxgrad._train.loop import _Evaluator

logger = logging.getLogger(__name__)


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

