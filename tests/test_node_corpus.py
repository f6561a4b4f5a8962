"""The ONNX node test corpus as a gradient suite (see ``node_corpus``).

Every float case of the installed onnx must come out correct (every gradient
matches central differences) or refused with an ``UnsupportedGradientError``
that names the op; never wrong, never another error. Excluded cases carry
their reason in ``node_corpus``.
"""

from __future__ import annotations

import collections

import pytest

import node_corpus

CASES = node_corpus.float_cases()
#: The issue's target: correct cases among the float node cases.
MIN_CORRECT = 400


@pytest.fixture(scope="module")
def outcomes() -> dict[str, node_corpus.Outcome]:
    return {name: node_corpus.run(case) for name, case in CASES.items() if node_corpus.exclusion(case) is None}


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_is_correct_or_refused(name, outcomes):
    case = CASES[name]
    reason = node_corpus.exclusion(case)
    if reason is not None:
        assert name not in outcomes
        return
    outcome = outcomes[name]
    assert outcome.kind in ("ok", "refused"), f"{name}: {outcome.kind} ({outcome.dtype}): {outcome.detail}"
    if outcome.kind == "refused":
        assert outcome.op_type and outcome.op_type in outcome.detail, f"the refusal names no op: {outcome.detail}"


def test_enough_cases_are_correct(outcomes):
    counts = collections.Counter(o.kind for o in outcomes.values())
    assert counts["ok"] >= MIN_CORRECT, counts
    assert len(CASES) - len(outcomes) <= 40, "more exclusions than expected: check node_corpus.EXCLUDED"


def test_resampled_and_excluded_cases_exist():
    # A renamed upstream case must not silently drop out of the lists.
    import re

    for patterns in (node_corpus.RESAMPLED, node_corpus.EXCLUDED, node_corpus.SCALED_FORWARD_ATOL):
        missing = [p for p in patterns if not any(re.fullmatch(p, name) for name in CASES)]
        assert not missing, missing
