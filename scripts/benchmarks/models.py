"""The benchmark's models, defined once and built identically in every system.

Each model is a set of seeded numpy weights (in canonical order, with PyTorch's
names and layouts: a dense weight is ``[out, in]``, a convolution weight
``[out, in, kh, kw]``), example inputs, and an ONNX backbone (opset 17, IR 8)
written with ``onnx.helper`` that returns the logits. The PyTorch module and
the MindSpore cell of the same model load those weights; ONNX Gemm with
``transB=1`` takes the ``[out, in]`` layout as it is, so no weight is
transposed anywhere and every gradient has the same layout in every system.

The loss is MindSpore's ``SoftmaxCrossEntropyWithLogits``: for ``tiny`` (the
seed example) dense labels with ``reduction='none'``; for the others sparse
int32 labels with ``reduction='mean'`` (PyTorch: ``F.cross_entropy``). The
dense form back-propagates MindSpore's ``(softmax - labels) * sens`` and gives
the labels no gradient; PyTorch gets the same through a small autograd
Function (with the seed's all-zero labels autograd's own gradient would be 0).

Frameworks are imported only inside :func:`torch_model` and
:func:`mindspore_model`, so the ONNX Runtime workers never load them.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["MODELS", "ModelCase", "build", "torch_model", "mindspore_model", "onnx_loss"]

IR_VERSION = 8
OPSET = 17
SEED_NET = pathlib.Path(__file__).resolve().parents[2] / "models" / "seed_net.onnx"

# Sizes of the models (the configurations).
MLP_SIZES = (784, 512, 256, 10)
MLP_BATCH = 128
LENET_BATCH = 64
BLOCK = dict(batch=8, seq=64, dim=256, heads=4, ffn=1024, classes=10)


@dataclasses.dataclass
class ModelCase:
    """One benchmark model.

    Attributes:
        name: short name (``tiny``, ``mlp``, ``lenet``, ``block``).
        title: what it is, for the table.
        backbone: the ONNX graph from the input to the logits, weights as initializers.
        weights: ``{canonical name: value}`` in graph order.
        x: the input (its gradient is computed).
        label: the labels (float ``[N, C]`` for dense, int32 ``[N]`` for sparse).
        sparse: sparse labels and ``reduction='mean'``, else dense and ``'none'``.
        train_flops: floating-point operations of one forward+backward (matmuls
            and convolutions only: 3x the forward's), or 0 when not meaningful.
    """

    name: str
    title: str
    backbone: onnx.ModelProto
    weights: dict[str, np.ndarray]
    x: np.ndarray
    label: np.ndarray
    sparse: bool
    train_flops: int


def _model(nodes, x_shape, logits_shape, weights, name) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(value, key) for key, value in weights.items()]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(logits_shape))],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION, producer_name="onnxgrad-bench"
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def _dense(rng: np.random.Generator, fan_in: int, fan_out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's default Linear initialisation: U(-1/sqrt(in), 1/sqrt(in))."""
    bound = 1 / math.sqrt(fan_in)
    weight = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
    bias = rng.uniform(-bound, bound, fan_out).astype(np.float32)
    return weight, bias


def _labels(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    return rng.integers(0, classes, n).astype(np.int32)


def _gemm(x: str, prefix: str, out: str) -> onnx.NodeProto:
    return helper.make_node("Gemm", [x, f"{prefix}.weight", f"{prefix}.bias"], [out], name=prefix, transB=1)


def tiny() -> ModelCase:
    """The seed example: ``x @ weight`` (2x2 ones), dense labels, reduction 'none'."""
    backbone = onnx.load(str(SEED_NET))
    weights = {init.name: numpy_helper.to_array(init) for init in backbone.graph.initializer}
    return ModelCase(
        "tiny", "the seed's Net + loss", backbone, weights,
        np.ones([1, 2], np.float32), np.zeros([1, 2], np.float32), sparse=False, train_flops=0,
    )


def mlp(seed: int = 0) -> ModelCase:
    """784-512-256-10 with ReLU, batch 128."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    nodes = []
    current = "x"
    layers = list(zip(MLP_SIZES[:-1], MLP_SIZES[1:]))
    for i, (fan_in, fan_out) in enumerate(layers, 1):
        weights[f"fc{i}.weight"], weights[f"fc{i}.bias"] = _dense(rng, fan_in, fan_out)
        out = "logits" if i == len(layers) else f"h{i}"
        nodes.append(_gemm(current, f"fc{i}", out))
        if i < len(layers):
            nodes.append(helper.make_node("Relu", [out], [f"a{i}"], name=f"relu{i}"))
            current = f"a{i}"
    batch = MLP_BATCH
    backbone = _model(nodes, [batch, MLP_SIZES[0]], [batch, MLP_SIZES[-1]], weights, "mlp")
    x = rng.normal(0, 1, (batch, MLP_SIZES[0])).astype(np.float32)
    flops = 3 * 2 * batch * sum(a * b for a, b in layers)
    return ModelCase(
        "mlp", f"MLP {'-'.join(map(str, MLP_SIZES))}, batch {batch}", backbone, weights, x,
        _labels(rng, batch, MLP_SIZES[-1]), sparse=True, train_flops=flops,
    )


def lenet(seed: int = 0) -> ModelCase:
    """LeNet-5 on 1x28x28: conv 6@5x5 pad 2, pool, conv 16@5x5, pool, 120, 84, 10."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, (cout, cin) in {"conv1": (6, 1), "conv2": (16, 6)}.items():
        bound = 1 / math.sqrt(cin * 25)
        weights[f"{name}.weight"] = rng.uniform(-bound, bound, (cout, cin, 5, 5)).astype(np.float32)
        weights[f"{name}.bias"] = rng.uniform(-bound, bound, cout).astype(np.float32)
    for name, (fan_in, fan_out) in {"fc1": (400, 120), "fc2": (120, 84), "fc3": (84, 10)}.items():
        weights[f"{name}.weight"], weights[f"{name}.bias"] = _dense(rng, fan_in, fan_out)
    nodes = [
        helper.make_node("Conv", ["x", "conv1.weight", "conv1.bias"], ["c1"], name="conv1",
                         kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2", kernel_shape=[5, 5]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["flat"], name="flatten", axis=1),
        _gemm("flat", "fc1", "f1"),
        helper.make_node("Relu", ["f1"], ["g1"], name="relu3"),
        _gemm("g1", "fc2", "f2"),
        helper.make_node("Relu", ["f2"], ["g2"], name="relu4"),
        _gemm("g2", "fc3", "logits"),
    ]
    batch = LENET_BATCH
    backbone = _model(nodes, [batch, 1, 28, 28], [batch, 10], weights, "lenet5")
    x = rng.normal(0, 1, (batch, 1, 28, 28)).astype(np.float32)
    forward = 2 * batch * (6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10)
    return ModelCase(
        "lenet", f"LeNet-5, batch {batch}, 1x28x28", backbone, weights, x, _labels(rng, batch, 10),
        sparse=True, train_flops=3 * forward,
    )


def block(seed: int = 0) -> ModelCase:
    """A post-LN transformer encoder block (like ``nn.TransformerEncoderLayer``,
    batch_first, dropout 0, ReLU FFN, but with separate q/k/v projections) with
    a per-token classification head.

    The linear layers work on the ``[batch * seq, dim]`` view so that they are
    Gemms on ``[out, in]`` weights; attention reshapes to ``[batch, heads, seq,
    head_dim]`` and uses MatMul and Softmax.
    """
    b, t, d, h, ffn, classes = (BLOCK[k] for k in ("batch", "seq", "dim", "heads", "ffn", "classes"))
    dh = d // h
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name in ("q", "k", "v", "o"):
        weights[f"{name}.weight"], weights[f"{name}.bias"] = _dense(rng, d, d)
    weights["ln1.weight"] = (1 + 0.1 * rng.normal(size=d)).astype(np.float32)
    weights["ln1.bias"] = (0.1 * rng.normal(size=d)).astype(np.float32)
    weights["fc1.weight"], weights["fc1.bias"] = _dense(rng, d, ffn)
    weights["fc2.weight"], weights["fc2.bias"] = _dense(rng, ffn, d)
    weights["ln2.weight"] = (1 + 0.1 * rng.normal(size=d)).astype(np.float32)
    weights["ln2.bias"] = (0.1 * rng.normal(size=d)).astype(np.float32)
    weights["head.weight"], weights["head.bias"] = _dense(rng, d, classes)

    # Constants are Constant nodes, not initializers: onnxgrad.load would make float initializers trainable.
    def const(name, value):
        return helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(value, name))

    nodes = [
        const("flat_shape", np.array([b * t, d], np.int64)),
        const("heads_shape", np.array([b, t, h, dh], np.int64)),
        const("scale", np.array(1 / math.sqrt(dh), np.float32)),
        helper.make_node("Reshape", ["x", "flat_shape"], ["x2"], name="flatten"),
        _gemm("x2", "q", "q2"), _gemm("x2", "k", "k2"), _gemm("x2", "v", "v2"),
        helper.make_node("Reshape", ["q2", "heads_shape"], ["q4"], name="q_heads"),
        helper.make_node("Reshape", ["k2", "heads_shape"], ["k4"], name="k_heads"),
        helper.make_node("Reshape", ["v2", "heads_shape"], ["v4"], name="v_heads"),
        helper.make_node("Transpose", ["q4"], ["qh"], name="q_t", perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k4"], ["kt"], name="k_t", perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["v4"], ["vh"], name="v_t", perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["qh", "kt"], ["scores"], name="qk"),
        helper.make_node("Mul", ["scores", "scale"], ["scaled"], name="scale_scores"),
        helper.make_node("Softmax", ["scaled"], ["attn"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["attn", "vh"], ["ctx4"], name="av"),
        helper.make_node("Transpose", ["ctx4"], ["ctx_t"], name="ctx_t", perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx_t", "flat_shape"], ["ctx"], name="merge_heads"),
        _gemm("ctx", "o", "attn_out"),
        helper.make_node("Add", ["x2", "attn_out"], ["res1"], name="residual1"),
        helper.make_node("LayerNormalization", ["res1", "ln1.weight", "ln1.bias"], ["h1"], name="ln1",
                         axis=-1, epsilon=1e-5),
        _gemm("h1", "fc1", "f1"),
        helper.make_node("Relu", ["f1"], ["f1r"], name="relu"),
        _gemm("f1r", "fc2", "f2"),
        helper.make_node("Add", ["h1", "f2"], ["res2"], name="residual2"),
        helper.make_node("LayerNormalization", ["res2", "ln2.weight", "ln2.bias"], ["y"], name="ln2",
                         axis=-1, epsilon=1e-5),
        _gemm("y", "head", "logits"),
    ]
    backbone = _model(nodes, [b, t, d], [b * t, classes], weights, "encoder_block")
    x = rng.normal(0, 1, (b, t, d)).astype(np.float32)
    n = b * t
    forward = 2 * n * (4 * d * d + 2 * d * ffn + d * classes) + 2 * 2 * b * h * t * t * dh
    return ModelCase(
        "block", f"transformer encoder block [{b}, {t}, {d}], {h} heads, ffn {ffn}", backbone, weights, x,
        _labels(rng, n, classes), sparse=True, train_flops=3 * forward,
    )


MODELS: dict[str, Callable[[], ModelCase]] = {"tiny": tiny, "mlp": mlp, "lenet": lenet, "block": block}


def build(name: str) -> ModelCase:
    """The model called ``name`` (one of :data:`MODELS`)."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name]()


def onnx_loss(case: ModelCase):
    """onnxgrad's loss for the case (imports onnxgrad)."""
    from onnxgrad import nn

    if case.sparse:
        return nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    return nn.SoftmaxCrossEntropyWithLogits()


# ----------------------------------------------------------------------------------------------------------------
# PyTorch


def torch_model(case: ModelCase) -> tuple[Any, Callable[[Any, Any], Any], list[Any]]:
    """The case in PyTorch: ``(module, loss(logits, label), parameters in canonical order)``."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SeedNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(2, 2))

        def forward(self, x):
            return x @ self.weight

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            sizes = MLP_SIZES
            self.fc1, self.fc2, self.fc3 = (nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

        def forward(self, x):
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2).flatten(1)
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            b, t, d, h, ffn, classes = (BLOCK[k] for k in ("batch", "seq", "dim", "heads", "ffn", "classes"))
            self.flat, self.heads, self.scale = (b * t, d), (b, t, h, d // h), 1 / math.sqrt(d // h)
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.ln1 = nn.LayerNorm(d, eps=1e-5)
            self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
            self.ln2 = nn.LayerNorm(d, eps=1e-5)
            self.head = nn.Linear(d, classes)

        def forward(self, x):
            x = x.reshape(self.flat)
            q = self.q(x).reshape(self.heads).permute(0, 2, 1, 3)
            k = self.k(x).reshape(self.heads).permute(0, 2, 3, 1)
            v = self.v(x).reshape(self.heads).permute(0, 2, 1, 3)
            attn = torch.softmax((q @ k) * self.scale, dim=-1)
            ctx = (attn @ v).permute(0, 2, 1, 3).reshape(self.flat)
            h = self.ln1(x + self.o(ctx))
            return self.head(self.ln2(h + self.fc2(F.relu(self.fc1(h)))))

    class MindSporeDenseCE(torch.autograd.Function):
        """MindSpore's dense softmax CE: gradient (softmax - labels) * sens, none for the labels."""

        @staticmethod
        def forward(ctx, logits, labels):
            log_probs = torch.log_softmax(logits, -1)
            ctx.save_for_backward(log_probs, labels)
            return -(labels * log_probs).sum(-1)

        @staticmethod
        def backward(ctx, grad):
            log_probs, labels = ctx.saved_tensors
            return (log_probs.exp() - labels) * grad.unsqueeze(-1), None

    module = {"tiny": SeedNet, "mlp": MLP, "lenet": LeNet, "block": Block}[case.name]()
    state = {name: torch.from_numpy(value.copy()) for name, value in case.weights.items()}
    module.load_state_dict(state, strict=True)
    named = dict(module.named_parameters())
    params = [named[name] for name in case.weights]
    if case.sparse:
        loss = F.cross_entropy
    else:
        loss = MindSporeDenseCE.apply
    return module, loss, params


# ----------------------------------------------------------------------------------------------------------------
# MindSpore


def _mindspore_name(name: str) -> str:
    """MindSpore's parameter name for a canonical one (LayerNorm: gamma and beta)."""
    if name.startswith("ln"):
        return name.replace(".weight", ".gamma").replace(".bias", ".beta")
    return name


def mindspore_model(case: ModelCase) -> tuple[Any, list[Any]]:
    """The case in MindSpore: ``(WithLossCell, parameters in canonical order)``.

    Set the mode (``ms.set_context``) before calling. The cells are defined in
    this file because MindSpore's graph mode compiles ``construct`` from source.
    """
    import mindspore as ms
    from mindspore import nn, ops

    class SeedNet(nn.Cell):
        def __init__(self):
            super().__init__()
            self.weight = ms.Parameter(ms.Tensor(np.ones([2, 2], np.float32)), name="weight")
            self.matmul = ops.MatMul()

        def construct(self, x):
            return self.matmul(x, self.weight)

    class MLP(nn.Cell):
        def __init__(self):
            super().__init__()
            sizes = MLP_SIZES
            self.fc1 = nn.Dense(sizes[0], sizes[1])
            self.fc2 = nn.Dense(sizes[1], sizes[2])
            self.fc3 = nn.Dense(sizes[2], sizes[3])
            self.relu = nn.ReLU()

        def construct(self, x):
            return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))

    class LeNet(nn.Cell):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5, pad_mode="pad", padding=2, has_bias=True)
            self.conv2 = nn.Conv2d(6, 16, 5, pad_mode="valid", has_bias=True)
            self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
            self.flatten = nn.Flatten()
            self.fc1, self.fc2, self.fc3 = nn.Dense(400, 120), nn.Dense(120, 84), nn.Dense(84, 10)
            self.relu = nn.ReLU()

        def construct(self, x):
            x = self.pool(self.relu(self.conv1(x)))
            x = self.flatten(self.pool(self.relu(self.conv2(x))))
            return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))

    class Block(nn.Cell):
        def __init__(self):
            super().__init__()
            b, t, d, h, ffn, classes = (BLOCK[k] for k in ("batch", "seq", "dim", "heads", "ffn", "classes"))
            self.flat, self.heads, self.scale = (b * t, d), (b, t, h, d // h), 1 / math.sqrt(d // h)
            self.q, self.k, self.v, self.o = nn.Dense(d, d), nn.Dense(d, d), nn.Dense(d, d), nn.Dense(d, d)
            self.ln1 = nn.LayerNorm((d,), epsilon=1e-5)
            self.fc1, self.fc2 = nn.Dense(d, ffn), nn.Dense(ffn, d)
            self.ln2 = nn.LayerNorm((d,), epsilon=1e-5)
            self.head = nn.Dense(d, classes)
            self.relu = nn.ReLU()

        def construct(self, x):
            x = ops.reshape(x, self.flat)
            q = ops.transpose(ops.reshape(self.q(x), self.heads), (0, 2, 1, 3))
            k = ops.transpose(ops.reshape(self.k(x), self.heads), (0, 2, 3, 1))
            v = ops.transpose(ops.reshape(self.v(x), self.heads), (0, 2, 1, 3))
            attn = ops.softmax(ops.matmul(q, k) * self.scale, axis=-1)
            ctx = ops.reshape(ops.transpose(ops.matmul(attn, v), (0, 2, 1, 3)), self.flat)
            h = self.ln1(x + self.o(ctx))
            return self.head(self.ln2(h + self.fc2(self.relu(self.fc1(h)))))

    backbone = {"tiny": SeedNet, "mlp": MLP, "lenet": LeNet, "block": Block}[case.name]()
    named = {p.name: p for p in backbone.trainable_params()}
    wanted = {_mindspore_name(n) for n in case.weights}
    if set(named) != wanted:
        raise RuntimeError(f"MindSpore parameters {sorted(named)} do not match the model's {sorted(wanted)}")
    params = []
    for name, value in case.weights.items():
        param = named[_mindspore_name(name)]
        param.set_data(ms.Tensor(value.copy()))
        params.append(param)
    if case.sparse:
        loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    else:
        loss = nn.SoftmaxCrossEntropyWithLogits()
    return nn.WithLossCell(backbone, loss), params


# ----------------------------------------------------------------------------------------------------------------
# Real architectures (``--real``): transformers' own implementations, built from configs with seeded
# random weights (nothing is downloaded). Needs the ``bench`` extra.

REAL_BATCH = 2
REAL_IMAGE = 64  # 3x64x64 images
REAL_CLASSES = 10
REAL_SEQ = 64


@dataclasses.dataclass
class RealCase:
    """One real architecture: the model with its loss, and the call's inputs.

    Attributes:
        name: short name.
        title: what it is, for the table.
        module: an ``nn.Module`` whose forward takes ``inputs`` and returns the scalar loss
            (cross-entropy of the model's logits).
        inputs: forward's positional tensors (the last one the int64 labels).
    """

    name: str
    title: str
    module: Any
    inputs: tuple


def _hf_image(config_class: str, model_class: str, **config: Any) -> Callable[[], Any]:
    return lambda: _hf(config_class, model_class, num_labels=REAL_CLASSES, **config)


def _hf(config_class: str, model_class: str, **config: Any) -> Any:
    import torch
    import transformers

    torch.manual_seed(0)
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**config)).eval()
    with torch.no_grad():
        for param in model.parameters():
            # No two parameters equal (LayerNorm's ones, zero biases): the hand export would merge them.
            param.add_(torch.randn_like(param) * 0.02)
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                # Away from ReLU6's clip boundary ties (see tests/test_hf_models.py).
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
    return model


