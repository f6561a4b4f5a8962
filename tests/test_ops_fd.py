"""Finite-difference checks of every op onnxgrad differentiates, for inputs and weights.

Each case is a tiny model written in the ONNX text format, with random weights
as initializers (so every float initializer is a trainable parameter), checked
with :func:`onnxgrad.testing.check_grads`; its forward values are checked
against the original model too, since a rewrite that changed the function
would still pass the gradient check. Cases use float64 where ONNX Runtime's
CPU kernels, forward and gradient, take double; each case's notes say which
dtype it uses and why. Ops onnxgrad cannot differentiate are not here: they
raise UnsupportedGradientError (tests/test_errors_and_contract.py). The cases live in
tests/_support/op_cases.py (the builder and lowering tests run them too).
"""

from __future__ import annotations

import re
import weakref

import numpy as np
import onnx
import onnx.parser
import onnxruntime
import pytest
from onnx.reference import ReferenceEvaluator

import onnxgrad
import onnxgrad.testing
from _support.op_cases import CASES, CASES_BY_NAME, network_and_args
from onnxgrad import _rewrites, _session
from onnxgrad.testing import check_grads


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_gradients_match_finite_differences(case):
    _, network, args = network_and_args(case)
    check_grads(network, args, **case.tolerance)


def _reference_outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The original model's outputs from ORT's own kernels, or from the ONNX
    reference evaluator where ORT has no kernel (many ops in float64)."""
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as err:  # pybind's NOT_IMPLEMENTED
        if "NOT_IMPLEMENTED" not in str(err):
            raise
        return ReferenceEvaluator(model).run(None, feeds)
    return session.run(None, feeds)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_forward_values_match_the_original_model(case):
    # Rewrites must keep forward values: check_grads alone would accept a rewrite
    # that changes the function consistently in both passes.
    model, network, args = network_and_args(case)
    expected = _reference_outputs(model, {info.name: a for info, a in zip(network.inputs, args)})
    actual = network(*args)
    actual = actual if isinstance(actual, tuple) else (actual,)
    for got, want in zip(actual, expected, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        # float64: the reference rounds some constants to float32 (HardSwish's 1/6).
        tight = got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-7 if tight else 1e-5, atol=1e-9 if tight else 1e-6)


def test_int_input_gets_int_zeros():
    _, network, args = network_and_args(CASES_BY_NAME["gather"])
    fvg = onnxgrad.ForwardValueAndGrad(network, network.trainable_params(), get_all=True, get_by_list=True)
    _, ((index_grad,), (weight_grad,)) = fvg(*args)
    assert index_grad.dtype == np.int64 and index_grad.shape == (2, 2) and not index_grad.any()
    # Row 3 is gathered twice, row 2 never.
    np.testing.assert_array_equal(weight_grad, np.array([[1] * 3, [1] * 3, [0] * 3, [2] * 3], np.float64))


def test_input_reaching_the_output_only_through_shape_gets_exact_zeros():
    _, network, args = network_and_args(CASES_BY_NAME["shape_only"])
    _, (x_grad,) = onnxgrad.ForwardValueAndGrad(network, get_all=True)(*args)
    assert x_grad.dtype == np.float64 and x_grad.shape == (2, 3) and not x_grad.any()


def test_check_grads_restores_weights_and_leaves_inputs_alone():
    _, network, args = network_and_args(CASES_BY_NAME["layernorm"])
    before = {p.name: p.value.copy() for p in network.trainable_params()}
    copies = [a.copy() for a in args]
    check_grads(network, args)
    for p in network.trainable_params():
        np.testing.assert_array_equal(p.value, before[p.name], strict=True)
    for arg, copy in zip(args, copies):
        np.testing.assert_array_equal(arg, copy, strict=True)


def test_check_grads_names_tensor_and_element_of_a_wrong_gradient(monkeypatch):
    class Doubled:
        """ForwardValueAndGrad, with the weight gradients doubled."""

        def __init__(self, *args, **kwargs):
            self._fvg = onnxgrad.ForwardValueAndGrad(*args, **kwargs)

        def __call__(self, *args):
            value, (inputs, weights) = self._fvg(*args)
            return value, (inputs, tuple(2 * g for g in weights))

    monkeypatch.setattr(onnxgrad.testing, "ForwardValueAndGrad", Doubled)
    _, network, args = network_and_args(CASES_BY_NAME["gemm_bias"])
    with pytest.raises(AssertionError, match=r"12 element\(s\) of grad\[w\], 4 element\(s\) of grad\[b\]") as caught:
        check_grads(network, args)
    line = r"grad\[[wb]\]\[[\d, ]+\]: analytic (\S+), numeric (\S+) \(rtol 1e-05, atol 1e-07\)"
    lines = re.findall(line, str(caught.value))
    assert len(lines) == 5  # the worst five
    for analytic, numeric in lines:
        assert float(analytic) == pytest.approx(2 * float(numeric), rel=1e-4)


@pytest.mark.parametrize(
    ("name", "op", "message"),
    [
        ("dropout_inference_mask", "Dropout", r"grad\[x\]\[\d, \d\]: analytic"),
        # Wrong shapes are caught by the engine itself, before any comparison.
        ("where_broadcast", "Where", r"gradient of 'w' has shape \[2, 3\], the tensor \[3\]"),
        ("split_one_unused", "Split", r"gradient of 'x' has shape \[2, 4\], the tensor \[2, 6\]"),
        ("clip_weight_bounds", "Clip", r"grad\[(lo|hi)\]\[\]: analytic 0, numeric"),
        ("gelu_tanh", "Gelu", r"grad\[(x|w)\]\[.*analytic"),
        ("einsum_ellipsis", "Einsum", r"no (gradient for op|kernel for) Einsum"),
        ("einsum_diagonal", "Einsum", r"no (gradient for op|kernel for) Einsum"),
        ("nllloss_weight_ignore", "NegativeLogLikelihoodLoss",
         r"no (gradient for op|kernel for) NegativeLogLikelihoodLoss"),
        ("dft_complex_inverse_length", "DFT", r"no (gradient for op|kernel for) DFT"),
        ("reversesequence", "ReverseSequence", r"no (gradient for op|kernel for) ReverseSequence"),
        ("maxunpool", "MaxUnpool", r"no (gradient for op|kernel for) MaxUnpool"),
        ("col2im_strides_pads", "Col2Im", r"no (gradient for op|kernel for) Col2Im"),
        ("det_singular", "Det", r"no (gradient for op|kernel for) Det"),
        # The builder's shape inference of STFT fails before its missing gradient shows.
        ("stft_window", "STFT", r"no (gradient for op|kernel for) STFT|could not build the gradient graph"),
        ("affinegrid_2d", "AffineGrid", r"no (gradient for op|kernel for) AffineGrid"),
        ("centercroppad", "CenterCropPad", r"no (gradient for op|kernel for) CenterCropPad"),
        ("resize_linear_2d", "Resize", r"no kernel for Resize|The Resize node"),
        ("resize_nearest_1d", "Resize", r"no kernel for Resize|The Resize node"),
        ("resize_antialias_linear", "Resize", r"no kernel for Resize|The Resize node"),
        ("gridsample_bilinear_zeros", "GridSample", r"no (gradient for op|kernel for) GridSample"),
        ("gridsample_trilinear_border", "GridSample", r"no (gradient for op|kernel for) GridSample"),
        ("gridsample_bicubic_reflection", "GridSample", r"no (gradient for op|kernel for) GridSample"),
        ("rnn_bidirectional_clip", "RNN", r"no gradient for op RNN"),
        ("gru_reverse_linear_before_reset", "GRU", r"no gradient for op GRU"),
        ("lstm_peepholes_sequence_lens", "LSTM", r"no gradient for op LSTM"),
        ("reduceprod_zeros", "ReduceProd", r"no (gradient for op|kernel for) ReduceProd"),
        ("reduceprod_axes_input", "ReduceProd", r"no (gradient for op|kernel for) ReduceProd"),
        # Without the rewrite, what the bodies read from the outer scope would get zeros: refused.
        ("if_outer_reads_then", "If", r"reads .* from the outer scope"),
        ("if_outer_reads_else", "If", r"reads .* from the outer scope"),
        ("scan_outer_reads", "Scan", r"reads .* from the outer scope|no gradient for op Scan"),
    ],
)
def test_check_grads_catches_the_builder_gradients_that_rewrites_fix(name, op, message, monkeypatch, fresh_cache):
    # Without onnxgrad's rewrite, ORT's own gradient of these ops is wrong.
    monkeypatch.delitem(_rewrites.REWRITES, op)
    # Sessions are shared by graph key, which knows nothing of the patched rewrites: none from before.
    monkeypatch.setattr(_session, "_shared", weakref.WeakValueDictionary())
    case = CASES_BY_NAME[name]
    _, network, args = network_and_args(case)
    with pytest.raises((AssertionError, onnxgrad.GradientBuildError), match=message):
        check_grads(network, args, **case.tolerance)


def test_the_builder_alone_refuses_a_loop_body_reading_the_outer_scope(monkeypatch, fresh_cache):
    # Without the unrolling, the builder would give w and b (read in the body) zeros: refused instead.
    # (Not through check_grads: its forward-only build of a kept Loop declares an output onnx's checker rejects.)
    monkeypatch.delitem(_rewrites.REWRITES, "Loop")
    monkeypatch.setattr(_session, "_shared", weakref.WeakValueDictionary())
    _, network, args = network_and_args(CASES_BY_NAME["loop_outer_reads"])
    fvg = onnxgrad.ForwardValueAndGrad(network, network.trainable_params(), get_all=True)
    with pytest.raises(onnxgrad.UnsupportedGradientError, match=r"The Loop node 'h' reads .* from the outer scope"):
        fvg(*args)


@pytest.mark.parametrize(
    ("attributes", "named"),
    [("input_forget = 1", "its attribute input_forget=1, which onnxgrad does not unroll"),
     ('activations = ["HardSigmoid", "Tanh", "Tanh"]',
      "its attribute activations=['hardsigmoid', 'tanh', 'tanh'] with direction='forward': onnxgrad unrolls 3 per "
      "direction from Tanh, Sigmoid and Relu only")],
)
def test_recurrent_nodes_onnxgrad_cannot_unroll_are_refused_naming_the_attribute(attributes, named):
    model = onnx.parser.parse_model(f"""<ir_version: 8, opset_import: ["" : 17]>
    g (float[2,1,2] x, float[1,8,2] W, float[1,8,2] R) => (float[2,1,1,2] y) {{
      y = LSTM <hidden_size = 2, {attributes}> (x, W, R)
    }}""")
    model.graph.node[0].name = "lstm"
    fvg = onnxgrad.ForwardValueAndGrad(onnxgrad.load(model, parameters=[]))
    with pytest.raises(onnxgrad.UnsupportedGradientError,
                       match=r"no gradient for op LSTM \(node 'lstm'\).* onnxgrad rewrites LSTM into ops with "
                       rf"gradients, but not this node: {re.escape(named)}\. Replace"):
        fvg(*(np.ones(shape, np.float32) for shape in ((2, 1, 2), (1, 8, 2), (1, 8, 2))))


def test_a_grid_sample_onnxgrad_cannot_rewrite_is_refused_naming_why():
    # Every mode and padding_mode is rewritten; a grid whose shape is known only at run time is not.
    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
    g (float[1,1,3,3] x, float[8] flat, int64[4] s) => (float[1,1,2,2] y) {
      grid = Reshape(flat, s)
      y = GridSample <mode = "bilinear", padding_mode = "border"> (x, grid)
    }""")
    model.graph.node[1].name = "sample"
    fvg = onnxgrad.ForwardValueAndGrad(onnxgrad.load(model, parameters=[]), get_all=True)
    with pytest.raises(onnxgrad.UnsupportedGradientError,
                       match=r"no gradient for op GridSample \(node 'sample'\).*but not this node: the shape of its "
                       r"grid 'grid' is not static\."):
        fvg(np.ones((1, 1, 3, 3), np.float32), np.linspace(-0.8, 0.8, 8, dtype=np.float32), np.array([1, 2, 2, 2]))


