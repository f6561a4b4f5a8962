"""The two keys of a gradient call: what to differentiate, and how to run it.

:class:`GradSpec` decides the graph (preparation, the builder and the disk
cache see it); :class:`RunOptions` decides the session (providers, session
config) and never the graph. Both are frozen and hashable, normalised and
checked once when made, so the engine can key its caches on them per call.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from onnxgrad._session import check_providers
from onnxgrad.errors import InputError

__all__ = ["GradSpec", "RunOptions"]


@dataclasses.dataclass(frozen=True)
class GradSpec:
    """What to differentiate: the key of a gradient graph.

    Attributes:
        inputs: positions of the inputs whose gradients are returned.
        weights: names of the parameters whose gradients are returned.
        sens: whether the caller passes the sensitivities (else ones).
        contributing: outputs that feed the gradient (None: all).
    """

    inputs: tuple[int, ...] = ()
    weights: tuple[str, ...] = ()
    sens: bool = False
    contributing: tuple[int, ...] | None = None
    _hash: int = dataclasses.field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Callers pass ranges, lists and generators; the key must be a tuple of plain ints and strs.
        object.__setattr__(self, "inputs", _ints(self.inputs, "inputs"))
        object.__setattr__(self, "weights", tuple(self.weights))
        if not all(isinstance(name, str) for name in self.weights):
            raise InputError(f"GradSpec weights are parameter names (str), got {list(self.weights)!r}.")
        object.__setattr__(self, "sens", bool(self.sens))
        if self.contributing is not None:
            object.__setattr__(self, "contributing", _ints(self.contributing, "contributing"))
        object.__setattr__(self, "_hash", hash((self.inputs, self.weights, self.sens, self.contributing)))

    def __hash__(self) -> int:
        # Hashed on every call (the engine's cache key): computed once.
        return self._hash


def _ints(values: Iterable[Any], what: str) -> tuple[int, ...]:
    items = tuple(values)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise InputError(f"GradSpec {what} are positions (int), got {list(items)!r}.")
    return tuple(int(i) for i in items)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run: the key of a session, never of a graph.

    Args:
        providers: ONNX Runtime execution providers (names, or ``(name, options)``
            tuples); None means the CPU. Checked against this onnxruntime build.
        session_config: ONNX Runtime session config entries (a mapping or
            ``(key, value)`` pairs).

    Attributes:
        providers: the providers in hashable form: names, or ``(name, sorted option pairs)``.
        session_config: the config entries as sorted ``(key, value)`` string pairs.
    """

    providers: tuple = ("CPUExecutionProvider",)
    session_config: tuple = ()
    _hash: int = dataclasses.field(default=0, init=False, repr=False, compare=False)

    def __init__(self, providers: Any = None, session_config: Mapping[str, Any] | Iterable | None = None) -> None:
        checked = check_providers(providers)  # raises InputError naming an unavailable provider
        hashable = tuple((p[0], tuple(sorted(dict(p[1]).items()))) if isinstance(p, tuple) else p for p in checked)
        try:
            entries = dict(session_config or {})
        except (TypeError, ValueError) as err:
            raise InputError(
                f"session_config must map ONNX Runtime config keys to values, got {type(session_config).__name__}: "
                'pass a dict such as {"session.intra_op.allow_spinning": "0"}.'
            ) from err
        config = tuple(sorted((str(k), str(v)) for k, v in entries.items()))
        object.__setattr__(self, "providers", hashable)
        object.__setattr__(self, "session_config", config)
        object.__setattr__(self, "_hash", hash((hashable, config)))

    def __hash__(self) -> int:
        # Hashed on every call (the engine's cache key): computed once.
        return self._hash

    def provider_list(self) -> list:
        """The providers as ONNX Runtime takes them: names, or ``(name, options dict)``."""
        return [(p[0], dict(p[1])) if isinstance(p, tuple) else p for p in self.providers]

    def config_dict(self) -> dict[str, str]:
        """The session config entries as a dict."""
        return dict(self.session_config)
