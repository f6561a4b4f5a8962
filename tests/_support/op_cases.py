"""The op cases: every op onnxgrad differentiates, as a tiny model in the ONNX text format.

Each case has random weights as initializers (so every float initializer is a trainable
parameter) and seeded inputs; its notes say which dtype it uses and why. The finite-difference
suite (``tests/test_ops_fd.py``), the builder tests and the lowering tests run them.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from typing import Callable, Mapping

import numpy as np
import onnx
import onnx.parser

import onnxgrad
import onnxgrad.testing

Sampler = Callable[[np.random.Generator, tuple, np.dtype], np.ndarray]

_TYPE_NAMES = {"double": np.float64, "float": np.float32}  # the text format has no float16 literals
_SYMBOLIC_SIZE = 3  # concrete size given to named dims such as "N"


def normal(rng: np.random.Generator, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """Standard normal values."""
    return rng.standard_normal(shape).astype(dtype)


def positive(rng: np.random.Generator, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """Values in [0.5, 2): for Log, Sqrt, Pow, divisors and variances."""
    return rng.uniform(0.5, 2.0, shape).astype(dtype)


def nonzero(rng: np.random.Generator, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """Values with 0.2 <= |x| < 1.5: clear of the kink at zero (Relu, Abs, ...) by far more than the steps."""
    return (rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 1.5, shape)).astype(dtype)


def negative(rng: np.random.Generator, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """Values in (-2, -0.5]: a sum clear of a condition's threshold at 0."""
    return -positive(rng, shape, dtype)


