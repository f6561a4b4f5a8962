"""The ONNX project's own node test cases, run as gradient checks.

Every case of ``onnx.backend.test.case.node`` (the installed onnx) whose model
is in the default domain and has a float input and a float output is run
through ``ForwardValueAndGrad`` for every float input, with seeded random
sensitivities, and compared with central differences
(:func:`onnxgrad.testing.check_grads`): in float64 where ONNX Runtime has
float64 kernels for the whole forward graph, in float32 otherwise.

Where a case's own inputs sit on a kink or a tie (Relu-like ops at exactly 0,
equal maxima) or are large integers that drown float32 differences, the check
runs on seeded standard-normal inputs of the same shapes instead
(:data:`RESAMPLED`). Cases that cannot be checked this way are excluded with
their reason (:data:`EXCLUDED`, :func:`exclusion`).

An outcome is ``ok`` (the forward values are a plain ONNX Runtime session's on
the same model, so onnxgrad's rewrites change no value, and every gradient
matches), ``refused`` (an ``UnsupportedGradientError``),
``wrong`` (a value or a gradient differs) or ``error`` (any other exception).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import warnings

import numpy as np
import onnx

import onnxgrad
from _support.float64 import to_float64
from onnxgrad.errors import UnsupportedGradientError
from onnxgrad.testing import check_grads

_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE}

#: Cases (name patterns) checked on seeded random inputs instead of their own: why their own inputs
#: defeat differences.
RESAMPLED = {
    r"test_(elu|leakyrelu|selu)_example_expanded.*": "x holds 0, the activation's kink",
    r"test_thresholdedrelu_example_expanded.*": "x holds the threshold, a jump",
    "test_floor_example": "x holds integers, where Floor jumps",
    "test_elu_example": "x holds 0, Elu's kink",
    "test_leakyrelu_example": "x holds 0, LeakyRelu's kink",
    "test_selu_example": "x holds 0, Selu's kink",
    "test_thresholdedrelu_example": "x holds the threshold, a jump",
    "test_round": "x holds halves, where Round jumps",
    "test_sign": "x holds 0, where Sign jumps",
    "test_hardmax_one_hot": "ties in x: Hardmax jumps there",
    "test_reduce_min_default_axes_keepdims_example": "ties in the data: the minimum is not unique",
    "test_maxpool_3d_dilations": "repeated values: windows have tied maxima",
    "test_maxpool_3d_dilations_use_ref_impl": "repeated values: windows have tied maxima",
    r"test_gridsample_(aligncorners_true|bilinear.*|nearest.*|volumetric_.*)": "grid points on samples (linear "
    "interpolation's kinks) or halfway between them (nearest's jumps)",
    "test_convtranspose_3d": "integer inputs up to 60 drown float32 differences (no double Conv kernel)",
    "test_convtranspose_group_2_image_3": "integer inputs up to 17 drown float32 differences (no double Conv kernel)",
}

#: Cases not checked, by name pattern: why differences cannot check them.
EXCLUDED = {
    r"test_bernoulli.*": "random: Bernoulli draws new values on every run",
    r"test_training_dropout_(default_mask|mask)$": "random: training-mode Dropout draws a new mask on every run",
    r"test_castlike_STRING.*": "string input",
    r"test_acosh_example": "x holds 1, the edge of Acosh's domain: an infinite derivative",
    r"test_pow": "negative bases under fractional exponents: the values are NaN",
    r"test_training_dropout(_default)?$": "random: training-mode Dropout with a nonzero ratio draws a new mask each run",
    r"test_training_dropout_zero_ratio_mask": "differences push the ratio input below 0, which Dropout refuses",
    r"test_onehot_.*": "a float input (depth) sets the output's size: differences step across sizes",
    r"test_range_float_type_positive_delta": "float inputs set the output's size: differences step across sizes",
    r"test_(gru|lstm|simple_rnn)_batchwise": "onnxruntime has no kernel for batchwise (layout=1) recurrent ops",
    r"test_scan_sum": "an opset-8 Scan with a batch axis: the conversion to opset 16 changes its inputs",
}


#: Inputs held as constants, by op and input position: they set the reduced axes or the output's
#: size, as exporters write them. Differences cannot step a size, and the rewrites need them static.
FOLDED = {
    **{op: (1,) for op in ("ReduceProd", "ReduceL1", "ReduceLogSum", "ReduceMax", "ReduceMin")},  # axes
    "Resize": (1, 2, 3),  # roi, scales, sizes
    "Upsample": (1,),  # scales
    "AffineGrid": (1,),  # size
    "CenterCropPad": (1,),  # shape
    "DFT": (1, 2),  # dft_length, axis
    "STFT": (1, 3),  # frame_step, frame_length
    "ReverseSequence": (1,),  # sequence_lens
    "MaxUnpool": (2,),  # output_shape
    "Col2Im": (1, 2),  # image_shape, block_shape
}


#: Cases whose forward values are compared with an absolute tolerance scaled by the output's largest
#: value, by name pattern: why elementwise tolerances do not fit.
SCALED_FORWARD_ATOL = {
    r"test_(dft|stft).*": "ONNX Runtime's float32 FFT leaves entries that are exactly 0 at about 1e-6 of the "
    "largest",
}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one case came out."""

    kind: str  # ok, refused, wrong, error
    detail: str = ""
    dtype: str = ""
    op_type: str = ""  # the refused op


