"""Seeded random sensitivities, and seeds that follow a case's name, not test order."""

from __future__ import annotations

import zlib
from typing import Any, Callable

import numpy as np


def seed_for(*parts: object) -> int:
    """A stable seed for a case, from its name (and any other parts): the same in every run and order."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def rng_for(*parts: object) -> np.random.Generator:
    """A generator seeded by :func:`seed_for` the case's name."""
    return np.random.default_rng(seed_for(*parts))


def _dtype(leaf: Any) -> np.dtype:
    # numpy's, torch's (torch.float32) or MindSpore's (Float32) dtype, as numpy's.
    return np.dtype(str(leaf.dtype).rsplit(".", 1)[-1].lower())


def random_sens(
    outputs: Any,
    seed: int | np.random.Generator,
    wrap: Callable[[np.ndarray], Any] | None = None,
) -> Any:
    """Standard-normal sensitivities shaped and typed like ``outputs``.

    Args:
        outputs: one output (anything with ``shape`` and ``dtype``: an array, a torch or
            MindSpore tensor) or a tuple or list of them, nested as the network returns them.
        seed: a seed, or a generator to draw from (leaves are drawn depth first, in order).
        wrap: turns each array into the framework's tensor (``torch.from_numpy``,
            ``mindspore.Tensor``); default numpy arrays.

    Returns:
        The sensitivities, nested as ``outputs`` (tuples stay tuples, lists lists).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def draw(tree: Any) -> Any:
        if isinstance(tree, (tuple, list)):
            return type(tree)(draw(item) for item in tree)
        array = rng.normal(size=tuple(tree.shape)).astype(_dtype(tree))
        return wrap(array) if wrap is not None else array

    return draw(outputs)
