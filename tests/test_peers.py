"""The reference libraries' adapters (benchmarks/peer_gepa.py, benchmarks/peer_dspy.py) with scripted
models: ieflow's extraction and scorer behind gepa's GEPAAdapter and DSPy's LM engine and metric. Each
part is skipped, with the reason, when its library (the `bench` extra) is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ieflow.optimize.evaluator import Budget, BudgetTracker, Evaluator, Ledger
from ieflow.scoring import Scorer
from tests.support.receipts import DAY_FIRST_RULE, OTHER_RULE, make_examples, student_answer
from tests.support.scripted_lm import ScriptedLM
from tests.test_gepa import seed_program

pytest.importorskip("gepa", reason="the gepa library is the optional extra ieflow[bench]")


def student(messages: list[dict], params: dict) -> str:
    return student_answer(messages)


def gepa_reflector(messages: list[dict], params: dict) -> str:
    """Answers gepa's reflection prompt with the day-first rule when its records show date feedback."""
    prompt = messages[-1]["content"]
    return f"```\n{DAY_FIRST_RULE if 'date' in prompt else OTHER_RULE}\n```"


def make_adapter(tmp_path: Path):
    from benchmarks.peer_gepa import IeflowAdapter

    evaluator = Evaluator(
        Scorer(seed_program().schema),
        BudgetTracker(Budget(max_metric_calls=None)),
        ledger=Ledger(tmp_path / "evaluations.jsonl"),
        client=ScriptedLM(student),
    )
    return IeflowAdapter(seed_program(), evaluator)


def test_the_gepa_adapter_scores_with_ieflow_and_reflects_its_field_feedback(tmp_path: Path) -> None:
    adapter = make_adapter(tmp_path)
    batch = make_examples(4)
    seed = dict(seed_program().components)
    scored = adapter.evaluate(batch, seed)
    assert scored.trajectories is None
    scorer = Scorer(seed_program().schema)
    expected = [
        scorer.score(
            json.loads(student_answer([{"content": "x"}, {"content": f"Document:\n{ex.text}"}])), ex.gold
        ).score
        for ex in batch
    ]
    assert scored.scores == pytest.approx(expected)
    assert min(scored.scores) < 1.0
    traced = adapter.evaluate(batch, seed, capture_traces=True)
    records = adapter.make_reflective_dataset(seed, traced, ["field:date", "field:company", "instruction"])
    wrong = [i for i, s in enumerate(traced.scores) if s < 1.0]
    assert all("date" in records["field:date"][i]["Feedback"] for i in wrong)
    assert all(r["Feedback"] == "company is correct." for r in records["field:company"])
    assert records["instruction"][wrong[0]]["Feedback"] == " ".join(
        traced.trajectories[wrong[0]].result.feedback
    )
    assert records["instruction"][0]["Inputs"]["document"] == batch[0].text
    fixed = adapter.evaluate(batch, {**seed, "field:date": DAY_FIRST_RULE})
    assert fixed.scores == pytest.approx([1.0] * 4)
    with pytest.raises(ValueError, match="does not have"):
        adapter.program({"field:nowhere": "x"})


def run_gepa_lib(run_dir: Path, budget: int, reflector_calls: list | None = None):
    from benchmarks.peer_gepa import run_gepa_library

    student_lm = ScriptedLM(student)
    result = run_gepa_library(
        seed_program(),
        make_examples(8),
        make_examples(6, offset=100),
        budget,
        run_dir,
        ScriptedLM(gepa_reflector, "scripted/reflector"),
        student_lm,
    )
    return result, len(student_lm.calls)


def test_gepa_optimize_with_the_adapter_finds_the_rule_within_its_budget(tmp_path: Path) -> None:
    result, _ = run_gepa_lib(tmp_path / "run", 40)
    assert result.val_seed < 0.9
    assert result.val_best == pytest.approx(1.0)
    assert "day-first" in " ".join(result.best_program.components.values())
    assert result.metric_calls <= 40 + 3  # gepa, like ieflow, may finish one minibatch past it


def test_a_resumed_gepa_library_run_reaches_the_same_program_without_asking_twice(tmp_path: Path) -> None:
    whole, whole_calls = run_gepa_lib(tmp_path / "whole", 40)
    _, cut_calls = run_gepa_lib(tmp_path / "cut", 12)  # a run stopped early ...
    resumed, resumed_calls = run_gepa_lib(tmp_path / "cut", 40)  # ... then continued
    assert resumed.best_program.hash == whole.best_program.hash
    assert resumed.metric_calls == whole.metric_calls
    assert cut_calls + resumed_calls == whole_calls  # every document read once, over both sessions
