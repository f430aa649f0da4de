"""Decisions with evidence: the paired bootstrap interval, the nightly promotion and the optimizers'
final choice that read it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ieflow.champion import Policy, Scorecard, decide, decision_markdown
from ieflow.optimize.candidates import Candidate, CandidatePool
from ieflow.optimize.choice import choose_final
from ieflow.uncertainty import paired_interval
from tests.test_gepa import make_examples, seed_program


def scores(n: int, seed: int = 1) -> dict[str, float]:
    rng = random.Random(seed)
    return {f"d{i:02d}": round(rng.uniform(0.3, 0.9), 4) for i in range(n)}


def test_identical_scores_give_the_zero_interval() -> None:
    a = scores(20)
    interval = paired_interval(a, dict(a))
    assert (interval.mean, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert not interval.separates()


def test_a_constant_shift_gives_an_interval_at_the_shift() -> None:
    a = scores(20)
    interval = paired_interval(a, {d: s + 0.1 for d, s in a.items()})
    assert interval.low == pytest.approx(0.1) and interval.high == pytest.approx(0.1)
    assert interval.separates() and interval.n == 20


def test_a_noisy_shift_gives_an_interval_around_the_shift() -> None:
    a = scores(30)
    rng = random.Random(7)
    noise = [rng.uniform(0.0, 0.05) for _ in range(15)]
    noise = [e for n in noise for e in (n, -n)]  # mirrored pairs: the mean shift is exactly 0.1
    b = {d: s + 0.1 + e for (d, s), e in zip(a.items(), noise, strict=True)}
    interval = paired_interval(a, b)
    assert interval.mean == pytest.approx(0.1)
    assert interval.low < interval.mean < interval.high
    assert 0.05 < interval.low < 0.1 < interval.high < 0.15
    assert paired_interval(a, b) == interval  # seeded: the same scores, the same interval


def test_pairing_removes_the_spread_between_documents() -> None:
    """Documents differ a lot in difficulty (0.3 to 0.9) but B gains 0.02 on every one but two:
    paired, the gain is clear; the spread of the scores themselves would hide it."""
    a = scores(20)
    b = {d: s + (0.02 if i > 1 else -0.01) for i, (d, s) in enumerate(a.items())}
    interval = paired_interval(a, b)
    assert interval.separates() and interval.low > 0.0


def test_one_lucky_document_does_not_separate_two_programs() -> None:
    a = scores(20)
    b = dict(a)
    b["d03"] = a["d03"] + 0.6  # the whole mean gain (+0.03) comes from one document
    interval = paired_interval(a, b)
    assert interval.mean == pytest.approx(0.03)
    assert interval.low == pytest.approx(0.0) and not interval.separates()


def test_scores_on_different_documents_are_refused() -> None:
    with pytest.raises(ValueError, match="same documents; differ on d2"):
        paired_interval({"d1": 0.5, "d2": 0.5}, {"d1": 0.5, "d3": 0.5})
    with pytest.raises(ValueError, match="no documents"):
        paired_interval({}, {})


# -- the nightly promotion ------------------------------------------------------------------------------


def card(program: str, per_doc: dict[str, float], tokens: float = 400.0) -> Scorecard:
    mean = sum(per_doc.values()) / len(per_doc)
    ids = tuple(sorted(per_doc))
    return Scorecard(program, mean, {"total": mean}, len(per_doc), tokens, doc_ids=ids, doc_scores=per_doc)


def test_nightly_keeps_the_champion_when_the_lower_bound_is_below_the_margin() -> None:
    base = scores(20)
    lucky = dict(base)
    lucky["d03"] = base["d03"] + 0.6  # mean +0.03 clears the 0.02 margin; the evidence does not
    champion, challenger = card("a", base), card("b", lucky)
    decision = decide(champion, challenger, Policy(margin=0.02, max_cost_increase=0.1))
    assert decision.score_delta == pytest.approx(0.03) and decision.score_delta > 0.02
    assert not decision.promote and decision.code == "not_separated"
    assert decision.interval is not None and decision.interval.low < 0.02
    assert "lower bound" in decision.reason and "[+0.000, " in decision.reason
    report = decision_markdown("receipts", decision, champion, challenger, policy=Policy(0.02, 0.1))
    assert "**Kept champion**" in report and "paired bootstrap: +0.030 [+0.000, " in report
    assert "lower bound to clear the margin" in report


def test_nightly_promotes_when_the_lower_bound_clears_the_margin() -> None:
    base = scores(20)
    better = {d: s + 0.05 for d, s in base.items()}
    decision = decide(card("a", base), card("b", better), Policy(margin=0.02, max_cost_increase=0.1))
    assert decision.promote and decision.code == "promoted"
    assert decision.interval is not None and decision.interval.low == pytest.approx(0.05)
    assert "lower bound +0.050 clears margin 0.020" in decision.reason
    assert decision.to_dict()["interval"]["low"] == pytest.approx(0.05)


def test_scorecards_from_scores_keep_the_per_document_scores() -> None:
    result = {
        "program": "p",
        "score": 0.5,
        "per_field": {"total": 0.5},
        "n": 2,
        "prompt_tokens": 300,
        "completion_tokens": 20,
        "doc_scores": {"d1": 0.25, "d2": 0.75},
    }
    card_ = Scorecard.from_score(result, ["d2", "d1"])
    assert card_.doc_scores == {"d1": 0.25, "d2": 0.75} and card_.doc_ids == ("d1", "d2")
    assert "doc_scores" not in card_.to_dict()


# -- the optimizers' final choice ---------------------------------------------------------------------------


def candidate(index: int, per_doc: dict[str, float], tokens: float) -> Candidate:
    return Candidate(index, seed_program(), [0] if index else [], "seed", index, per_doc, tokens)


def test_a_cheaper_candidate_within_noise_of_the_best_is_chosen() -> None:
    base = scores(8)
    lucky = dict(base)
    lucky["d03"] = base["d03"] + 0.4  # the best's whole gain is one document
    pool = CandidatePool([candidate(0, base, 300.0), candidate(1, lucky, 520.0)])
    assert pool.best().index == 1
    choice = choose_final(pool)
    assert choice.changed and choice.index == 0 and choice.best_by_score == 1
    assert choice.interval is not None and choice.interval.low <= 0.0 < choice.interval.high
    assert "within noise" in choice.reason and "so the cheaper is kept" in choice.reason


def test_the_best_stays_when_the_interval_separates_it_or_nothing_is_cheaper() -> None:
    base = scores(8)
    better = {d: s + 0.05 for d, s in base.items()}
    separated = choose_final(CandidatePool([candidate(0, base, 300.0), candidate(1, better, 520.0)]))
    assert not separated.changed and separated.index == 1 and separated.interval is None
    costlier = dict(base)
    costlier["d03"] = base["d03"] + 0.4
    dearer = choose_final(CandidatePool([candidate(0, base, 600.0), candidate(1, costlier, 520.0)]))
    assert dearer.index == 1 and dearer.reason == "highest validation score"


def test_the_run_result_records_a_choice_the_evidence_changed(tmp_path: Path) -> None:
    from ieflow.optimize import Budget, OptimizerRun

    train, val = make_examples(4), make_examples(4, offset=100)
    run = OptimizerRun("test", seed_program(), train, val, Budget(), tmp_path)
    base = {ex.doc_id: 0.5 for ex in val}
    lucky = {**base, val[0].doc_id: 0.9}
    run.pool = CandidatePool([candidate(0, base, 300.0), candidate(1, lucky, 520.0)])
    result = run.result()
    assert result.best_index == 0 and result.choice is not None and result.choice.best_by_score == 1
    assert result.to_dict()["choice"]["interval"]["low"] == pytest.approx(0.0)
    assert "within noise" in result.best_program.metadata["choice"]


def test_the_optimize_report_shows_the_test_interval_and_a_changed_choice(tmp_path: Path) -> None:
    from ieflow.optimize import Budget, OptimizerRun
    from ieflow.report import optimization_markdown

    train, val = make_examples(4), make_examples(4, offset=100)
    run = OptimizerRun("test", seed_program(), train, val, Budget(), tmp_path)
    base = {ex.doc_id: 0.5 for ex in val}
    run.pool = CandidatePool([candidate(0, base, 300.0), candidate(1, {**base, val[0].doc_id: 0.9}, 520.0)])
    result = run.result()
    test = {"score": 0.5, "per_field": {"total": 0.5}, "prompt_tokens": 300, "completion_tokens": 20}
    test |= {"cost_usd": 0.0, "seconds": 1.0}
    before = test | {"doc_scores": {"t1": 0.5, "t2": 0.5}}
    after = test | {"score": 0.75, "doc_scores": {"t1": 0.75, "t2": 0.75}}
    text = optimization_markdown(result, before, after, None)
    assert "Test difference per document, paired bootstrap: +0.250 [+0.250, +0.250] (95%, n=2)." in text
    assert "Final choice: candidate 0 (300 tokens/doc" in text and "so the cheaper is kept" in text
