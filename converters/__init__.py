"""Framework front-ends: MindSpore Cells and PyTorch modules to ONNX.

Each submodule imports its framework lazily, on first use, so importing
``onnxgrad.converters`` needs neither framework.
"""
