"""The model to train (an ONNX file, or a framework object exported through its front-end) and the
optimizer a configuration names (the losses by name are :func:`onnxgrad.nn.make_loss`'s)."""

from __future__ import annotations

import importlib
import os
import pathlib
from typing import Any

import numpy as np

from onnxgrad import _frontend, optim
from onnxgrad._network import Network, ParameterTuple, load
from onnxgrad._train.config import DEFAULT_MODEL, TrainConfig
from onnxgrad.errors import ConversionError, InputError, OnnxGradError


def optimizer_for(config: TrainConfig, params: ParameterTuple) -> optim.Optimizer:
    """The optimizer the config names, over ``params`` (see :func:`onnxgrad.optim.make_optimizer`).

    Raises:
        InputError: an unknown optimizer or a bad hyperparameter.
    """
    return optim.make_optimizer(
        config.optimizer,
        params,
        config.learning_rate,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
        beta1=config.beta1,
        beta2=config.beta2,
    )


def _default_model_path() -> str:
    candidates = [
        pathlib.Path(DEFAULT_MODEL),
        pathlib.Path(__file__).resolve().parents[2] / DEFAULT_MODEL,
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

