"""Shared test support: no test module imports another test module.

- :mod:`_support.tolerances`: the one table of how closely onnxgrad must match each
  reference (``(reference, dtype) -> rtol, atol, reason``).
- :mod:`_support.sensitivity`: seeded random sensitivities, and seeds derived from a
  case's name, so a case's inputs never depend on which tests ran before it.
- :mod:`_support.treecompare`: nested results compared leaf by leaf.
- The shared networks and cases: :mod:`_support.torch_models`,
  :mod:`_support.mindspore_nets`, :mod:`_support.op_cases`, :mod:`_support.loss_cases`,
  :mod:`_support.optim_cases`; :mod:`_support.float64` and :mod:`_support.reference_ops`
  for finite differences and forward references.

``tests/`` is on ``sys.path`` (``tests/conftest.py``), so tests import ``_support.<module>``.
Framework modules (``torch_models``, ``mindspore_nets``) import their framework: import
them after ``pytest.importorskip``.
"""
