"""Hugging Face transformers architectures through the PyTorch module route.

Each model is built in code from a tiny config with random weights (nothing is
downloaded), called with keyword inputs, and every gradient onnxgrad gives
(every float input, every parameter) is compared with torch.autograd. Text
models are exported for one random padding mask and checked on another (same
shapes, so no re-export): a graph specialised to the example mask fails.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from typing import Any, Callable

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import onnxgrad  # noqa: E402
from _support.tolerances import tolerance  # noqa: E402
from onnxgrad.converters import torch as converter  # noqa: E402

pytree = torch.utils._pytree

BATCH, SEQ, VOCAB = 2, 7, 40
RTOL, ATOL = tolerance("torch", "transformers").rtol, tolerance("torch", "transformers").atol


def _mask(seed: int) -> torch.Tensor:
    """A right-padded mask: each row keeps a random number (at least 2) of leading tokens."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, SEQ + 1, size=BATCH)
    lengths[rng.integers(BATCH)] = 2 + seed % 3  # some row is always padded
    return torch.from_numpy((np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64))


def _ids(seed: int) -> torch.Tensor:
    ids = np.random.default_rng(seed).integers(0, VOCAB, size=(BATCH, SEQ))
    ids[:, 1] = 0  # pad_token_id 0 at an attended position: its lookups must not train the padding row
    return torch.from_numpy(ids)


def _normal(*shape: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _labels(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ids.masked_fill(mask == 0, -100)  # padding positions ignored by the loss


@dataclasses.dataclass(frozen=True)
class HFCase:
    """One architecture: its model, and the keyword inputs of the export call and of the checked call.

    Attributes:
        model: builds the model (seeded random weights, eval mode).
        inputs: ``seed -> keyword inputs``; seeds 0 (export) and 1 (checked) differ
            in values, masks and labels, never in shapes or dtypes.
        loss: the model returns a loss first, and only the loss is differentiated
            (``has_aux=True``); otherwise the sum of every output is.
    """

    model: Callable[[], Any]
    inputs: Callable[[int], dict[str, Any]]
    loss: bool = False


def _built(config_class: str, model_class: str, **config: Any) -> Callable[[], Any]:
    def build() -> Any:
        torch.manual_seed(0)
        settings = getattr(transformers, config_class)(**config)
        model = getattr(transformers, model_class)(settings).eval()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    # Fresh statistics and affine parameters (0, 1) turn ReLU6(0) into exact ties at the
                    # clip boundary, where torch's gradient is 0 and ONNX Clip's is 1 (see the README).
                    module.running_mean.normal_(0.0, 0.2)
                    module.running_var.uniform_(0.5, 1.5)
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0.0, 0.2)
        return model

    return build


_TEXT = dict(vocab_size=VOCAB, pad_token_id=0)
_SMALL = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24)

CASES = {
    "bert_classifier": HFCase(
        _built("BertConfig", "BertForSequenceClassification", **_TEXT, **_SMALL, max_position_embeddings=16,
               num_labels=3),
        lambda seed: dict(input_ids=_ids(seed), attention_mask=_mask(seed), token_type_ids=_mask(seed + 5),
                          labels=torch.tensor([seed % 3, 2])),
        loss=True,
    ),
    "bert_masked_lm_tied": HFCase(
        # The decoder is tied to the word embeddings: the padding row gets the decoder's gradient only.
        _built("BertConfig", "BertForMaskedLM", **_TEXT, **_SMALL, max_position_embeddings=16),
        lambda seed: dict(input_ids=_ids(seed), attention_mask=_mask(seed), labels=_labels(_ids(seed), _mask(seed))),
        loss=True,
    ),
    "bert_inputs_embeds": HFCase(
        _built("BertConfig", "BertModel", **_TEXT, **_SMALL, max_position_embeddings=16),
        lambda seed: dict(inputs_embeds=_normal(BATCH, SEQ, 16, seed=seed), attention_mask=_mask(seed)),
    ),
    "gpt2_lm_head": HFCase(
        _built("GPT2Config", "GPT2LMHeadModel", vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=2, n_positions=16,
               use_cache=False),
        lambda seed: dict(input_ids=_ids(seed), attention_mask=_mask(seed), labels=_labels(_ids(seed), _mask(seed))),
        loss=True,
    ),
    "t5_encoder": HFCase(
        _built("T5Config", "T5EncoderModel", **_TEXT, d_model=16, d_kv=8, d_ff=24, num_layers=2, num_heads=2,
               relative_attention_num_buckets=8, use_cache=False),
        lambda seed: dict(input_ids=_ids(seed), attention_mask=_mask(seed)),
    ),
    "llama_decoder": HFCase(
        _built("LlamaConfig", "LlamaForCausalLM", **_TEXT, **_SMALL, num_key_value_heads=1,
               max_position_embeddings=16, use_cache=False),
        lambda seed: dict(input_ids=_ids(seed), attention_mask=_mask(seed), labels=_labels(_ids(seed), _mask(seed))),
        loss=True,
    ),
    "resnet": HFCase(
        _built("ResNetConfig", "ResNetForImageClassification", embedding_size=8, hidden_sizes=[8, 16],
               depths=[1, 1], layer_type="basic", num_labels=3),
        lambda seed: dict(pixel_values=_normal(BATCH, 3, 32, 32, seed=seed), labels=torch.tensor([seed % 3, 1])),
        loss=True,
    ),
    "mobilenet_v2": HFCase(
        _built("MobileNetV2Config", "MobileNetV2ForImageClassification", image_size=32, depth_multiplier=0.25,
               num_labels=3),
        lambda seed: dict(pixel_values=_normal(BATCH, 3, 32, 32, seed=seed), labels=torch.tensor([seed % 3, 1])),
        loss=True,
    ),
    "efficientnet": HFCase(
        _built("EfficientNetConfig", "EfficientNetForImageClassification", image_size=32, width_coefficient=0.25,
               depth_coefficient=0.25, hidden_dim=320, num_labels=3),
        lambda seed: dict(pixel_values=_normal(BATCH, 3, 32, 32, seed=seed), labels=torch.tensor([seed % 3, 1])),
        loss=True,
    ),
    "swin": HFCase(
        # 36 pixels / patch 4 = 9 patches a side: not a multiple of the window, so Swin pads (a shape branch).
        _built("SwinConfig", "SwinForImageClassification", image_size=36, patch_size=4, embed_dim=8, depths=[1, 1],
               num_heads=[1, 2], window_size=2, num_labels=3),
        lambda seed: dict(pixel_values=_normal(BATCH, 3, 36, 36, seed=seed), labels=torch.tensor([seed % 3, 1])),
        loss=True,
    ),
}


