"""The pure measures of benchmarks/traceability.py: detector precision/recall and the review catch."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location(
        "traceability_bench", ROOT / "benchmarks" / "traceability.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load()


def leaf(correct: bool, method: str = "exact", confidence: float | None = 0.9):
    return bench.Leaf("f", correct, method, confidence, required=True)


def document(doc_id: str, leaves, issues: int, min_confidence: float | None):
    return bench.DocumentResult(doc_id, leaves, [], issues, min_confidence, 0.001, 10.0)


def test_detection_counts_flagged_caught_and_all_wrong_values():
    leaves = [leaf(False, "not_found"), leaf(True, "not_found"), leaf(False), leaf(False), leaf(True)]
    found = bench.detection(leaves, lambda x: x.method == "not_found")
    assert (found.flagged, found.caught, found.wrong) == (2, 1, 3)
    assert found.precision == pytest.approx(0.5)
    assert found.recall == pytest.approx(1 / 3)


def test_detection_without_flags_or_wrong_values_has_no_ratio():
    found = bench.detection([leaf(True)], lambda x: False)
    assert found.precision is None
    assert found.recall is None


def test_review_order_puts_most_issues_first_then_lowest_confidence_and_unknown_last():
    docs = [
        document("calm", [], 0, 0.99),
        document("unknown", [], 2, None),
        document("shaky", [], 2, 0.2),
        document("busy", [], 3, 0.9),
    ]
    assert [d.doc_id for d in bench.review_order(docs)] == ["busy", "shaky", "unknown", "calm"]


def test_review_catch_counts_wrong_values_in_the_top_share_against_a_random_pick():
    flagged = document("flagged", [leaf(False), leaf(False), leaf(False)], 2, 0.1)
    missed = document("missed", [leaf(False), leaf(True)], 0, 0.99)  # wrong, yet sure and grounded
    others = [document(f"d{n}", [leaf(True), leaf(True)], 0, 0.95) for n in range(18)]
    count, share, random_share = bench.review_catch([missed, *others, flagged], 0.10)
    # 20 documents at 10%: two reviewed, the flagged one and a right one; `missed` ranks last
    assert count == 2
    assert share == pytest.approx(3 / 4)
    assert random_share == pytest.approx(0.10)


def test_review_catch_rounds_a_small_sample_up_to_one_document():
    count, share, random_share = bench.review_catch([document("a", [leaf(False)], 1, 0.3)] * 3, 0.10)
    assert count == 1
    assert share == pytest.approx(1 / 3)
    assert random_share == pytest.approx(1 / 3)
