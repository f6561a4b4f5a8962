"""The graph toolkit (``onnxgrad._graph``): each helper, on small inline graphs."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest

from onnxgrad import _graph
from onnxgrad._graph import TensorType, TypeTable

FLOAT, INT64, DOUBLE = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64, onnx.TensorProto.DOUBLE

MODEL = onnx.parser.parse_model(
    """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (int64[N, 3] i, float[N, 3] f) => (float[N, 3] y, double[N, 3] d)
    <float[2] w = {1.0, 2.0}>
    {
        k = Constant <value_ints = [4, 5]> ()
        c = Cast <to = 1> (i)
        like = CastLike (i, f)
        d = Cast <to = 11> (i)
        y = Add (c, like)
    }
    """
)


def test_type_table_reads_types_and_says_unknown_plainly():
    types = _graph.infer_types(MODEL)
    assert isinstance(types, TypeTable)
    assert types.type_of("c") == TensorType(FLOAT, (None, 3)) and types.elem("d") == DOUBLE
    assert types.shape("i") == (None, 3) and types.rank("i") == 2 and types.static_shape("i") is None
    assert types.static_shape("w") == (2,) and types.is_float("c") and not types.is_float("i")
    assert types.type_of("nothing") == _graph.UNKNOWN and types.elem("nothing") == 0 and types.rank("nothing") is None
    elem, shape = types["like"]  # entries still unpack as (elem, shape)
    assert (elem, shape) == (FLOAT, (None, 3))


def test_a_cast_and_a_castlike_to_float_are_both_where_an_int_input_enters_float_math():
    types = _graph.infer_types(MODEL)
    nodes = {node.output[0]: node for node in MODEL.graph.node}
    assert [_graph.cast_to(nodes[n], types) for n in ("c", "like", "d", "y", "k")] == [FLOAT, FLOAT, DOUBLE, 0, 0]
    assert _graph.float_casts(MODEL.graph, "i", types) == {"c", "like", "d"}
    assert _graph.float_casts(MODEL.graph, "f", types) == set()  # f is CastLike's type source, not its data


def test_constant_value_reads_initializers_and_constant_nodes_only():
    np.testing.assert_array_equal(_graph.constant_value(MODEL.graph, "w"), np.array([1.0, 2.0], np.float32))
    np.testing.assert_array_equal(_graph.constant_value(MODEL.graph, "k"), [4, 5])
    assert _graph.constant_value(MODEL.graph, "c") is None and _graph.constant_value(MODEL.graph, "") is None


def test_attributes_and_default_domains():
    cast = MODEL.graph.node[1]
    assert _graph.attr(cast, "to") == FLOAT and _graph.attr(cast, "saturate", 1) == 1
    assert _graph.attrs(cast) == {"to": FLOAT}
    assert [_graph.is_default_domain(d) for d in ("", "ai.onnx", "com.microsoft")] == [True, True, False]
    assert _graph.default_opset(MODEL) == 17


def test_unique_name_keeps_a_free_name_and_numbers_a_taken_one():
    taken = {"x", "x_1"}
    assert [_graph.unique_name(n, taken) for n in ("y", "x", "x")] == ["y", "x_2", "x_3"]
    assert taken == {"x", "x_1", "x_2", "x_3", "y"}


def test_graph_writer_claims_a_free_name_and_freshens_a_taken_one():
    graph = onnx.GraphProto()
    graph.input.append(onnx.helper.make_tensor_value_info("label", FLOAT, [1]))
    gw = _graph.GraphWriter(graph, 17)
    assert gw.claim("loss") == "loss"
    assert gw.claim("loss").startswith("onnxgrad/loss_")  # claimed above
    assert gw.claim("label").startswith("onnxgrad/label_")  # a graph input


def test_concretize_inputs_fixes_the_named_inputs_and_forgets_declared_shapes():
    model = onnx.ModelProto()
    model.CopyFrom(MODEL)
    model.graph.value_info.append(onnx.helper.make_tensor_value_info("c", FLOAT, ["N", 3]))
    _graph.concretize_inputs(model.graph, {"i": (2, 3)})
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [2, 3]
    assert model.graph.input[1].type.tensor_type.shape.dim[0].dim_param == "N"  # not named: left alone
    assert len(model.graph.value_info) == 0
    assert not any(o.type.tensor_type.HasField("shape") for o in model.graph.output)
    assert _graph.infer_types(model).static_shape("c") == (2, 3)


@pytest.mark.parametrize("opset", [12, 13, 18])
def test_graph_writer_reductions_follow_the_opset(opset):
    gw = _graph.GraphWriter(onnx.GraphProto(), opset)
    gw.reduce("ReduceMean", "x", [1], keepdims=False)
    node = gw.graph.node[-1]
    axes_as_input = opset >= 18
    assert (len(node.input) == 2) == axes_as_input and (_graph.attr(node, "axes") is None) == axes_as_input


def test_inspect_and_grad_agree_where_an_int_input_enters_float_math_through_castlike(tmp_path):
    import onnxgrad
    from onnxgrad import _inspect

    model = onnx.parser.parse_model(
        """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (int64[3] i, float[3] f) => (float[3] y)
        {
            like = CastLike (i, f)
            y = Mul (like, f)
        }
        """
    )
    path = tmp_path / "castlike.onnx"
    onnx.save(model, path)
    report = _inspect.inspect_model(path)
    assert {row.name: row.status for row in report.sources} == {"i": "ok", "f": "ok"}
    # grad: MindSpore's int gradient of i through the CastLike is the float gradient (f) cast back.
    f = np.array([1.5, -2.0, 3.0], np.float32)
    _, (di, df) = onnxgrad.value_and_grad(onnxgrad.load(path), grad_position=(0, 1))(np.array([1, 2, 3]), f)
    np.testing.assert_array_equal(di, np.array([1, -2, 3]))
    np.testing.assert_array_equal(df, np.array([1.0, 2.0, 3.0], np.float32))