def _graph_order(model: Any, inputs: dict[str, Any]) -> list[str]:
    """The keyword inputs in forward's signature order: the order of the graph inputs and their gradients."""
    order = list(inspect.signature(model.forward).parameters)
    return sorted(inputs, key=order.index)


def _torch_reference(model: Any, inputs: dict[str, Any], loss: bool) -> tuple[Any, dict[str, Any], list[Any]]:
    """forward's output, the gradients of the float inputs, and the parameter gradients, by autograd."""
    model.zero_grad(set_to_none=True)
    inputs = {k: v.clone().requires_grad_(True) if v.is_floating_point() else v for k, v in inputs.items()}
    output = model(**inputs)
    target = output.loss if loss else sum(leaf.sum() for leaf in pytree.tree_leaves(output))
    target.backward()
    input_grads = {k: v.grad for k, v in inputs.items() if v.is_floating_point()}
    return output, input_grads, [p.grad for p in model.parameters()]


def _close(actual: Any, expected: Any, what: str) -> None:
    expected = torch.zeros_like(actual) if expected is None else expected.detach()
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (
        f"{what}: {actual.dtype}{list(actual.shape)}, torch {expected.dtype}{list(expected.shape)}"
    )
    scale = max(1.0, float(expected.abs().max()))
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=RTOL, atol=ATOL * scale, err_msg=what)


@pytest.fixture
def export_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the converter's exports."""
    count = [0]
    original = converter.to_onnx

    def counted(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(converter, "to_onnx", counted)
    return count


@pytest.mark.parametrize("name", CASES)
def test_gradients_match_autograd(name: str, export_count: list[int]) -> None:
    case = CASES[name]
    model = case.model()
    exported, checked = case.inputs(0), case.inputs(1)
    order = _graph_order(model, checked)
    params = list(model.parameters())
    fn = onnxgrad.value_and_grad(model, grad_position=tuple(range(len(order))), weights=params, has_aux=case.loss)
    fn(**exported)
    value, (input_grads, weight_grads) = fn(**checked)
    assert export_count[0] == 1, "the checked call has the export call's shapes: no second export"

    output, torch_input_grads, torch_weight_grads = _torch_reference(model, checked, case.loss)
    assert type(value) is type(output) and list(value.keys()) == list(output.keys())
    for key in output.keys():
        _close(value[key], output[key], f"{name} output {key}")
    assert len(input_grads) == len(order)
    for key, grad in zip(order, input_grads):
        if checked[key].is_floating_point():
            _close(grad, torch_input_grads[key], f"{name} grad[{key}]")
        else:  # int inputs get int zeros (they only index or mask)
            assert grad.dtype == checked[key].dtype and grad.shape == checked[key].shape, f"{name} grad[{key}]"
    assert len(weight_grads) == len(torch_weight_grads)
    for (param_name, _), grad, expected in zip(model.named_parameters(), weight_grads, torch_weight_grads):
        _close(grad, expected, f"{name} grad[{param_name}]")


@pytest.mark.parametrize("name", ["bert_classifier", "llama_decoder"])
def test_dynamo_exporter_gives_the_same_gradients(name: str) -> None:
    """The exporter option on real models (the default is TorchScript; see the converter's docstring)."""
    pytest.importorskip("onnxscript")
    case = CASES[name]
    model = case.model()
    checked = case.inputs(1)
    front = converter.TorchFrontend(model, exporter="dynamo")
    fn = onnxgrad.value_and_grad(front, grad_position=None, weights=list(model.parameters()), has_aux=case.loss)
    fn(**case.inputs(0))
    value, weight_grads = fn(**checked)
    output, _, torch_weight_grads = _torch_reference(model, checked, case.loss)
    _close(value.loss, output.loss, f"{name} loss")
    for (param_name, _), grad, expected in zip(model.named_parameters(), weight_grads, torch_weight_grads):
        _close(grad, expected, f"{name} grad[{param_name}]")
