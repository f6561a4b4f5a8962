"""The project's scripts, run from the repository root: ``python -m scripts.benchmarks``,
``python -m scripts.provider_coverage``; the single-file ones also as ``python scripts/NAME.py``.

A package so that scripts and tests import shared code (``scripts.benchmarks.models``) without
editing ``sys.path``. Not installed with onnxgrad.
"""