@pytest.mark.parametrize(
    ("trip_count", "named"),
    [("n", "its trip count 'n' is not a constant"),
     ("m", "its trip count is 65, not 1 to 64")],
)
def test_loops_onnxgrad_cannot_unroll_are_refused_naming_the_node_and_why(trip_count, named):
    model = onnx.parser.parse_model(f"""<ir_version: 8, opset_import: ["" : 17]>
    g (int64 n, double[2] x) => (double[2] h) {{
      m = Constant <value = int64 {{65}}> ()
      h = Loop ({trip_count}, , x) <body = g (int64 i, bool c, double[2] h_in) => (bool c_out, double[2] h_out) {{
        c_out = Identity(c)
        h_out = Sin(h_in)
      }}>
    }}""")
    model.graph.node[1].name = "loop"
    fvg = onnxgrad.ForwardValueAndGrad(onnxgrad.load(model, parameters=[]), get_all=True)
    with pytest.raises(onnxgrad.UnsupportedGradientError,
                       match=rf"no gradient for op Loop \(node 'loop'\).*but not this node: {re.escape(named)}\."):
        fvg(np.array(3, np.int64), np.ones(2))


@pytest.mark.parametrize(
    ("scales", "attributes", "named"),
    [("s = Constant <value = float[4] {1.0, 1.0, 0.5, 0.5}> ()",
      'coordinate_transformation_mode = "tf_half_pixel_for_nn"',
      "coordinate_transformation_mode='tf_half_pixel_for_nn'"),
     ("s = Concat <axis = 0> (ones, halves)", 'mode = "linear"', "roi, scales or sizes that are not constants")],
)
def test_resize_gradients_onnxgrad_does_not_define_are_refused_naming_node_and_attribute(scales, attributes, named):
    model = onnx.parser.parse_model(f"""<ir_version: 8, opset_import: ["" : 18]>
    g (float[1,1,4,4] x, float[2] halves) => (float[1,1,2,2] y) {{
      ones = Constant <value = float[2] {{1.0, 1.0}}> ()
      {scales}
      y = Resize <{attributes}> (x, , s)
    }}""")
    model.graph.node[2].name = "shrink"
    with pytest.raises(onnxgrad.UnsupportedGradientError, match=rf"The Resize node 'shrink' has {re.escape(named)}"):
        # The gradient of x (the first input) only: the scales need none.
        fvg = onnxgrad.ForwardValueAndGrad(onnxgrad.load(model))
        fvg(np.ones((1, 1, 4, 4), np.float32), np.full(2, 0.5, np.float32))


def test_check_grads_takes_a_framework_module():
    torch = pytest.importorskip("torch", reason="PyTorch is an optional front-end")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    check_grads(module, [x])
    check_grads(module, [x], weights=[module[0].weight])