def distinct(rng: np.random.Generator, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """Values 0.1 apart in random order: no near-ties for MaxPool, Max, ReduceMax."""
    size = int(np.prod(shape, dtype=np.int64))
    return ((rng.permutation(size) - size / 2) * 0.1).reshape(shape).astype(dtype)


def with_zeros(rng: np.random.Generator, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """Values in [0.5, 1.5) with signs, every third element exactly 0: products whose gradients
    are products of the other factors, where prod / x would divide by zero."""
    values = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 1.5, shape)
    values.reshape(-1)[::3] = 0.0
    return values.astype(dtype)


def grid_points(sizes: tuple[int, ...], align_corners: bool = False) -> Sampler:
    """A GridSample grid for an input of spatial ``sizes``: each point 0.1 to 0.4 of the way between
    two samples, clear of the kinks and jumps at samples and halfway between them (interpolation,
    nearest's rounding, the border and reflection edges) by more than float32 differences step; some
    points past the border."""

    def sample(rng: np.random.Generator, shape: tuple, dtype: np.dtype) -> np.ndarray:
        sizes_xyz = np.array(sizes[::-1], np.float64)  # the grid lists x (innermost) first
        position = rng.integers(-1, sizes_xyz.astype(int) + 1, shape) + rng.uniform(0.1, 0.4, shape)
        if align_corners:
            return (position / (sizes_xyz - 1) * 2 - 1).astype(dtype)
        return ((2 * position + 1) / sizes_xyz - 1).astype(dtype)

    return sample


def const(values) -> Sampler:
    """A fixed value (int indices and the like)."""
    return lambda rng, shape, dtype: np.asarray(values, dtype=dtype).reshape(shape)


@dataclasses.dataclass(frozen=True)
class Case:
    """One finite-difference case.

    The model factory is :meth:`model`, the input factory :meth:`inputs`.

    Attributes:
        name: the pytest id.
        signature: the graph's ``(inputs) => (outputs)`` in ONNX text; ``T`` is the case's element type.
        body: the graph's nodes in ONNX text.
        weights: initializer shapes by name; values are drawn like the inputs.
        dtype: ``"double"`` or ``"float"``.
        opset: the default-domain opset.
        sample: draws float inputs and weights.
        special: samplers for particular inputs or weights (int inputs need one).
        tolerance: keyword overrides for check_grads (eps, rtol, atol).
        notes: the dtype's reason and anything else worth knowing.
    """

    name: str
    signature: str
    body: str
    weights: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    dtype: str = "double"
    opset: int = 17
    sample: Sampler = normal
    special: Mapping[str, Sampler] = dataclasses.field(default_factory=dict)
    tolerance: Mapping[str, float] = dataclasses.field(default_factory=dict)
    notes: str = ""

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(_TYPE_NAMES[self.dtype])

    def _rng(self, salt: str) -> np.random.Generator:
        return np.random.default_rng(zlib.crc32(f"{self.name}/{salt}".encode()))

    def _draw(self, name: str, shape: tuple, dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
        sampler = self.special.get(name, self.sample)
        return sampler(rng, tuple(shape), np.dtype(dtype))

    def model(self) -> onnx.ModelProto:
        """The model, with seeded random initializers."""
        rng = self._rng("weights")
        inits = []
        for name, shape in self.weights.items():
            values = self._draw(name, shape, self.np_dtype, rng).reshape(-1)
            dims = ",".join(str(d) for d in shape)
            literal = ", ".join(repr(float(v)) for v in values)
            declared = f"{self.dtype}[{dims}]" if shape else self.dtype
            inits.append(f"{declared} {name} = {{{literal}}}")
        elem = onnx.helper.np_dtype_to_tensor_dtype(self.np_dtype)
        body = re.sub(r"\bto = T\b", f"to = {elem}", self.body)
        signature, body = (re.sub(r"\bT\b", self.dtype, text) for text in (self.signature, body))
        initializers = f"<{', '.join(inits)}>" if inits else ""
        text = f'<ir_version: 8, opset_import: ["" : {self.opset}]>\nagraph {signature} {initializers}\n{{\n{body}\n}}'
        return onnx.parser.parse_model(text)

    def inputs(self, network: onnxgrad.Network) -> list[np.ndarray]:
        """Seeded arguments for the network's inputs (named sizes become concrete)."""
        rng = self._rng("inputs")
        arrays = []
        for info in network.inputs:
            shape = tuple(d if isinstance(d, int) else _SYMBOLIC_SIZE for d in info.shape)
            if info.is_float or info.name in self.special:
                arrays.append(self._draw(info.name, shape, info.dtype, rng))
            else:
                raise ValueError(f"case {self.name}: int input {info.name!r} needs a sampler in `special`")
        return arrays


F64 = "float64: ORT's CPU kernels take double, forward and gradient"


def f32(reason: str) -> str:
    """Notes of a float32 case: why not float64."""
    return f"float32: {reason}"


GRID_F32 = f32("ORT's GridSample kernel, the forward reference, is float-only (onnx's evaluator rounds "
                "through float32)")

CASES: tuple[Case, ...] = (
    # --- linear algebra
    Case("gemm_bias", "(T[2,3] x) => (T[2,4] y)", "y = Gemm(x, w, b)", {"w": (3, 4), "b": (4,)}, notes=F64),
    Case("gemm_trans", "(T[3,2] x) => (T[2,4] y)",
         "y = Gemm <transA = 1, transB = 1, alpha = 0.5, beta = 2.0> (x, w, b)", {"w": (4, 3), "b": (1, 4)},
         notes=F64),
    Case("matmul", "(T[2,3] x) => (T[2,4] y)", "y = MatMul(x, w)", {"w": (3, 4)}, notes=F64),
    Case("matmul_two_inputs", "(T[2,3] a, T[3,4] b) => (T[2,4] y)", "y = MatMul(a, b)", notes=F64),
    Case("matmul_batched", "(T[2,2,3] x) => (T[2,2,4] y)", "y = MatMul(x, w)", {"w": (2, 3, 4)}, dtype="float",
         notes=f32("the gradient's FusedMatMul has no double kernel")),
    Case("matmul_broadcast", "(T[2,1,2,3] x) => (T[2,3,2,4] y)", "y = MatMul(x, w)", {"w": (3, 3, 4)}, dtype="float",
         notes=f32("the gradient's FusedMatMul has no double kernel")),
    Case("matmul_vector", "(T[3] x) => (T[4] y)", "y = MatMul(x, w)", {"w": (3, 4)}, dtype="float",
         notes=f32("the gradient's FusedMatMul has no double kernel")),
    # --- convolution and pooling
    Case("conv_bias_pad", "(T[1,2,4,4] x) => (T[1,3,4,4] y)", "y = Conv <pads = [1, 1, 1, 1]> (x, w, b)",
         {"w": (3, 2, 3, 3), "b": (3,)}, dtype="float", notes=f32("no double Conv kernel")),
    Case("conv_pointwise", "(T[2,3,3,4] x) => (T[2,4,3,4] y)", "y = Conv (x, w, b)", {"w": (4, 3, 1, 1), "b": (4,)},
         dtype="float", notes=f32("no double Conv kernel") + "; a 1x1 Conv is its own unfolding"),
    Case("conv_pointwise_stride", "(T[2,3,5,4] x) => (T[2,4,3,2] y)", "y = Conv <strides = [2, 2]> (x, w)",
         {"w": (4, 3, 1, 1)}, dtype="float", notes=f32("no double Conv kernel") + "; rows the stride skips"),
    Case("conv_stride", "(T[1,2,5,5] x) => (T[1,2,3,3] y)", "y = Conv <strides = [2, 2], pads = [1, 1, 1, 1]> (x, w)",
         {"w": (2, 2, 3, 3)}, dtype="float", notes=f32("no double Conv kernel")),
    # ORT's ConvGrad ignores auto_pad (MindSpore's Conv2d exports SAME_UPPER): onnxgrad makes pads explicit.
    Case("conv_same_upper", "(T[1,2,5,5] x) => (T[1,3,5,5] y)", 'y = Conv <auto_pad = "SAME_UPPER"> (x, w, b)',
         {"w": (3, 2, 3, 3), "b": (3,)}, dtype="float", notes=f32("no double Conv kernel")),
    Case("conv_same_lower_stride", "(T[1,2,6,6] x) => (T[1,2,3,3] y)",
         'y = Conv <auto_pad = "SAME_LOWER", strides = [2, 2]> (x, w)', {"w": (2, 2, 4, 4)}, dtype="float",
         notes=f32("no double Conv kernel")),
    Case("conv_valid", "(T[1,2,5,5] x) => (T[1,2,3,3] y)", 'y = Conv <auto_pad = "VALID"> (x, w)',
         {"w": (2, 2, 3, 3)}, dtype="float", notes=f32("no double Conv kernel")),
    Case("maxpool_same_upper", "(T[1,2,5,5] x) => (T[1,2,3,3] y)",
         'y = MaxPool <auto_pad = "SAME_UPPER", kernel_shape = [2, 2], strides = [2, 2]> (x)', sample=distinct,
         dtype="float", notes=f32("no double MaxPoolGrad kernel")),
    Case("conv_groups", "(T[1,4,3,3] x) => (T[1,4,2,2] y)", "y = Conv <group = 2> (x, w, b)",
         {"w": (4, 2, 2, 2), "b": (4,)}, dtype="float", notes=f32("no double Conv kernel")),
    Case("conv_depthwise", "(T[2,3,4,4] x) => (T[2,3,4,4] y)", "y = Conv <group = 3, pads = [1, 1, 1, 1]> (x, w)",
         {"w": (3, 1, 3, 3)}, dtype="float", notes=f32("no double Conv kernel")),
    Case("convtranspose_bias", "(T[1,2,3,3] x) => (T[1,3,5,5] y)", "y = ConvTranspose(x, w, b)",
         {"w": (2, 3, 3, 3), "b": (3,)}, dtype="float",
         notes=f32("no double Conv kernel") + "; no ConvTransposeGrad kernel on CPU: onnxgrad rewrites with Conv"),
    Case("convtranspose_stride", "(T[1,2,3,3] x) => (T[1,1,6,6] y)",
         "y = ConvTranspose <strides = [2, 2], pads = [0, 0, 1, 1], output_padding = [1, 1]> (x, w)",
         {"w": (2, 1, 3, 3)}, dtype="float", notes=f32("no double Conv kernel") + "; rewritten with Conv"),
    Case("convtranspose_groups_dilations", "(T[1,4,3,4] x) => (T[1,2,6,7] y)",
         "y = ConvTranspose <group = 2, strides = [2, 1], dilations = [1, 2], pads = [1, 0, 0, 1]> (x, w, b)",
         {"w": (4, 1, 2, 2), "b": (2,)}, dtype="float", notes=f32("no double Conv kernel") + "; rewritten with Conv"),
    Case("convtranspose_1d", "(T[2,2,4] x) => (T[2,3,9] y)", "y = ConvTranspose <strides = [2]> (x, w)",
         {"w": (2, 3, 3)}, dtype="float", notes=f32("no double Conv kernel") + "; rewritten with Conv"),
    Case("col2im_strides_pads", "(T[1,8,10] x) => (T[1,2,4,5] y)",
         "i = Constant <value = int64[2] {4, 5}> ()\nb = Constant <value = int64[2] {2, 2}> ()\n"
         "y = Col2Im <strides = [2, 1], pads = [1, 0, 0, 1]> (x, i, b)", opset=18, dtype="float",
         notes=f32("rewritten into a Conv, which has no double kernel") + "; no built-in gradient: a grouped "
         "ConvTranspose with one-hot kernels; the last row reached by no block"),
    Case("maxpool", "(T[1,2,4,4] x) => (T[1,2,2,2] y)", "y = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (x)",
         sample=distinct, dtype="float", notes=f32("no double MaxPoolGrad kernel")),
    Case("maxpool_overlap", "(T[1,1,4,4] x) => (T[1,1,4,4] y)",
         "y = MaxPool <kernel_shape = [3, 3], pads = [1, 1, 1, 1]> (x)", sample=distinct, dtype="float",
         notes=f32("no double MaxPoolGrad kernel")),
    Case("averagepool", "(T[1,2,4,4] x) => (T[1,2,2,2] y)",
         "y = AveragePool <kernel_shape = [2, 2], strides = [2, 2]> (x)", dtype="float",
         notes=f32("no double AveragePool kernel")),
    Case("averagepool_pads", "(T[1,1,4,4] x) => (T[1,1,4,4] y)",
         "y = AveragePool <kernel_shape = [3, 3], pads = [1, 1, 1, 1], count_include_pad = 1> (x)", dtype="float",
         notes=f32("no double AveragePool kernel")),
    Case("averagepool_symbolic_batch", "(T[N,1,4,4] x) => (T[N,1,2,2] y)",
         "y = AveragePool <kernel_shape = [2, 2], strides = [2, 2]> (x)", dtype="float",
         notes=f32("no double AveragePool kernel") + "; a named batch size, made concrete per call"),
    Case("averagepool_3d", "(T[1,2,4,4,4] x) => (T[1,2,2,2,2] y)",
         "y = AveragePool <kernel_shape = [3, 3, 3], strides = [2, 2, 2], pads = [1, 1, 1, 1, 1, 1]> (x)",
         dtype="float", notes=f32("no double AveragePool kernel") + "; ORT's AveragePoolGrad was wrong in 3-D"),
    Case("averagepool_dilations", "(T[1,1,5,5] x) => (T[1,1,3,3] y)",
         "y = AveragePool <kernel_shape = [2, 2], dilations = [2, 2]> (x)", dtype="float", opset=19,
         notes=f32("no double AveragePool kernel") + "; ORT's AveragePoolGrad ignored dilations"),
    Case("averagepool_ceil", "(T[1,1,5,5] x) => (T[1,1,3,3] y)",
         "y = AveragePool <kernel_shape = [2, 2], strides = [2, 2], ceil_mode = 1> (x)", dtype="float",
         notes=f32("no double AveragePool kernel") + "; the last window hangs past the input"),
    Case("averagepool_wider_than_input", "(T[1,2,3,3] x) => (T[1,2,1,1] y)",
         "y = AveragePool <kernel_shape = [8, 8], strides = [8, 8], ceil_mode = 1> (x)", dtype="float",
         notes=f32("no double AveragePool kernel") + "; a global pool written as a kernel past the input "
         "(EfficientNet's pooler): only the taps inside it are spread"),
    Case("averagepool_into_end_padding", "(T[1,1,4,5] x) => (T[1,1,2,2] y)",
         "y = AveragePool <kernel_shape = [6, 7], pads = [1, 0, 2, 3]> (x)", dtype="float",
         notes=f32("no double AveragePool kernel") + "; windows whose last taps read only padding"),
    Case("averagepool_exclude_pad_stride", "(T[1,2,5,5] x) => (T[1,2,3,3] y)",
         "y = AveragePool <kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1]> (x)", dtype="float",
         notes=f32("no double AveragePool kernel") + "; border windows average fewer elements"),
    Case("conv_1d", "(T[2,2,7] x) => (T[2,3,3] y)", "y = Conv <strides = [2], pads = [1, 0]> (x, w, b)",
         {"w": (3, 2, 3), "b": (3,)}, dtype="float", notes=f32("no double Conv kernel")),
    Case("conv_3d_dilated", "(T[1,2,5,5,5] x) => (T[1,2,3,3,3] y)", "y = Conv <dilations = [2, 2, 2]> (x, w)",
         {"w": (2, 2, 2, 2, 2)}, dtype="float", notes=f32("no double Conv kernel")),
    Case("conv_groups_strides_dilations_asymmetric", "(T[1,2,8,7] x) => (T[1,4,4,3] y)",
         "y = Conv <group = 2, strides = [2, 3], dilations = [2, 1], pads = [1, 0, 2, 1]> (x, w)",
         {"w": (4, 1, 3, 2)}, dtype="float", notes=f32("no double Conv kernel")),
    Case("globalaveragepool", "(T[2,3,2,2] x) => (T[2,3,1,1] y)", "y = GlobalAveragePool(x)", dtype="float",
         notes=f32("no double GlobalAveragePool kernel")),
    Case("globalmaxpool", "(T[1,2,2,3] x) => (T[1,2,1,1] y)", "y = GlobalMaxPool(x)", sample=distinct, notes=F64),
    # --- activations
    Case("relu", "(T[2,3] x) => (T[2,3] y)", "s = Mul(x, w)\ny = Relu(s)", {"w": (3,)}, sample=nonzero,
         notes=F64 + "; ReluGrad has no double kernel, but onnxgrad lowers it (_lower)"),
    Case("leakyrelu", "(T[2,3] x) => (T[2,3] y)", "y = LeakyRelu <alpha = 0.1> (x)", sample=nonzero, dtype="float",
         notes=f32("no double LeakyReluGrad kernel")),
    Case("tanh", "(T[2,3] x) => (T[2,3] y)", "s = Mul(x, w)\ny = Tanh(s)", {"w": (3,)}, notes=F64),
    Case("sigmoid", "(T[2,3] x) => (T[2,3] y)", "s = Mul(x, w)\ny = Sigmoid(s)", {"w": (3,)}, notes=F64),
    Case("softmax", "(T[2,3] x) => (T[2,3] y)", "s = Mul(x, w)\ny = Softmax <axis = -1> (s)", {"w": (3,)},
         dtype="float", notes=f32("no double SoftmaxGrad kernel")),
    Case("softmax_axis0", "(T[3,2] x) => (T[3,2] y)", "y = Softmax <axis = 0> (x)", dtype="float",
         notes=f32("no double SoftmaxGrad kernel")),
    Case("logsoftmax", "(T[2,3] x) => (T[2,3] y)", "s = Mul(x, w)\ny = LogSoftmax <axis = -1> (s)", {"w": (3,)},
         dtype="float", notes=f32("no double LogSoftmaxGrad kernel")),
    Case("erf", "(T[2,3] x) => (T[2,3] y)", "s = Mul(x, w)\ny = Erf(s)", {"w": (3,)}, dtype="float",
         notes=f32("no double Erf kernel")),
    Case("gelu", "(T[2,3] x) => (T[2,3] y)", "s = Mul(x, w)\ny = Gelu(s)", {"w": (3,)}, opset=20, dtype="float",
         notes=f32("rewritten with Erf, which has no double kernel")),
    Case("gelu_tanh", "(T[2,3] x) => (T[2,3] y)", 's = Mul(x, w)\ny = Gelu <approximate = "tanh"> (s)', {"w": (3,)},
         opset=20, dtype="float", tolerance={"rtol": 2e-4, "atol": 2e-5},
         notes=f32("as gelu") + "; ORT's gradient is the erf one, 3e-4 off: onnxgrad rewrites; tight tolerances "
         "catch that"),
    Case("elu", "(T[2,3] x) => (T[2,3] y)", "y = Elu <alpha = 0.7> (x)", sample=nonzero,
         notes=F64 + "; rewritten with Relu; no built-in gradient"),
    Case("selu", "(T[2,3] x) => (T[2,3] y)", "y = Selu(x)", sample=nonzero,
         notes=F64 + "; rewritten with Relu; no built-in gradient"),
    Case("celu", "(T[2,3] x) => (T[2,3] y)", "y = Celu <alpha = 0.8> (x)", sample=nonzero, dtype="float",
         notes=f32("Celu is float-only in ONNX") + "; no built-in gradient"),
    Case("softplus", "(T[2,3] x) => (T[2,3] y)", "s = Mul(x, w)\ny = Softplus(s)", {"w": (3,)},
         notes=F64 + "; rewritten with Relu; no built-in gradient"),
    Case("mish", "(T[2,3] x) => (T[2,3] y)", "y = Mish(x)", opset=18,
         notes=F64 + "; rewritten with Relu; no built-in gradient"),
    Case("softsign", "(T[2,3] x) => (T[2,3] y)", "s = Mul(x, w)\ny = Softsign(s)", {"w": (3,)},
         notes=F64 + "; no built-in gradient"),
    Case("hardsigmoid", "(T[2,3] x) => (T[2,3] y)", "y = HardSigmoid <alpha = 0.3, beta = 0.4> (x)", sample=nonzero,
         notes=F64 + "; no built-in gradient; values clear of the kinks at -4/3 and 2"),
    Case("hardswish", "(T[2,3] x) => (T[2,3] y)", "y = HardSwish(x)", sample=nonzero,
         notes=F64 + "; no built-in gradient"),
    Case("thresholdedrelu", "(T[2,3] x) => (T[2,3] y)", "y = ThresholdedRelu <alpha = 0.1> (x)", sample=nonzero,
         notes=F64 + "; no built-in gradient"),
    Case("shrink", "(T[2,3] x) => (T[2,3] y)", "y = Shrink <lambd = 0.1, bias = 0.3> (x)", sample=nonzero,
         notes=F64 + "; no built-in gradient"),
    Case("prelu", "(T[2,3] x) => (T[2,3] y)", "y = PRelu(x, slope)", {"slope": (3,)}, sample=nonzero,
         notes=F64 + "; rewritten with Relu; no built-in gradient"),
    Case("hardmax", "(T[2,3] x) => (T[2,3] y)", "s = Mul(x, w)\nh = Hardmax(s)\ny = Mul(h, s)", {"w": (3,)},
         sample=distinct, notes=F64 + "; no built-in gradient: Hardmax itself has a zero gradient"),
    # --- elementwise arithmetic, with broadcasting
    Case("add_broadcast", "(T[2,3] x) => (T[2,3] y)", "y = Add(x, w)", {"w": (3,)}, notes=F64),
    Case("sub_broadcast", "(T[2,3] x) => (T[2,3] y)", "y = Sub(w, x)", {"w": (2, 1)}, notes=F64),
    Case("mul_broadcast", "(T[2,1] x) => (T[2,3] y)", "y = Mul(x, w)", {"w": (1, 3)}, notes=F64),
    Case("div_broadcast", "(T[2,3] x) => (T[2,3] y)", "y = Div(x, w)", {"w": (3,)}, sample=positive, notes=F64),
    Case("div_broadcast_inputs", "(T[N,1] a, T[1,3] b) => (T[N,3] y)", "y = Div(a, b)", sample=positive, notes=F64),
    Case("mul_symbolic_batch", "(T[N,3] a, T[1,3] b) => (T[N,3] y)", "y = Mul(a, b)",
         notes=F64 + "; a named batch size: ORT's Mul gradient needs it concrete"),
    Case("mul_same_tensor", "(T[2,3] x) => (T[2,3] y)", "y = Mul(x, x)",
         notes=F64 + "; one tensor feeds one node twice"),
    Case("pow_const_exponent", "(T[2,3] x) => (T[2,3] y)", "e = Constant <value = T[1] {2.5}> ()\ny = Pow(x, e)",
         sample=positive, notes=F64),
    Case("sqrt", "(T[2,3] x) => (T[2,3] y)", "y = Sqrt(x)", sample=positive, notes=F64),
    Case("exp", "(T[2,3] x) => (T[2,3] y)", "s = Mul(x, w)\ny = Exp(s)", {"w": (3,)}, notes=F64),
    Case("log", "(T[2,3] x) => (T[2,3] y)", "s = Mul(x, w)\ny = Log(s)", {"w": (3,)}, sample=positive, notes=F64),
    Case("reciprocal", "(T[2,3] x) => (T[2,3] y)", "y = Reciprocal(x)", sample=positive, notes=F64),
    Case("neg_abs", "(T[2,3] x) => (T[2,3] y)", "a = Abs(x)\ny = Neg(a)", sample=nonzero, notes=F64),
    Case("sin_cos", "(T[2,3] x) => (T[2,3] y, T[2,3] z)", "y = Sin(x)\nz = Cos(x)", dtype="float",
         notes=f32("no double Cos kernel")),
    Case("sum3", "(T[2,3] x, T[3] z) => (T[2,3] y)", "y = Sum(x, w, z)", {"w": (1, 3)},
         notes=F64 + "; no built-in gradient: onnxgrad rewrites"),
    Case("mean3", "(T[2,3] x, T[3] z) => (T[2,3] y)", "y = Mean(x, w, z)", {"w": (2, 1)},
         notes=F64 + "; no built-in gradient: onnxgrad rewrites"),
    Case("min_max", "(T[2,3] x, T[3] z) => (T[2,3] y, T[2,3] m)", "y = Max(x, w, z)\nm = Min(x, w)", {"w": (2, 1)},
         sample=distinct, notes=F64),
    Case("clip_constant_bounds", "(T[2,3] x) => (T[2,3] y)",
         "lo = Constant <value = T {-0.15}> ()\nhi = Constant <value = T {0.15}> ()\ny = Clip(x, lo, hi)",
         sample=distinct, notes=F64),
    Case("clip_weight_bounds", "(T[2,3] x) => (T[2,3] y)", "y = Clip(x, lo, hi)", {"lo": (), "hi": ()},
         sample=distinct, special={"lo": const(-0.15), "hi": const(0.15)},
         notes=F64 + "; trainable bounds got zeros from ORT's Clip gradient: onnxgrad rewrites"),
    Case("where_broadcast", "(T[2,3] x, bool[2,3] c) => (T[2,3] y)", "y = Where(c, x, w)", {"w": (3,)},
         special={"c": const([[True, False, True], [False, False, True]])},
         notes=F64 + "; ORT's gradient of a broadcast operand had the output's shape: onnxgrad rewrites"),
    Case("cast_float_to_double", "(float[2,3] x) => (double[2,3] y)", "c = Cast <to = 11> (x)\ny = Mul(c, w)",
         {"w": (3,)}, notes="a float32 input (checked at float32 tolerances), float64 weights and output"),
    Case("cast_double_to_float", "(double[2,3] x) => (float[2,3] y)", "c = Cast <to = 1> (x)\ny = Mul(c, c)",
         notes="a float64 input, a float32 output: checked at float32 tolerances"),
    # --- shape manipulation
    Case("reshape", "(T[2,3] x) => (T[3,2] y)",
         "s = Constant <value = int64[2] {3, -1}> ()\nm = Mul(x, w)\ny = Reshape(m, s)", {"w": (3,)}, notes=F64),
    Case("transpose", "(T[2,3,4] x) => (T[4,2,3] y)", "y = Transpose <perm = [2, 0, 1]> (x)", notes=F64),
    Case("flatten_identity", "(T[2,3,2] x) => (T[2,6] y)", "f = Flatten(x)\ny = Identity(f)", notes=F64),
    Case("squeeze_unsqueeze", "(T[2,1,3] x) => (T[2,3,1] y)",
         "a = Constant <value = int64[1] {1}> ()\nb = Constant <value = int64[1] {2}> ()\n"
         "s = Squeeze(x, a)\ny = Unsqueeze(s, b)", notes=F64),
    Case("expand", "(T[3,1] x) => (T[2,3,4] y)", "s = Constant <value = int64[3] {2, 3, 4}> ()\ny = Expand(x, s)",
         notes=F64),
    Case("tile", "(T[2,3] x) => (T[4,6] y)", "r = Constant <value = int64[2] {2, 2}> ()\ny = Tile(x, r)", notes=F64),
    Case("pad_constant", "(T[2,3] x) => (T[4,6] y)", "p = Constant <value = int64[4] {1, 2, 1, 1}> ()\ny = Pad(x, p)",
         notes=F64),
    Case("pad_reflect", "(T[1,1,3,3] x) => (T[1,1,5,6] y)",
         'p = Constant <value = int64[8] {0, 0, 1, 2, 0, 0, 1, 1}> ()\ny = Pad <mode = "reflect"> (x, p)',
         notes=F64 + "; the builder's Pad gradient takes constant mode only: onnxgrad rewrites"),
    Case("pad_edge", "(T[1,1,3,3] x) => (T[1,1,6,4] y)",
         'p = Constant <value = int64[8] {0, 0, 2, 0, 0, 0, 1, 1}> ()\ny = Pad <mode = "edge"> (x, p)',
         notes=F64 + "; the builder's Pad gradient takes constant mode only: onnxgrad rewrites"),
    Case("pad_wrap_axes", "(T[2,3] x) => (T[2,7] y)",
         'p = Constant <value = int64[2] {2, 2}> ()\na = Constant <value = int64[1] {-1}> ()\n'
         'y = Pad <mode = "wrap"> (x, p, , a)', opset=19,
         notes=F64 + "; opset 19: wrap mode and axes; rewritten like reflect"),
    Case("concat", "(T[2,3] x) => (T[2,5] y)", "y = Concat <axis = 1> (x, w)", {"w": (2, 2)}, notes=F64),
    Case("slice", "(T[4,5] x) => (T[2,2] y)",
         "st = Constant <value = int64[2] {1, 0}> ()\nen = Constant <value = int64[2] {4, 5}> ()\n"
         "ax = Constant <value = int64[2] {0, 1}> ()\nsp = Constant <value = int64[2] {2, 3}> ()\n"
         "y = Slice(x, st, en, ax, sp)", notes=F64),
    Case("split_all_used", "(T[2,6] x) => (T[2,2] a, T[2,4] b)",
         "s = Constant <value = int64[2] {2, 4}> ()\na, b = Split <axis = 1> (x, s)", notes=F64),
    Case("split_one_unused", "(T[2,6] x) => (T[2,4] b)",
         "s = Constant <value = int64[2] {2, 4}> ()\na, b = Split <axis = 1> (x, s)",
         notes=F64 + "; ORT's gradient dropped the unused part (shape [2, 4]): onnxgrad rewrites"),
    Case("split_num_outputs", "(T[2,5] x) => (T[2,2] b)", "a, b, c = Split <axis = 1, num_outputs = 3> (x)", opset=18,
         notes=F64 + "; uneven parts 2, 2, 1"),
    Case("centercroppad", "(T[2,5,3] x) => (T[2,2,6] y)",
         "s = Constant <value = int64[2] {2, 6}> ()\ny = CenterCropPad <axes = [1, 2]> (x, s)", opset=18,
         notes=F64 + "; no built-in gradient: onnxgrad rewrites into Slice and Pad; an odd crop and an odd pad"),
    Case("depthtospace_dcr", "(T[1,4,2,3] x) => (T[1,1,4,6] y)", "y = DepthToSpace <blocksize = 2> (x)",
         notes=F64 + "; no built-in gradient"),
    Case("depthtospace_crd", "(T[1,8,2,2] x) => (T[1,2,4,4] y)", 'y = DepthToSpace <blocksize = 2, mode = "CRD"> (x)',
         notes=F64 + "; no built-in gradient"),
    Case("spacetodepth", "(T[1,2,4,2] x) => (T[1,8,2,1] y)", "y = SpaceToDepth <blocksize = 2> (x)",
         notes=F64 + "; no built-in gradient"),
    Case("det_batch", "(T[2,3,3] x) => (T[2] y)", "s = Mul(x, w)\ny = Det(s)", {"w": (3,)},
         notes=F64 + "; no built-in gradient: onnxgrad rewrites into the Leibniz sum"),
    Case("det_singular", "(T[3,3] x) => (T y)", "y = Det(x)",
         special={"x": const([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]])},
         notes=F64 + "; a singular matrix: the gradient is the adjugate's transpose, not det * inverse"),
    Case("trilu", "(T[3,3] x) => (T[3,3] y)", "y = Trilu(x)", notes=F64),
    # --- einsum: onnxgrad functions whose gradients are Einsums
    Case("einsum_ellipsis", "(T[2,3,4] a, T[4,5] b) => (T[2,3,5] y)",
         'y = Einsum <equation = "...ij,jk->...ik"> (a, b)', notes=F64 + "; ellipses of different widths"),
    Case("einsum_diagonal", "(T[2,3,3] x) => (T[2,3] y, T[2] z)",
         'y = Einsum <equation = "bii->bi"> (x)\ns = Mul(x, w)\nz = Einsum <equation = "...ii"> (s)', {"w": (3,)},
         notes=F64 + "; a repeated index: the diagonal, and (implicit output) the trace of each matrix"),
    # --- resizing: no ResizeGrad kernel on CPU; onnxgrad rewrites into Gathers and weights per axis
    Case("resize_nearest_1d", "(T[2,3,4] x) => (T[2,3,7] y)",
         's = Constant <value = int64[1] {7}> ()\ny = Resize <axes = [2]> (x, , , s)', opset=18,
         notes=F64 + "; half_pixel, round_prefer_floor; sizes on one axis: repeated and skipped elements"),
    Case("resize_nearest_2d_floor_asymmetric", "(T[1,2,5,4] x) => (T[1,2,2,6] y)",
         's = Constant <value = float[4] {1.0, 1.0, 0.5, 1.5}> ()\n'
         'y = Resize <mode = "nearest", nearest_mode = "floor", coordinate_transformation_mode = "asymmetric"> '
         '(x, , s)',
         notes=F64 + "; down on one axis, up on the other"),
    Case("resize_linear_2d", "(T[1,2,3,4] x) => (T[1,2,6,6] y)",
         's = Constant <value = float[4] {1.0, 1.0, 2.0, 1.5}> ()\nm = Mul(x, w)\n'
         'y = Resize <mode = "linear"> (m, , s)',
         {"w": (4,)}, notes=F64 + "; half_pixel: edge samples clamp; a weight before"),
    Case("resize_linear_3d_align_corners", "(T[1,1,2,3,4] x) => (T[1,1,3,5,3] y)",
         's = Constant <value = int64[5] {1, 1, 3, 5, 3}> ()\n'
         'y = Resize <mode = "linear", coordinate_transformation_mode = "align_corners"> (x, , , s)',
         notes=F64 + "; trilinear, sizes up and down"),
    Case("resize_linear_pytorch_half_pixel_symmetric", "(T[2,5] x) => (T[2,3] y, T[2,1] z)",
         's = Constant <value = int64[1] {3}> ()\no = Constant <value = int64[1] {1}> ()\n'
         'y = Resize <mode = "linear", coordinate_transformation_mode = "half_pixel_symmetric", axes = [1]> '
         '(x, , , s)\n'
         'z = Resize <mode = "linear", coordinate_transformation_mode = "pytorch_half_pixel", axes = [1]> (x, , , o)',
         opset=19, notes=F64 + "; opset 19's half_pixel_symmetric; pytorch_half_pixel to one sample"),
    Case("resize_cubic_exclude_outside", "(T[1,1,4,4] x) => (T[1,1,6,3] y)",
         's = Constant <value = int64[2] {6, 3}> ()\n'
         'y = Resize <mode = "cubic", cubic_coeff_a = -0.5, exclude_outside = 1, axes = [2, 3]> (x, , , s)', opset=18,
         notes=F64 + "; four taps, renormalized at the edges"),
    Case("resize_tf_crop_and_resize", "(T[1,1,4,4] x) => (T[1,1,3,3] y)",
         'r = Constant <value = float[4] {0.4, 0.6, 1.2, 0.8}> ()\ns = Constant <value = int64[2] {3, 3}> ()\n'
         'y = Resize <mode = "linear", coordinate_transformation_mode = "tf_crop_and_resize", '
         'extrapolation_value = 2.5, axes = [2, 3]> (x, r, , s)', opset=18, dtype="float",
         notes=f32("ORT's kernel is the forward reference: onnx's evaluator computes crop coordinates partly in "
                   "float32") + "; a crop that reaches past the input: extrapolated positions get no gradient"),
    Case("resize_antialias_linear", "(T[1,1,6,7] x) => (T[1,1,3,2] y)",
         's = Constant <value = int64[2] {3, 2}> ()\n'
         'y = Resize <mode = "linear", antialias = 1, exclude_outside = 1, axes = [2, 3]> (x, , , s)', opset=18,
         dtype="float", notes=f32("ORT's Resize kernel is the forward reference") + "; downsampling: the kernel "
         "widens to cover 1 / scale samples"),
    Case("resize_antialias_cubic_align_corners", "(T[1,2,7,5] x) => (T[1,2,4,3] y)",
         's = Constant <value = int64[2] {4, 3}> ()\n'
         'y = Resize <mode = "cubic", antialias = 1, coordinate_transformation_mode = "align_corners", axes = [2, 3]> '
         '(x, , , s)', opset=18, dtype="float", notes=f32("ORT's Resize kernel is the forward reference")),
    # --- grid sampling: no gradient in the builder; onnxgrad gathers corner samples with weights from the grid
    Case("gridsample_bilinear_zeros", "(T[1,2,3,4] x, T[1,2,3,2] g) => (T[1,2,2,3] y)", "y = GridSample(x, g)",
         opset=16, special={"g": grid_points((3, 4))}, dtype="float",
         notes=GRID_F32 + "; the grid gets a gradient too; outside the input: zeros"),
    Case("gridsample_nearest_border_align_corners", "(T[2,1,3,3] x, T[2,4,1,2] g) => (T[2,1,4,1] y)",
         'y = GridSample <mode = "nearest", padding_mode = "border", align_corners = 1> (x, g)', opset=16,
         special={"g": grid_points((3, 3), align_corners=True)}, dtype="float",
         notes=GRID_F32 + "; nearest: the grid's gradient is zero"),
    Case("gridsample_trilinear_border", "(T[1,2,2,3,4] x, T[1,2,2,2,3] g) => (T[1,2,2,2,2] y)",
         'y = GridSample <mode = "linear", padding_mode = "border"> (x, g)', opset=20,
         special={"g": grid_points((2, 3, 4))}, dtype="float",
         notes=GRID_F32 + "; opset 20's volumetric form: eight corners"),
    Case("gridsample_bicubic_reflection", "(T[1,2,3,4] x, T[1,3,2,2] g) => (T[1,2,3,2] y)",
         'y = GridSample <mode = "bicubic", padding_mode = "reflection"> (x, g)', opset=16,
         special={"g": grid_points((3, 4))}, dtype="float", notes=GRID_F32 + "; 16 samples per point, reflected"),
    Case("gridsample_cubic_border_align_corners", "(T[1,1,4,3] x, T[1,3,3,2] g) => (T[1,1,3,3] y)",
         'y = GridSample <mode = "cubic", padding_mode = "border", align_corners = 1> (x, g)', opset=20,
         special={"g": grid_points((4, 3), align_corners=True)}, dtype="float",
         notes=GRID_F32 + "; opset 20's name for bicubic; edge samples repeated"),
    Case("dft_real_onesided", "(T[2,5,1] x) => (T[2,3,2] y)", "y = DFT <onesided = 1> (x)", opset=17,
         notes=F64 + "; no built-in gradient: onnxgrad rewrites into MatMuls with cosines and sines"),
    Case("dft_complex_inverse_length", "(T[3,4,2] x) => (T[6,4,2] y)",
         "n = Constant <value = int64 {6}> ()\na = Constant <value = int64 {0}> ()\n"
         "y = DFT <inverse = 1> (x, n, a)", opset=20, dtype="float",
         notes=f32("the transposed signal's MatMul becomes a FusedMatMul, which has no double kernel") +
         "; opset 20's axis input (the first axis), dft_length zero-padding the signal"),
    Case("stft_window", "(T[2,10,1] x) => (T[2,3,3,2] y)",
         "s = Constant <value = int64 {3}> ()\ny = STFT(x, s, window)", {"window": (4,)}, opset=17,
         notes=F64 + "; no built-in gradient: frames gathered, times the window (a weight: it gets a gradient too), "
         "then the Fourier MatMuls"),
    Case("affinegrid_2d", "(T[2,2,3] theta) => (T[2,3,4,2] y)",
         "s = Constant <value = int64[4] {2, 1, 3, 4}> ()\ny = AffineGrid(theta, s)", opset=20, dtype="float",
         notes=f32("the gradient's batched MatMul becomes a FusedMatMul, which has no double kernel") +
         "; no built-in gradient: onnxgrad rewrites into a MatMul with the grid of positions"),
    Case("affinegrid_3d_align_corners", "(T[1,3,4] theta) => (T[1,2,3,2,3] y)",
         "s = Constant <value = int64[5] {1, 1, 2, 3, 2}> ()\ny = AffineGrid <align_corners = 1> (theta, s)",
         opset=20, dtype="float", notes=f32("as affinegrid_2d")),
    # --- recurrent: no gradient in the builder; onnxgrad unrolls the (static) sequence
    Case("rnn_bidirectional_clip", "(T[3,2,2] x) => (T[3,2,2,4] y, T[2,2,4] h)",
         'y, h = RNN <hidden_size = 4, direction = "bidirectional", clip = 0.9> (x, W, R, B)',
         {"W": (2, 4, 2), "R": (2, 4, 4), "B": (2, 8)}, dtype="float",
         notes=f32("ORT's RNN kernel, the forward reference, is float-only") + "; clip bounds the pre-activations"),
    Case("gru_reverse_linear_before_reset", "(T[3,2,2] x, T[1,2,3] h0) => (T[3,1,2,3] y, T[1,2,3] h)",
         'y, h = GRU <hidden_size = 3, direction = "reverse", linear_before_reset = 1> (x, W, R, B, , h0)',
         {"W": (1, 9, 2), "R": (1, 9, 3), "B": (1, 18)}, dtype="float",
         notes=f32("ORT's GRU kernel, the forward reference, is float-only") + "; the h gate's recurrent bias "
         "inside r * (...)"),
    Case("gru_bidirectional_sequence_lens", "(T[3,2,2] x) => (T[3,2,2,3] y, T[2,2,3] h)",
         'n = Constant <value = int32[2] {3, 1}> ()\n'
         'y, h = GRU <hidden_size = 3, direction = "bidirectional"> (x, W, R, B, n, h0)',
         {"W": (2, 9, 2), "R": (2, 9, 3), "B": (2, 18), "h0": (2, 2, 3)}, dtype="float",
         notes=f32("ORT's GRU kernel, the forward reference, is float-only") + "; a shorter sequence: zeros in Y "
         "past its end, its last step in Y_h, the reverse pass starting at its end"),
    Case("lstm_peepholes_sequence_lens", "(T[3,2,2] x) => (T[3,1,2,3] y, T[1,2,3] h, T[1,2,3] c)",
         'n = Constant <value = int32[2] {2, 3}> ()\ny, h, c = LSTM <hidden_size = 3> (x, W, R, B, n, h0, c0, P)',
         {"W": (1, 12, 2), "R": (1, 12, 3), "B": (1, 24), "h0": (1, 2, 3), "c0": (1, 2, 3), "P": (1, 9)},
         dtype="float", notes=f32("ORT's LSTM kernel, the forward reference, is float-only") + "; every input and "
         "output"),
    Case("lstm_bidirectional_activations", "(T[2,2,3] x) => (T[2,2,2,2] y)",
         'y = LSTM <hidden_size = 2, direction = "bidirectional", '
         'activations = ["Sigmoid", "Tanh", "Sigmoid", "Sigmoid", "Sigmoid", "Tanh"]> (x, W, R, B)',
         {"W": (2, 8, 3), "R": (2, 8, 2), "B": (2, 16)}, dtype="float",
         notes=f32("ORT's LSTM kernel, the forward reference, is float-only") + "; activations per direction"),
    Case("lstm_reverse_cell_only", "(T[2,3,2] x) => (T[1,3,2] c)",
         'y, h, c = LSTM <hidden_size = 2, direction = "reverse"> (x, W, R)', {"W": (1, 8, 2), "R": (1, 8, 2)},
         dtype="float", notes=f32("ORT's LSTM kernel, the forward reference, is float-only") + "; only Y_c read, "
         "no bias, zero initial states"),
    # --- control flow whose bodies read x and weights from the outer scope: the builder gives those reads
    # no gradient; onnxgrad inlines both If branches (Where on the condition) and unrolls Loop and Scan
    Case("if_outer_reads_then", "(T[2,3] x) => (T[2,4] y)",
         "zero = Constant <value = T {0.0}> ()\ntotal = ReduceSum <keepdims = 0> (x)\nc = Greater(total, zero)\n"
         "y = If (c) <then_branch = g1 () => (T[2,4] t) { t = MatMul(x, w) }, "
         "else_branch = g2 () => (T[2,4] e) { m = MatMul(x, v)\n e = Tanh(m) }>",
         {"w": (3, 4), "v": (3, 4)}, sample=positive, notes=F64 + "; a positive sum: the then branch"),
    Case("if_outer_reads_else", "(T[2,3] x) => (T[2,4] y, T[2,3] z)",
         "zero = Constant <value = T {0.0}> ()\ntotal = ReduceSum <keepdims = 0> (x)\nc = Greater(total, zero)\n"
         "y, z = If (c) <then_branch = g1 () => (T[2,4] t, T[2,3] u) { t = MatMul(x, w)\n u = Neg(x) }, "
         "else_branch = g2 () => (T[2,4] e, T[2,3] f) { m = MatMul(x, v)\n e = Tanh(m)\n f = Mul(x, b) }>",
         {"w": (3, 4), "v": (3, 4), "b": (3,)}, sample=negative,
         notes=F64 + "; a negative sum: the else branch; two outputs, a branch-local initializer-free body"),
    Case("if_constant_condition", "(T[2,3] x) => (T[2,4] y)",
         "c = Constant <value = bool {0}> ()\n"
         "y = If (c) <then_branch = g1 () => (T[2,4] t) { t = MatMul(x, w) }, "
         "else_branch = g2 () => (T[2,4] e) { k = Constant <value = T {2.0}> ()\n m = MatMul(x, v)\n e = Mul(m, k) }>",
         {"w": (3, 4), "v": (3, 4)}, notes=F64 + "; a constant condition: only the else branch is inlined"),
    Case("loop_outer_reads", "(T[2,3] x) => (T[2,3] last, T[3,2,3] hs)",
         "n = Constant <value = int64 {3}> ()\n"
         "h, hs = Loop (n, , x) <body = g (int64 i, bool c, T[2,3] h_in) => (bool c_out, T[2,3] h_out, T[2,3] s) {"
         " c_out = Identity(c)\n step = Cast <to = T> (i)\n"
         " m = MatMul(h_in, w)\n a = Tanh(m)\n sb = Mul(step, b)\n h_out = Add(a, sb)\n s = Mul(h_out, x) }>\nlast = Identity(h)",
         {"w": (3, 3), "b": (3,)}, notes=F64 + "; unrolled: three iterations, a loop-carried value, a scan output, "
         "the iteration number and outer x, w, b read in the body"),
    Case("scan_outer_reads", "(T[2] h0, T[4,2] xs) => (T[2] h, T[4,2] ys)",
         "h, ys = Scan <num_scan_inputs = 1, body = g (T[2] h_in, T[2] xt) => (T[2] h_out, T[2] y) {"
         " m = Mul(h_in, w)\n a = Add(m, xt)\n h_out = Tanh(a)\n y = Mul(h_out, v) }> (h0, xs)",
         {"w": (2,), "v": (2,)}, notes=F64 + "; unrolled over four steps, outer w and v read in the body"),
    Case("scan_reversed_axis1", "(T[2] h0, T[2,3] xs) => (T[2] h, T[2,3] ys)",
         "h, ys = Scan <num_scan_inputs = 1, scan_input_axes = [1], scan_input_directions = [1], "
         "scan_output_axes = [1], scan_output_directions = [1], body = g (T[2] h_in, T[2] xt) => (T[2] h_out, T[2] y) {"
         " m = Mul(h_in, w)\n a = Add(m, xt)\n h_out = Tanh(a)\n y = Mul(h_out, xt) }> (h0, xs)",
         {"w": (2,)}, notes=F64 + "; scanned along axis 1, backwards, the outputs stacked backwards too"),
    # --- indexing
    Case("gather", "(int64[2,2] i) => (T[2,2,3] y)", "y = Gather <axis = 0> (w, i)", {"w": (4, 3)},
         special={"i": const([[0, 3], [3, 1]])}, notes=F64 + "; int indices as an input; a repeated index"),
    Case("gather_input_data", "(T[3,4] x, int64[3] i) => (T[3,3] y)", "y = Gather <axis = 1> (x, i)",
         special={"i": const([2, 0, 2])}, notes=F64),
    Case("gatherelements", "(T[2,3] x, int64[2,2] i) => (T[2,2] y)", "y = GatherElements <axis = 1> (x, i)",
         special={"i": const([[0, 2], [1, 1]])}, notes=F64),
    Case("gather_axis1_negative", "(T[3,4] x, int64[2,2] i) => (T[3,2,2] y)", "y = Gather <axis = 1> (x, i)",
         special={"i": const([[-1, 0], [2, -1]])}, notes=F64 + "; negative and repeated indices"),
    Case("softmaxceloss_weight_ignore", "(T[4,3] x, int64[4] t) => (T y)",
         "w = Constant <value = float[3] {0.5, 1.0, 2.0}> ()\n"
         'y = SoftmaxCrossEntropyLoss <reduction = "mean", ignore_index = 1> (x, t, w)',
         special={"t": const([0, 1, 2, 2])}, dtype="float", notes=f32("no double SoftmaxCrossEntropyLoss kernel")),
    Case("softmaxceloss_sum", "(T[2,3,2] x, int64[2,2] t) => (T y)",
         'y = SoftmaxCrossEntropyLoss <reduction = "sum"> (x, t)',
         special={"t": const([[0, 2], [1, 1]])}, dtype="float", notes=f32("no double SoftmaxCrossEntropyLoss kernel")),
    Case("softmaxceloss_none", "(T[3,4] x, int64[3] t) => (T[3] y)",
         'y = SoftmaxCrossEntropyLoss <reduction = "none"> (x, t)',
         special={"t": const([3, 0, 1])}, dtype="float", notes=f32("no double SoftmaxCrossEntropyLoss kernel")),
    Case("nllloss_weight_ignore", "(T[4,3] x, int64[4] t) => (T y)",
         'y = NegativeLogLikelihoodLoss <reduction = "mean", ignore_index = 1> (x, t, w)', {"w": (3,)},
         special={"t": const([0, 1, 2, 2])}, notes=F64 + "; no built-in gradient: onnxgrad rewrites; the class "
         "weights get a gradient too"),
    Case("nllloss_spatial_none", "(T[2,3,2] x, int64[2,2] t) => (T[2,2] y)",
         'y = NegativeLogLikelihoodLoss <reduction = "none"> (x, t)', special={"t": const([[0, 2], [1, 1]])},
         notes=F64 + "; a spatial axis, no reduction"),
    Case("gathernd", "(T[2,3] x, int64[2,2] i) => (T[2] y)", "y = GatherND(x, i)",
         special={"i": const([[0, 2], [1, 1]])}, notes=F64),
    Case("scatterelements", "(T[2,3] x, int64[2,1] i, T[2,1] u) => (T[2,3] y)",
         "y = ScatterElements <axis = 1> (x, i, u)", special={"i": const([[0], [2]])}, dtype="float",
         notes=f32("ORT's gradient mixes a float constant into double")),
    Case("scatternd", "(T[2,3] x, int64[1,1] i, T[1,3] u) => (T[2,3] y)", "y = ScatterND(x, i, u)",
         special={"i": const([[1]])}, dtype="float", notes=f32("ORT's gradient mixes a float constant into double")),
    Case("reversesequence", "(T[3,4,2] x) => (T[3,4,2] y)",
         "n = Constant <value = int64[3] {4, 1, 2}> ()\ny = ReverseSequence <batch_axis = 0, time_axis = 1> (x, n)",
         notes=F64 + "; no built-in gradient: onnxgrad rewrites into GatherElements"),
    # 16 output elements: onnx's reference GatherElements (np.choose) takes at most 32 (tests/test_lower.py).
    Case("maxunpool", "(T[1,1,2,2] x) => (T[1,1,4,4] y)",
         "i = Constant <value = int64[1,1,2,2] {0, 3, 9, 15}> ()\n"
         "y = MaxUnpool <kernel_shape = [2, 2], strides = [2, 2]> (x, i)", dtype="float",
         notes=f32("the rewrite's ScatterElements gradient mixes a float constant into double") +
         "; no built-in gradient: onnxgrad rewrites into ScatterElements into zeros"),
    Case("topk", "(T[2,4] x) => (T[2,2] v, int64[2,2] i)", "k = Constant <value = int64[1] {2}> ()\nv, i = TopK(x, k)",
         sample=distinct, notes=F64 + "; an int output next to a float one"),
    Case("onehot_weight_values", "(int64[3] i) => (T[3,4] y)",
         "d = Constant <value = int64 {4}> ()\ny = OneHot(i, d, v)", {"v": (2,)}, special={"i": const([0, 3, 1])},
         notes="float64: the rewrite's int64 OneHot runs where ORT has no double one; trainable off/on values "
         "got zeros: onnxgrad rewrites"),
    Case("argmax_path", "(T[2,3] x) => (T[2,3] y)",
         "i = ArgMax <axis = 1, keepdims = 1> (x)\nc = Cast <to = T> (i)\ny = Mul(x, c)", sample=distinct,
         notes=F64 + "; an int path (ArgMax) beside a float one"),
    # --- reductions
    Case("reducemean", "(T[2,3,4] x) => (T[2,1,4] y)", "y = ReduceMean <axes = [1]> (x)", notes=F64),
    Case("reducemean_all", "(T[2,3] x) => (T y)", "s = Mul(x, w)\ny = ReduceMean <keepdims = 0> (s)", {"w": (3,)},
         notes=F64),
    Case("reducesum", "(T[2,3,4] x) => (T[2,4] y)",
         "a = Constant <value = int64[1] {1}> ()\ny = ReduceSum <keepdims = 0> (x, a)", notes=F64),
    Case("reducesumsquare", "(T[2,3,4] x) => (T[2,1,4] y)", "s = Mul(x, w)\ny = ReduceSumSquare <axes = [1]> (s)",
         {"w": (4,)}, notes=F64 + "; no built-in gradient: onnxgrad rewrites"),
    Case("reducesumsquare_all", "(T[2,3] x) => (T y)", "y = ReduceSumSquare <keepdims = 0> (x)",
         notes=F64 + "; no built-in gradient: onnxgrad rewrites"),
    Case("reducesumsquare_axes_input", "(T[2,3,4] x) => (T[2,4] y)",
         "a = Constant <value = int64[1] {-2}> ()\ny = ReduceSumSquare <keepdims = 0> (x, a)", opset=18,
         notes=F64 + "; opset 18: axes as an input"),
    Case("reducemax", "(T[2,3,4] x) => (T[2,4] y)", "y = ReduceMax <axes = [1], keepdims = 0> (x)", sample=distinct,
         notes=F64 + "; no built-in gradient: onnxgrad rewrites with TopK"),
    Case("reducemin_two_axes", "(T[2,3,4] x) => (T[2,1,1] y)",
         "a = Constant <value = int64[2] {1, 2}> ()\ny = ReduceMin(x, a)", opset=18, sample=distinct,
         notes=F64 + "; no built-in gradient: onnxgrad rewrites with TopK"),
    Case("reducel1", "(T[2,3,4] x) => (T[2,1,4] y)", "y = ReduceL1 <axes = [1]> (x)", sample=nonzero,
         notes=F64 + "; no built-in gradient: onnxgrad rewrites"),
    Case("reducel2", "(T[2,3,4] x) => (T[2,1,4] y)", "y = ReduceL2 <axes = [1]> (x)", dtype="float",
         notes=f32("no double ReduceL2 kernel")),
    Case("reducelogsum", "(T[2,3,4] x) => (T[2,4] y)", "y = ReduceLogSum <axes = [1], keepdims = 0> (x)",
         sample=positive, notes=F64 + "; no built-in gradient: onnxgrad rewrites"),
    Case("reduceprod_zeros", "(T[2,3,4] x) => (T[2,1,4] y)", "y = ReduceProd <axes = [1]> (x)", sample=with_zeros,
         notes=F64 + "; no built-in gradient: onnxgrad rewrites into a tree of Muls; zeros, once and twice in "
         "a product"),
    Case("reduceprod_all", "(T[2,3] x) => (T[1,1] y)", "s = Mul(x, w)\ny = ReduceProd(s)", {"w": (3,)},
         sample=with_zeros, opset=18, notes=F64 + "; every axis (an odd count, 6 then 3), a weight"),
    Case("reduceprod_axes_input", "(T[3,2,5] x) => (T[2] y)",
         "a = Constant <value = int64[2] {-1, 0}> ()\ny = ReduceProd <keepdims = 0> (x, a)", opset=18,
         sample=with_zeros, notes=F64 + "; opset 18: axes as an input, negative, unsorted; 15 factors"),
    Case("reduceprod_noop", "(T[2,3] x) => (T[2,3] y)", "y = ReduceProd <noop_with_empty_axes = 1> (x)", opset=18,
         notes=F64 + "; no axes and noop_with_empty_axes: the identity"),
    Case("reducelogsumexp", "(T[2,3,4] x) => (T[2,1,4] y)", "y = ReduceLogSumExp <axes = [1]> (x)", notes=F64),
    # --- normalization and dropout
    Case("batchnorm_inference", "(T[2,3,2,2] x) => (T[2,3,2,2] y)",
         "y = BatchNormalization <epsilon = 0.01> (x, scale, bias, mean, var)",
         {"scale": (3,), "bias": (3,), "mean": (3,), "var": (3,)}, special={"var": positive},
         notes=F64 + "; no built-in gradient in inference mode: onnxgrad rewrites"),
    Case("layernorm", "(T[2,3,4] x) => (T[2,3,4] y)", "y = LayerNormalization <axis = -1> (x, scale, bias)",
         {"scale": (4,), "bias": (4,)}, notes=F64),
    Case("layernorm_statistics", "(T[2,3,4] x) => (T[2,3,4] y, T[2,1,1] mean, T[2,1,1] inv_std)",
         "y, mean, inv_std = LayerNormalization <axis = 1> (x, scale, bias)", {"scale": (3, 4), "bias": (3, 4)},
         dtype="float", notes=f32("Mean and InvStdDev come in stash_type float") +
         "; ORT's gradient ignores Mean and InvStdDev: onnxgrad rewrites into the formula"),
    Case("layernorm_no_bias", "(T[2,3,4] x) => (T[2,3,4] y)", "y = LayerNormalization <axis = 1> (x, scale)",
         {"scale": (3, 4)}, notes=F64 + "; ORT's gradient assumed a bias: onnxgrad rewrites"),
    Case("instancenorm", "(T[2,3,4] x) => (T[2,3,4] y)", "y = InstanceNormalization <epsilon = 0.01> (x, s, b)",
         {"s": (3,), "b": (3,)}, notes=F64 + "; no built-in gradient: onnxgrad rewrites"),
    Case("lpnorm_p2", "(T[2,3] x) => (T[2,3] y)", "y = LpNormalization <axis = 1, p = 2> (x)", dtype="float",
         notes=f32("rewritten with ReduceL2, which has no double kernel") + "; no built-in gradient"),
    Case("lpnorm_p1", "(T[2,3] x) => (T[2,3] y)", "y = LpNormalization <axis = 0, p = 1> (x)", sample=nonzero,
         notes=F64 + "; no built-in gradient: onnxgrad rewrites"),
    Case("dropout_inference", "(T[2,3] x) => (T[2,3] y)", "s = Mul(x, w)\ny = Dropout(s)", {"w": (3,)},
         notes=F64 + "; ORT's built-in gradient doubles: onnxgrad rewrites"),
    Case("dropout_inference_ratio", "(T[2,3] x) => (T[2,3] y)", "r = Constant <value = T {0.5}> ()\ny = Dropout(x, r)",
         notes=F64),
    Case("dropout_inference_mask", "(T[2,3] x) => (T[2,3] y, bool[2,3] m)", "y, m = Dropout(x)",
         notes=F64 + "; the mask an output: all True"),
    Case("dropout_training_false_mask", "(T[2,3] x) => (T[2,3] y, bool[2,3] m)",
         "r = Constant <value = T {0.3}> ()\nt = Constant <value = bool {0}> ()\ny, m = Dropout(x, r, t)",
         notes=F64 + "; training_mode a constant False, the mask an output"),
    # --- graphs
    Case("shape_only", "(T[2,3] x) => (T[2] y)", "s = Shape(x)\nc = Cast <to = T> (s)\ny = Mul(c, w)", {"w": (2,)},
         notes=F64 + "; x reaches the output only through Shape: its gradient is zeros"),
    Case("multi_output_branches", "(T[2,3] x) => (T[2,4] y, T[2,4] z)", "y = MatMul(x, w)\nz = Tanh(y)",
         {"w": (3, 4)}, notes=F64 + "; an output that also feeds another output"),
    Case("multi_output_split", "(T[2,4] x) => (T[2,2] a, T[2,2] b)",
         "s = Mul(x, w)\na, b = Split <axis = 1, num_outputs = 2> (s)", {"w": (4,)}, opset=18, notes=F64),
    Case("multi_output_mixed", "(T[2,3] x) => (T[2,3] y, int64[2] s)", "m = Mul(x, w)\ny = Sigmoid(m)\ns = Shape(x)",
         {"w": (3,)}, notes=F64 + "; an int output next to a float one"),
)
CASES_BY_NAME = {case.name: case for case in CASES}


def network_and_args(case: Case) -> tuple[onnx.ModelProto, onnxgrad.Network, list[np.ndarray]]:
    """The case's model, the network onnxgrad loads from it, and the seeded inputs."""
    model = case.model()
    network = onnxgrad.load(model)
    return model, network, case.inputs(network)
