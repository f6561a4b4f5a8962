"""Sampling: ResizeGrad has no lowering; its refusal says what of the Resize node keeps it."""

from __future__ import annotations

import onnx

from onnxgrad._lower._lowerer import Lowerer
from onnxgrad._lower._registry import refuses
from onnxgrad.errors import UnsupportedGradientError


@refuses("com.microsoft::ResizeGrad")
def _resize_grad_refusal(lw: Lowerer, node: onnx.NodeProto) -> UnsupportedGradientError:
    # Only Resize nodes onnxgrad could not rewrite (_rewrites._resize) get here: say what of the node.
    from onnxgrad._rewrites import RESIZE_COORDINATES, RESIZE_MODES, resize_refusal

    resize = lw.forward_producer(node.input[0], ["Resize"], node)
    reason = resize_refusal(resize) or "roi, scales or sizes that are not constants, or an input shape not static"
    return UnsupportedGradientError(
        f"The Resize node {resize.name or resize.output[0]!r} has {reason}, and onnxgrad differentiates Resize only "
        f"with mode in {list(RESIZE_MODES)} (antialias too), coordinate_transformation_mode in "
        f"{list(RESIZE_COORDINATES)}, constant roi, scales and sizes, and a static input shape "
        "(ONNX Runtime's ResizeGrad has no CPU kernel). Change the node to that, or ask for gradients that do not "
        "pass through it.",
        op_type="Resize", node=resize.name,
    )
