"""onnxgrad against values recorded from PyTorch and MindSpore (``references.py``).

The first test needs no framework: it runs in the portable environment (Python
3.12+, numpy 2, plain onnxruntime, graphs built by the builder subprocess) on
the ONNX files the converters exported, and compares the value and every
gradient with what the framework computed. The second, where a framework is
installed, re-records its networks and checks the stored values are current.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxgrad
import references
from _support.tolerances import tolerance
from _support.treecompare import assert_trees_close

CASES = [(fw, name) for fw in references.FRAMEWORKS for name in references.names(fw)]
RTOL, ATOL = tolerance("recorded").rtol, tolerance("recorded").atol


def test_every_parity_network_is_recorded():
    assert len(references.names("torch")) >= 12 and len(references.names("mindspore")) >= 20


@pytest.mark.parametrize(("framework", "name"), CASES, ids=[f"{fw}-{n}" for fw, n in CASES])
def test_onnxgrad_matches_the_recorded_framework_values(framework, name):
    model_bytes, arrays = references.load(framework, name)
    ref = references.unpack(arrays)
    net = onnxgrad.load(onnx.load_from_string(model_bytes))
    params = net.trainable_params()
    assert [p.name for p in params] == ref["weights"], "the exported weights are the recorded ones"
    sens = ref["sens"][0] if len(ref["sens"]) == 1 else tuple(ref["sens"])
    fvg = onnxgrad.ForwardValueAndGrad(net, params, get_all=True, get_by_list=True, sens_param=True)

    value, (input_grads, weight_grads) = fvg(*ref["inputs"], sens)

    values = list(value) if isinstance(value, tuple) else [value]
    assert_trees_close(tuple(values), tuple(ref["value"]), RTOL, ATOL, f"{framework}/{name} value")
    assert_trees_close(tuple(input_grads), tuple(ref["input_grads"]), RTOL, ATOL, f"{framework}/{name} input grads")
    assert_trees_close(tuple(weight_grads), tuple(ref["weight_grads"]), RTOL, ATOL, f"{framework}/{name} weight grads")


@pytest.mark.parametrize("framework", references.FRAMEWORKS)
def test_recordings_are_what_the_framework_computes_today(framework):
    pytest.importorskip(framework)
    assert references.framework_names(framework) == references.names(framework), (
        "networks were added or removed: run python tests/references.py"
    )
    for name in references.names(framework):
        _, stored = references.load(framework, name)
        _, fresh = references.RECORDERS[framework](name)
        assert sorted(fresh) == sorted(stored), f"{framework}/{name}: run python tests/references.py"
        for key in stored:
            if stored[key].dtype.kind in "fc":
                np.testing.assert_allclose(fresh[key], stored[key], **tolerance("recording").kwargs(), err_msg=f"{name} {key}")
            else:
                np.testing.assert_array_equal(fresh[key], stored[key], err_msg=f"{name} {key}")
