"""Reference values recorded from PyTorch and MindSpore, for environments without them.

The portable test environment (Python 3.12+, numpy 2, plain onnxruntime) cannot
install MindSpore 2.10 or this project's PyTorch, so the parity networks are
recorded once where both are installed: for every network of
``_support.torch_models.MODELS`` and ``_support.mindspore_nets.NETWORKS``, the ONNX file onnxgrad's
converter exports, the inputs, one seeded random sensitivity per output, and
what the framework itself computes for them: the outputs and the gradient of
``sum_k(out_k * sens_k)`` for every input and every exported weight
(``torch.autograd.grad``; MindSpore 2.10's ``nn.ForwardValueAndGrad`` with
``get_all``, ``get_by_list`` and ``sens_param``).

Files: ``references/<framework>/<network>.onnx`` and ``.npz`` with arrays
``input/<i>``, ``sens/<k>``, ``value/<k>``, ``input_grad/<i>``, ``weight_grad/<j>``
and ``weights`` (the initializer names, in the order of the weight gradients).

``python tests/references.py`` rewrites them; ``test_recorded_references.py``
checks onnxgrad against them everywhere and, where a framework is installed,
that they are what the framework computes today.
"""

from __future__ import annotations

import io
import pathlib
import sys
from typing import Any

import numpy as np
import onnx

from _support.sensitivity import random_sens

HERE = pathlib.Path(__file__).resolve().parent
FOLDER = HERE / "references"
FRAMEWORKS = ("torch", "mindspore")
SENS_SEED = 7


def names(framework: str) -> list[str]:
    """The recorded networks of a framework (from the files)."""
    return sorted(p.stem for p in (FOLDER / framework).glob("*.npz"))


def load(framework: str, name: str) -> tuple[bytes, dict[str, Any]]:
    """The recorded ONNX model bytes and arrays of one network."""
    folder = FOLDER / framework
    with np.load(folder / f"{name}.npz") as data:
        arrays = {key: data[key] for key in data.files}
    return (folder / f"{name}.onnx").read_bytes(), arrays


def _group(arrays: dict[str, Any], prefix: str) -> list[np.ndarray]:
    keys = sorted((k for k in arrays if k.startswith(prefix + "/")), key=lambda k: int(k.split("/")[1]))
    return [arrays[k] for k in keys]


def unpack(arrays: dict[str, Any]) -> dict[str, Any]:
    """``{"inputs", "sens", "value", "input_grads", "weight_grads", "weights"}`` as lists."""
    return {
        "inputs": _group(arrays, "input"),
        "sens": _group(arrays, "sens"),
        "value": _group(arrays, "value"),
        "input_grads": _group(arrays, "input_grad"),
        "weight_grads": _group(arrays, "weight_grad"),
        "weights": [str(w) for w in arrays["weights"]],
    }


def _pack(inputs, sens, value, input_grads, weight_grads, weights) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {"weights": np.array(weights, dtype=str)}
    for prefix, items in (("input", inputs), ("sens", sens), ("value", value), ("input_grad", input_grads),
                          ("weight_grad", weight_grads)):
        for i, item in enumerate(items):
            arrays[f"{prefix}/{i}"] = np.asarray(item)
    return arrays


def record_torch(name: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """One PyTorch network: the exported model and torch.autograd's results."""
    import torch

    from _support.torch_models import MODELS
    from onnxgrad._frontend import parameter_map
    from onnxgrad.converters import torch as converter

    case = MODELS[name]
    module, inputs = case.module(), case.inputs()
    model = converter.to_onnx(module, *inputs)
    mapping = parameter_map(model) or {}
    params = dict(module.named_parameters())
    weights = [params[framework_name] for framework_name in mapping]
    xs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    out = module(*xs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    sens = random_sens([o.detach().numpy() for o in outs], SENS_SEED)
    scalar = sum((o * torch.from_numpy(s)).sum() for o, s in zip(outs, sens))
    wrt = [x for x in xs if x.requires_grad] + weights
    grads = iter(torch.autograd.grad(scalar, wrt, allow_unused=True))

    def take(tensor):
        grad = next(grads)
        return (torch.zeros_like(tensor) if grad is None else grad).detach().numpy()

    input_grads = [take(x) if x.requires_grad else np.zeros(x.shape, x.detach().numpy().dtype) for x in xs]
    weight_grads = [take(w) for w in weights]
    arrays = _pack([x.numpy() for x in inputs], sens, [o.detach().numpy() for o in outs], input_grads,
                   weight_grads, list(mapping.values()))
    return model, arrays


def record_mindspore(name: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """One MindSpore network: the exported model and MindSpore's ForwardValueAndGrad results."""
    import mindspore as ms

    from _support import mindspore_nets as nets
    from onnxgrad._frontend import parameter_map
    from onnxgrad.converters import mindspore as converter

    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = nets.NETWORKS[name]
    cell = net.make()
    inputs = net.inputs()
    model = converter.to_onnx(cell, *inputs)
    mapping = parameter_map(model) or {}
    params = {p.name: p for p in cell.trainable_params()}
    weights = ms.ParameterTuple([params[n] for n in mapping])
    tensors = nets.tensors(inputs)
    out = cell(*tensors)
    outs = [o.asnumpy() for o in out] if isinstance(out, tuple) else [out.asnumpy()]
    sens = random_sens(outs, SENS_SEED)
    sens_arg = tuple(ms.Tensor(s) for s in sens) if len(sens) > 1 else ms.Tensor(sens[0])
    value, (input_grads, weight_grads) = ms.nn.ForwardValueAndGrad(cell, weights, True, True, True)(
        *tensors, sens_arg
    )
    values = [v.asnumpy() for v in value] if isinstance(value, tuple) else [value.asnumpy()]
    arrays = _pack(inputs, sens, values, [g.asnumpy() for g in input_grads], [g.asnumpy() for g in weight_grads],
                   list(mapping.values()))
    return model, arrays


RECORDERS = {"torch": record_torch, "mindspore": record_mindspore}


def framework_names(framework: str) -> list[str]:
    """Every network the framework's suite has (needs the framework)."""
    if framework == "torch":
        from _support.torch_models import MODELS

        return sorted(MODELS)
    from _support import mindspore_nets as nets

    return sorted(nets.NETWORKS)


def write(framework: str) -> list[str]:
    """Records every network of a framework into ``references/<framework>``; returns the names."""
    folder = FOLDER / framework
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in framework_names(framework):
        model, arrays = RECORDERS[framework](name)
        onnx.save(model, str(folder / f"{name}.onnx"))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        (folder / f"{name}.npz").write_bytes(buffer.getvalue())
        written.append(name)
    return written


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    for fw in sys.argv[1:] or FRAMEWORKS:
        print(fw, ", ".join(write(fw)))
