"""Networks named as ``package.module:attribute`` by the training tests.

Nothing here imports a framework until an attribute is asked for, so the
module imports without MindSpore or PyTorch.
"""

from __future__ import annotations

#: Not a network: `onnxgrad train --model train_nets:not_a_network` must refuse it.
not_a_network = 42


def _mindspore_class():
    import mindspore.nn as msnn

    class MindSporeMLP(msnn.Cell):
        """64-32-10 MLP for the 8x8 digits."""

        def __init__(self):
            super().__init__()
            self.fc1 = msnn.Dense(64, 32)
            self.relu = msnn.ReLU()
            self.fc2 = msnn.Dense(32, 10)

        def construct(self, x):
            return self.fc2(self.relu(self.fc1(x)))

    return MindSporeMLP


def mindspore_mlp():
    """A factory: called with no arguments, returns a Cell."""
    import mindspore

    mindspore.set_seed(0)
    return _mindspore_class()()


def torch_mlp():
    """A factory returning a PyTorch module."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def __getattr__(name: str):
    # Module-level attributes built on first access (PEP 562): a Cell class and a module instance.
    if name == "MindSporeMLP":
        return _mindspore_class()
    if name == "torch_instance":
        return torch_mlp()
    raise AttributeError(name)


def torch_batch_reshape():
    """A PyTorch module whose export fixes the batch size (a reshape to the traced batch)."""
    import torch

    class BatchReshape(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(x.reshape(x.shape[0], 4, 16).reshape(x.shape[0], 64))

    torch.manual_seed(0)
    return BatchReshape()


def torch_wrong_input():
    """A PyTorch module for 28x28 images: the 8x8 digits do not fit it."""
    import torch

    return torch.nn.Sequential(torch.nn.Linear(784, 10))


def torch_batch_mean():
    """A PyTorch module whose rows depend on the whole batch (logits centred on the batch mean)."""
    import torch

    class BatchMean(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 10)

        def forward(self, x):
            logits = self.fc(x)
            return logits - logits.mean(dim=0, keepdim=True)

    torch.manual_seed(0)
    return BatchMean()


def mindspore_wrong_input():
    """A MindSpore Cell for 28x28 images: the 8x8 digits do not fit it."""
    import mindspore.nn as msnn

    return msnn.SequentialCell([msnn.Dense(784, 10)])
