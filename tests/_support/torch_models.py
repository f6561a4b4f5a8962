"""Small PyTorch modules shared by the converter tests and the parity suite.

:data:`MODELS` maps a name to a :class:`TorchCase`: a factory for the module
and one for its example inputs. Both are seeded, so every call gives the same
weights and inputs. Modules come back in eval mode (dropout is 0 where a
module has it, so train and eval compute the same thing except BatchNorm).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

SEED = 0


@dataclasses.dataclass(frozen=True)
class TorchCase:
    """One test module and its example inputs.

    Attributes:
        module: builds the module (seeded weights, eval mode).
        inputs: builds the example inputs as a tuple of torch tensors.
        unused_parameters: names of parameters forward does not use (absent
            from the converter's parameter map).
    """

    module: Callable[[], nn.Module]
    inputs: Callable[[], tuple[torch.Tensor, ...]]
    unused_parameters: frozenset[str] = frozenset()


def _seeded(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def factory() -> nn.Module:
        torch.manual_seed(SEED)
        return build().eval()

    return factory


def _normal(*shape: int, seed: int = 1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(size=shape).astype(np.float32))


def _ints(high: int, *shape: int, seed: int = 2) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, high, size=shape, dtype=np.int64))


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class ConvBN(nn.Module):
    """Conv + BatchNorm2d + ReLU + Linear; BatchNorm has non-trivial running statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 5 * 5, 2)
        with torch.no_grad():
            # Not the defaults (1, 0), so a fused or folded BatchNorm would show.
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.5, 0.5)
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x)))
        return self.fc(torch.flatten(y, 1))


class LayerNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc(x))


class GELUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 7)
        self.fc2 = nn.Linear(7, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EmbeddingNet(nn.Module):
    """int64 token ids -> embedding -> mean over the sequence -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(ids).mean(dim=1))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 6)
        self.fc2 = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.fc2(torch.relu(self.fc1(x))))


class DepthwiseConv(nn.Module):
    """Depthwise (groups == channels) then pointwise convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.pointwise = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(torch.relu(self.depthwise(x)))


class Transformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(
            d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc_x = nn.Linear(4, 3)
        self.fc_y = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc_x(x) * torch.tanh(self.fc_y(y))


class TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.fc(x)
        return torch.tanh(y), (y * y).sum()


class UnusedInput(nn.Module):
    """``unused`` is not read, and ``spare`` is a parameter forward never uses."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.spare = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor, unused: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class WithLoss(nn.Module):
    """Computes its own loss: cross-entropy of a Linear's logits against int64 targets."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.fc(x), target)


#: name -> the module and example inputs; the converter tests run every entry.
MODELS: dict[str, TorchCase] = {
    "mlp": TorchCase(_seeded(MLP), lambda: (_normal(2, 4),)),
    "cnn_bn": TorchCase(_seeded(ConvBN), lambda: (_normal(2, 3, 5, 5),)),
    "layernorm": TorchCase(_seeded(LayerNormNet), lambda: (_normal(3, 6),)),
    "gelu": TorchCase(_seeded(GELUNet), lambda: (_normal(3, 5),)),
    "embedding": TorchCase(_seeded(EmbeddingNet), lambda: (_ints(10, 2, 5),)),
    "residual": TorchCase(_seeded(Residual), lambda: (_normal(3, 6),)),
    "depthwise": TorchCase(_seeded(DepthwiseConv), lambda: (_normal(2, 4, 6, 6),)),
    "transformer": TorchCase(_seeded(Transformer), lambda: (_normal(2, 5, 8),)),
    "two_inputs": TorchCase(_seeded(TwoInputs), lambda: (_normal(3, 4), _normal(3, 2, seed=3))),
    "two_outputs": TorchCase(_seeded(TwoOutputs), lambda: (_normal(3, 4),)),
    "unused_input": TorchCase(
        _seeded(UnusedInput), lambda: (_normal(3, 4), _normal(3, 5, seed=3)), frozenset({"spare"})
    ),
    "with_loss": TorchCase(_seeded(WithLoss), lambda: (_normal(5, 4), _ints(3, 5))),
}
