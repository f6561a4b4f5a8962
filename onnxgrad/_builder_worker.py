"""The gradient builder, run as a script inside the builder environment.

Run as ``python _builder_worker.py REQUEST_DIR`` by a Python that has
``onnxruntime-training-cpu`` (see ``_builder_env``), never imported by
onnxgrad's own process: the file imports only the standard library and
onnxruntime-training, so it runs without onnxgrad installed there.

``REQUEST_DIR`` holds ``model.onnx`` and ``request.json`` (``loss``, ``xs``,
``gradients``: custom gradient definitions as ``_gradient.definitions_json``
writes them). The worker writes ``gradient.onnx`` and exits 0, or writes
``error.txt`` with ORT's message and exits 3. With ``--serve`` it stays up,
reads one request folder per stdin line and answers each with a line
``{"status": 0 or 3}``: a process imports onnxruntime once, not per build.
"""

from __future__ import annotations

import json
import os
import sys

_FAILED = 3


def _probe() -> int:
    """Exit 0 when this Python has the builder (``--probe``); prints its ORT version."""
    import onnxruntime
    from onnxruntime.capi import _pybind_state as C

    print(json.dumps({"onnxruntime": onnxruntime.__version__, "builder": hasattr(C, "GradientGraphBuilder")}))
    return 0 if hasattr(C, "GradientGraphBuilder") else 1


_registered: set[str] = set()


def register_definitions(C, gradients: list[dict], registered: set[str]) -> None:
    """Hands custom gradient definitions to the builder, each key once per process.

    Also used by onnxgrad's in-process route, so both routes register alike.
    """
    for gradient in gradients:
        if gradient["key"] in registered:  # the first registration of a key wins anyway
            continue
        nodes = []
        for spec in gradient["nodes"]:
            node = C.GradientNodeDefinition()
            node.op_type, node.domain = spec["op_type"], spec["domain"]
            # List fields must be assigned whole: appending to them is lost.
            node.inputs, node.outputs = list(spec["inputs"]), list(spec["outputs"])
            attributes = []
            for a in spec["attributes"]:
                attribute = C.GradientNodeAttributeDefinition()
                attribute.name, attribute.value_json, attribute.dtype = a["name"], a["value_json"], a["dtype"]
                attribute.is_tensor = False
                attributes.append(attribute)
            node.attributes = attributes
            nodes.append(node)
        # Stop inputs are not registered: ORT 1.19 honours custom stop edges for ATen ops only;
        # onnxgrad never asks for a gradient through them (_prepare.stopped_inputs).
        C.register_gradient_definition(gradient["key"], nodes)
        registered.add(gradient["key"])


def _build(folder: str) -> int:
    from onnxruntime.capi import _pybind_state as C

    with open(os.path.join(folder, "request.json"), encoding="utf-8") as f:
        request = json.load(f)
    register_definitions(C, request["gradients"], _registered)
    with open(os.path.join(folder, "model.onnx"), "rb") as f:
        model = f.read()
    try:
        options = C.SessionOptions()
        options.log_severity_level = 3
        builder = C.GradientGraphBuilder(model, {request["loss"]}, set(request["xs"]), request["loss"], options)
        builder.build()
        built = builder.get_model()
    except Exception as err:  # ORT's text goes back to the parent, which types the error
        with open(os.path.join(folder, "error.txt"), "w", encoding="utf-8") as f:
            f.write(str(err))
        return _FAILED
    with open(os.path.join(folder, "gradient.onnx"), "wb") as f:
        f.write(built)
    return 0


def _serve() -> int:
    for line in sys.stdin:
        folder = line.strip()
        if not folder:
            continue
        print(json.dumps({"status": _build(folder)}), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        sys.exit(_probe())
    sys.exit(_serve() if sys.argv[1:] == ["--serve"] else _build(sys.argv[1]))
