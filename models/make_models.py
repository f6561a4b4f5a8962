"""Writes the sample models in this folder. Run: python models/make_models.py

Every model here is produced by this script; never edit the .onnx files by hand.
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = pathlib.Path(__file__).resolve().parent
IR_VERSION = 8
OPSET = 17


def _model(nodes, inputs, outputs, initializers, name):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION, producer_name="onnxgrad"
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def seed_net() -> onnx.ModelProto:
    """The seed example's ``Net``: ``x @ weight`` with a 2x2 ones weight."""
    weight = numpy_helper.from_array(np.ones([2, 2], np.float32), "weight")
    return _model(
        [helper.make_node("MatMul", ["x", "weight"], ["out"], name="matmul")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 2])],
        [weight],
        "seed_net",
    )


def digits_mlp(seed: int = 0) -> onnx.ModelProto:
    """A 64-64-10 MLP for scikit-learn's 8x8 digits (He-initialised, fixed seed)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, np.sqrt(2 / 64), (64, 64)).astype(np.float32)
    w2 = rng.normal(0, np.sqrt(2 / 64), (64, 10)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w1, "fc1.weight"),
        numpy_helper.from_array(np.zeros(64, np.float32), "fc1.bias"),
        numpy_helper.from_array(w2, "fc2.weight"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc2.bias"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h1"], name="fc1"),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "fc2.weight", "fc2.bias"], ["logits"], name="fc2"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
        "digits_mlp",
    )


MODELS = {"seed_net.onnx": seed_net, "digits_mlp.onnx": digits_mlp}


def main() -> None:
    for filename, factory in MODELS.items():
        onnx.save(factory(), HERE / filename)
        print(f"wrote {HERE / filename}")


if __name__ == "__main__":
    main()
