"""Re-exported names report their public home, as numpy's ``set_module`` does."""

from __future__ import annotations

from typing import Any


def claim_exports(namespace: dict[str, Any]) -> None:
    """Sets ``__module__`` of each name in ``namespace['__all__']`` defined in one of its private submodules
    to the public module itself, so ``repr``, ``help()`` and documentation name ``onnxgrad.Network``, not
    ``onnxgrad._network.Network``."""
    public = namespace["__name__"]
    for name in namespace["__all__"]:
        obj = namespace.get(name)
        if getattr(obj, "__module__", "").startswith(public + "._"):
            obj.__module__ = public