def _float_tensor(value: onnx.ValueInfoProto) -> bool:
    return value.type.HasField("tensor_type") and value.type.tensor_type.elem_type in _FLOATS


def exclusion(case) -> str | None:
    """Why a float case is not checked, or None."""
    for pattern, reason in EXCLUDED.items():
        if re.fullmatch(pattern, case.name):
            return reason
    graph = case.model.graph
    if not all(v.type.HasField("tensor_type") for v in [*graph.input, *graph.output]):
        return "sequence, map or optional values"
    arrays = case.data_sets[0][0]
    if len(arrays) != len(graph.input):
        return "an optional input is omitted from the test data"
    if any(np.asarray(a).dtype.kind in "OUS" or (np.asarray(a).dtype == np.uint16
                                                   and v.type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16)
           for a, v in zip(arrays, graph.input)):
        return "an input type numpy cannot hold (bfloat16, float8, int4, string)"
    return None


@functools.lru_cache(maxsize=1)
def float_cases() -> dict:
    """``{name: case}``: every default-domain case with a float input and a float output."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    found = {}
    for case in cases:
        graph = case.model.graph
        domains = {o.domain for o in case.model.opset_import}
        if not case.data_sets or not domains & {"", "ai.onnx"}:
            continue
        if any(node.domain not in ("", "ai.onnx") for node in graph.node):
            continue
        if any(_float_tensor(v) for v in graph.input) and any(_float_tensor(v) for v in graph.output):
            found[case.name] = case
    return found


def resampled(name: str) -> str | None:
    """Why a case is checked on random inputs, or None."""
    return next((why for pattern, why in RESAMPLED.items() if re.fullmatch(pattern, name)), None)


def _inputs(case) -> list[np.ndarray]:
    arrays = [np.asarray(a) for a in case.data_sets[0][0]]
    if resampled(case.name) is None:
        return arrays
    rng = np.random.default_rng(0)
    return [rng.standard_normal(a.shape).astype(a.dtype) if a.dtype.kind == "f" else a for a in arrays]


def fold(model: onnx.ModelProto, args: list[np.ndarray]) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """The model with the graph inputs that only :data:`FOLDED` positions read turned into Constant
    nodes holding the case's values, and the remaining arguments."""
    graph = model.graph
    readers: dict[str, set[tuple[str, int]]] = {}
    for node in graph.node:
        for k, name in enumerate(node.input):
            readers.setdefault(name, set()).add((node.op_type, k))
    folded = {
        value.name: arg for value, arg in zip(graph.input, args)
        if readers.get(value.name) and all(k in FOLDED.get(op, ()) for op, k in readers[value.name])
    }
    if not folded:
        return model, args
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    kept = [value for value in copy.graph.input if value.name not in folded]
    del copy.graph.input[:]
    copy.graph.input.extend(kept)
    constants = [
        onnx.helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(np.asarray(arg), name))
        for name, arg in folded.items()
    ]
    nodes = constants + list(copy.graph.node)
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy, [arg for value, arg in zip(graph.input, args) if value.name not in folded]


def _plain_forward(model: onnx.ModelProto, args: list[np.ndarray]) -> list[np.ndarray] | None:
    """The outputs of a plain ONNX Runtime session on the (opset-converted) model, or None."""
    from onnxgrad import _versions
    from onnxgrad._ort import ort

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        copy = _versions.normalize(copy)
        session = ort.InferenceSession(copy.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {i.name: a for i, a in zip(session.get_inputs(), args)})
    except Exception:  # noqa: BLE001 - no reference then; the gradient check still runs
        return None


def _check(model: onnx.ModelProto, args: list[np.ndarray], dtype: str, scaled_atol: bool = False) -> Outcome:
    try:
        network = onnxgrad.load(model, parameters=[])
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            check_grads(network, args, weights=[])
            # onnxgrad's forward (after its rewrites) is the plain session's on the same model.
            expected = _plain_forward(model, args)
            if expected is not None:
                values = network(*args)
                values = list(values) if isinstance(values, tuple) else [values]
                for k, (got, want) in enumerate(zip(values, expected)):
                    if np.asarray(want).dtype.kind == "f":
                        atol = 1e-6 * max(1.0, float(np.max(np.abs(want)))) if scaled_atol else 1e-6
                        np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol, err_msg=f"forward output {k}")
        return Outcome("ok", dtype=dtype)
    except UnsupportedGradientError as err:
        return Outcome("refused", str(err).splitlines()[0], dtype, err.op_type)
    except AssertionError as err:
        return Outcome("wrong", str(err)[:2000], dtype)
    except Exception as err:  # noqa: BLE001 - every other failure is reported, never hidden
        return Outcome("error", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:500], dtype)


def run(case) -> Outcome:
    """Checks one case's gradients (see the module docstring): in float64 where ONNX Runtime
    has the kernels, forward and backward, else in float32."""
    args = _inputs(case)
    # Folded after the float64 conversion: Resize's scales stay float32.
    model64, rest = fold(to_float64(case.model), args)
    args64 = [a.astype(np.float64) if a.dtype == np.float32 else a for a in rest]
    scaled = any(re.fullmatch(pattern, case.name) for pattern in SCALED_FORWARD_ATOL)
    outcome = _check(model64, args64, "float64", scaled)
    if outcome.kind in ("ok", "wrong"):
        return outcome
    return _check(*fold(case.model, args), "float32", scaled)