REAL_MODELS: dict[str, tuple[str, Callable[[], Any], str]] = {
    # name: (title, model builder, input kind)
    "resnet18": ("ResNet-18 (transformers ResNet, basic blocks 2-2-2-2)", _hf_image(
        "ResNetConfig", "ResNetForImageClassification", layer_type="basic", depths=[2, 2, 2, 2],
        hidden_sizes=[64, 128, 256, 512], embedding_size=64), "image"),
    "mobilenet_v2": ("MobileNetV2 1.0 (transformers)", _hf_image(
        "MobileNetV2Config", "MobileNetV2ForImageClassification", image_size=REAL_IMAGE), "image"),
    "efficientnet_b0": ("EfficientNet-B0 (transformers, no dropout)", _hf_image(
        "EfficientNetConfig", "EfficientNetForImageClassification", image_size=REAL_IMAGE, width_coefficient=1.0,
        depth_coefficient=1.0, hidden_dim=1280, dropout_rate=0.0, drop_connect_rate=0.0), "image"),
    # Patch 2: the last stage (4x4 tokens) stays larger than the window; at or below it Swin clamps the
    # window in a Python branch the converter cannot tell from a value branch, and refuses.
    "swin_t": ("Swin-T (transformers, patch 2, window 2)", _hf_image(
        "SwinConfig", "SwinForImageClassification", image_size=REAL_IMAGE, patch_size=2, window_size=2), "image"),
    "bert_small": ("BERT encoder, 4 layers x 256, 4 heads, seq 64 (transformers)", lambda: _hf(
        "BertConfig", "BertForSequenceClassification", vocab_size=1000, hidden_size=256, num_hidden_layers=4,
        num_attention_heads=4, intermediate_size=1024, max_position_embeddings=REAL_SEQ,
        num_labels=REAL_CLASSES, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), "text"),
}


def real_model(name: str) -> RealCase:
    """Builds a real architecture with its loss and seeded inputs."""
    import torch
    from torch.nn import functional as F

    title, build_model, kind = REAL_MODELS[name]
    model = build_model()
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, REAL_CLASSES, size=REAL_BATCH))

    if kind == "image":
        x = torch.from_numpy(rng.normal(size=(REAL_BATCH, 3, REAL_IMAGE, REAL_IMAGE)).astype(np.float32))
    else:
        x = torch.from_numpy(rng.integers(1, 1000, size=(REAL_BATCH, REAL_SEQ)))
    keyword = "pixel_values" if kind == "image" else "input_ids"

    class WithLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x, labels):
            return F.cross_entropy(self.model(**{keyword: x}).logits, labels)

    return RealCase(name, title, WithLoss().eval(), (x, labels))
