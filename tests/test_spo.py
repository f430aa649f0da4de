"""SPO with scripted models: the judge's pairwise verdicts (both orders, majority over documents)
pick the incumbent, the proposer reads the judge's reasons, metric and judge calls are counted
apart and share the budget, and a resumed run spends neither twice."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from ieflow.datasets import Example
from ieflow.optimize import Budget, make_optimizer
from ieflow.optimize.spo import SPO, SPOConfig, documents_taken
from ieflow.optimize.state import Comparison, SPORound
from tests.support.receipts import DAY_FIRST_RULE, make_examples, student_answer
from tests.support.scripted_lm import ScriptedLM
from tests.test_gepa import seed_program

SWAPPED = "Record {side} writes the date with day and month swapped; the document prints it day-first."


def student(messages: list[dict], params: dict) -> str:
    return student_answer(messages)


def proposer(messages: list[dict], params: dict) -> str:
    """Writes the day-first rule once a judge's reason says the dates are swapped."""
    if "day and month swapped" in messages[-1]["content"]:
        return DAY_FIRST_RULE
    return f"Extract every field exactly as printed, attempt {params['seed']}."


def fair_judge(messages: list[dict], params: dict) -> str:
    """Prefers the record whose date is the document's, read day-first; says why."""
    question = messages[1]["content"]
    day, month = re.search(r"Date: (\d\d)/(\d\d)/2021", question).groups()
    right = f"2021-{month}-{day}"
    a = json.loads(re.search(r"^Record A: (.*)$", question, re.M).group(1))
    b = json.loads(re.search(r"^Record B: (.*)$", question, re.M).group(1))
    a_ok, b_ok = (a or {}).get("date") == right, (b or {}).get("date") == right
    if a_ok == b_ok:
        reason = "Both records agree." if a_ok else SWAPPED.format(side="A and B")
        return json.dumps({"winner": "tie", "reason": reason})
    return json.dumps({"winner": "A" if a_ok else "B", "reason": SWAPPED.format(side="B" if a_ok else "A")})


def first_judge(messages: list[dict], params: dict) -> str:
    """Always prefers the record shown first: position bias, nothing else."""
    return json.dumps({"winner": "A", "reason": "Record A reads better."})


def data() -> tuple[list[Example], list[Example]]:
    """Training documents without gold (SPO needs none); validation with gold, for the report."""
    train = [replace(ex, gold={}, label_source="none") for ex in make_examples(8)]
    return train, make_examples(4, offset=100)


def make(run_dir: Path, judge=fair_judge, steps: int | None = 3, **config) -> SPO:
    return SPO(
        SPOConfig(sample_size=3, max_steps=steps, **config),
        judge_model=ScriptedLM(judge, "scripted/judge"),
        run_dir=run_dir,
        reflection_model=ScriptedLM(proposer, "scripted/proposer"),
        student_client=ScriptedLM(student),
        seed=2,
    )


def test_spo_follows_the_judges_reasons_to_the_fix(tmp_path: Path) -> None:
    train, val = data()
    optimizer = make(tmp_path / "run")
    result = optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=200))
    assert result.best_program.components["instruction"] == DAY_FIRST_RULE
    assert result.seed_score < 0.9 and result.best_score == pytest.approx(1.0)  # the report's gold
    prompts = [m[-1]["content"] for m in optimizer.reflection_lm.calls]
    assert "A judge compared" not in prompts[0]  # nothing judged yet
    assert SWAPPED.format(side="A and B") in prompts[1]  # round 1 tied: both swap the date
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["optimizer"] == "spo" and saved["settings"]["judge_model"] == "scripted/judge"


def test_both_orders_cancel_a_position_biased_judge(tmp_path: Path) -> None:
    train, val = data()
    optimizer = make(tmp_path / "run", judge=first_judge)
    result = optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=200))
    assert result.best_index == 0  # every document: one vote each way, so the incumbent stays
    rounds = json.loads((tmp_path / "run" / "checkpoint.json").read_text())["state"]["rounds"]
    assert [r["won"] for r in rounds] == [False, False, False]
    assert all(len(r["comparisons"]) == 6 for r in rounds)


def test_the_winner_is_the_majority_over_documents() -> None:
    def round_of(votes: dict[str, tuple[str, str]]) -> SPORound:
        comparisons = [
            Comparison(doc, first, vote, "")
            for doc, pair in votes.items()
            for first, vote in zip((True, False), pair, strict=True)
        ]
        return SPORound(1, "x", list(votes), comparisons)

    two_of_three = round_of(
        {"a": ("candidate", "candidate"), "b": ("candidate", "tie"), "c": ("incumbent", "incumbent")}
    )
    assert documents_taken(two_of_three) == {"candidate": 2, "incumbent": 1}
    split = round_of(
        {"a": ("candidate", "incumbent"), "b": ("candidate", "tie"), "c": ("incumbent", "incumbent")}
    )
    assert documents_taken(split) == {"candidate": 1, "incumbent": 1}  # a tie: the incumbent stays


def test_metric_and_judge_calls_are_counted_apart_and_share_the_budget(tmp_path: Path) -> None:
    train, val = data()
    optimizer = make(tmp_path / "run", judge=first_judge, steps=None)  # never done: runs to the budget
    result = optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=40))
    usage = result.usage
    ledger = (tmp_path / "run" / "evaluations.jsonl").read_text().splitlines()
    assert usage["metric_calls"] == len(ledger) == len(optimizer.student_client.calls)
    rounds = json.loads((tmp_path / "run" / "checkpoint.json").read_text())["state"]["rounds"]
    assert usage["judge_calls"] == sum(len(r["comparisons"]) for r in rounds)  # no repair turns here
    assert usage["judge_calls"] == len(_judge_lm(optimizer).calls) > 0
    assert usage["budget_calls"] == usage["metric_calls"] + usage["judge_calls"]
    judged = [h for h in result.history if h["event"] == "judged"]  # the run log has both counts
    assert [h["judge_calls"] for h in judged] == [6 * (i + 1) for i in range(len(judged))]
    assert judged[-1]["metric_calls"] <= usage["metric_calls"] and not any(h["won"] for h in judged)
    assert usage["budget_calls"] <= 40 + optimizer.slack_calls()
    assert "budget" in result.stop_reason


def _judge_lm(optimizer: SPO) -> ScriptedLM:
    return optimizer.judge_model  # type: ignore[return-value]


def clear_stop(run_dir: Path) -> None:
    path = run_dir / "checkpoint.json"
    state = json.loads(path.read_text())
    state["stop_reason"] = ""
    path.write_text(json.dumps(state))


def test_interrupted_run_resumes_without_spending_twice(tmp_path: Path) -> None:
    train, val = data()
    budget = Budget(max_metric_calls=200)
    full = make(tmp_path / "a").compile(seed_program(), train, val, budget)
    first = make(tmp_path / "b", steps=1).compile(seed_program(), train, val, budget)
    clear_stop(tmp_path / "b")
    again = make(tmp_path / "b")
    resumed = again.compile(seed_program(), train, val, budget)
    assert resumed.best_program.hash == full.best_program.hash
    assert resumed.usage["metric_calls"] == full.usage["metric_calls"]
    assert resumed.usage["judge_calls"] == full.usage["judge_calls"]
    assert len(again.student_client.calls) == full.usage["metric_calls"] - first.usage["metric_calls"]
    assert len(_judge_lm(again).calls) == full.usage["judge_calls"] - first.usage["judge_calls"]


class Crash(RuntimeError):
    pass


def test_crash_in_the_middle_of_judging_resumes_without_spending_twice(tmp_path: Path) -> None:
    train, val = data()
    budget = Budget(max_metric_calls=200)
    full = make(tmp_path / "a").compile(seed_program(), train, val, budget)
    count = {"n": 0}

    def crashing(messages: list[dict], params: dict) -> str:
        count["n"] += 1
        if count["n"] > 8:  # in the middle of round 2
            raise Crash("killed")
        return fair_judge(messages, params)

    with pytest.raises(Crash):
        make(tmp_path / "b", judge=crashing).compile(seed_program(), train, val, budget)
    recorded = json.loads((tmp_path / "b" / "checkpoint.json").read_text())["state"]["judge_calls"]
    assert recorded == 8
    again = make(tmp_path / "b")
    resumed = again.compile(seed_program(), train, val, budget)
    assert resumed.best_program.hash == full.best_program.hash
    assert resumed.usage["judge_calls"] == full.usage["judge_calls"]
    assert len(_judge_lm(again).calls) == full.usage["judge_calls"] - recorded
    assert resumed.usage["metric_calls"] == full.usage["metric_calls"]


def test_spo_is_registered() -> None:
    assert isinstance(make_optimizer("spo", judge_model=ScriptedLM(fair_judge)), SPO)


def test_an_unusable_pairwise_answer_is_asked_again_then_a_tie_with_the_reason() -> None:
    from ieflow.labelfree.pairwise import PairwiseJudge, read_pair_verdict
    from tests.support.receipts import SCHEMA

    assert read_pair_verdict('{"winner": "C", "reason": "x"}') == "winner 'C' is not one of A, B, tie"
    assert read_pair_verdict('{"winner": "B", "reason": "B has the total"}') == ("B", "B has the total")
    answers = iter(["B is better", '{"winner": "B", "reason": "B has the total"}'])
    judge = PairwiseJudge(SCHEMA, lm=ScriptedLM(lambda m, p: next(answers), "scripted/judge"))
    verdict = judge.compare("Acme 1\nTOTAL: 10.50", {"total": None}, {"total": 10.5})
    assert (verdict.winner, verdict.reason, verdict.calls) == ("B", "B has the total", 2)
    repair = judge.lm.calls[1]
    assert repair[-2] == {"role": "assistant", "content": "B is better"}
    assert "could not be used (not JSON" in repair[-1]["content"]
    never = PairwiseJudge(SCHEMA, lm=ScriptedLM(lambda m, p: "no", "scripted/judge"))
    verdict = never.compare("Acme 1", None, None)
    assert verdict.winner == "tie" and verdict.reason.startswith(
        "the judge's answer was unusable twice: not JSON"
    )
