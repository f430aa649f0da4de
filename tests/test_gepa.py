"""GEPA's logic with scripted models: it must find the rule that fixes a failing field, respect its
budget, and resume from its checkpoint without spending twice."""

from __future__ import annotations

import json

import pytest

from ieflow.optimize import Budget
from ieflow.optimize.checks import ProposalCheck, clean_reply, leaked_value
from ieflow.optimize.facts import FieldFacts, excerpt
from ieflow.optimize.gepa import GEPA, GEPAConfig
from ieflow.program import ExtractionProgram
from tests.support.receipts import DAY_FIRST_RULE, SCHEMA, make_examples, reflector_answer, student_answer
from tests.support.scripted_lm import ScriptedLM


def student(messages: list[dict], params: dict) -> str:
    return student_answer(messages)


def reflector(messages: list[dict], params: dict) -> str:
    answer = reflector_answer(messages)
    return f"Rule: {answer}" if answer == DAY_FIRST_RULE else answer  # clean_reply strips "Rule:"


def make_gepa(tmp_path, **config) -> GEPA:
    return GEPA(
        GEPAConfig(minibatch_size=3, merge_every=0, **config),
        run_dir=tmp_path / "run",
        reflection_model=ScriptedLM(reflector, "scripted/reflector"),
        student_client=ScriptedLM(student),
        seed=1,
    )


def seed_program() -> ExtractionProgram:
    return ExtractionProgram.from_schema(SCHEMA, model="scripted/lm")


def test_gepa_finds_the_rule_that_fixes_the_failing_field(tmp_path) -> None:
    train, val = make_examples(8), make_examples(6, offset=100)
    result = make_gepa(tmp_path).compile(seed_program(), train, val, Budget(max_metric_calls=80))
    assert result.seed_score < 0.9
    assert result.best_score == pytest.approx(1.0)
    assert "day-first" in result.best_program.components["field:date"]
    assert result.candidates[result.best_index].changed_component in ("field:date", "instruction", "demos")
    assert result.usage["metric_calls"] <= 80 + 3
    assert (tmp_path / "run" / "program.json").exists()
    saved = ExtractionProgram.load(tmp_path / "run" / "program.json")
    assert saved.hash == result.best_program.hash
    assert any("helped" in lesson for lesson in saved.lessons)


def test_budget_is_never_overshot_by_more_than_one_minibatch(tmp_path) -> None:
    train, val = make_examples(10), make_examples(4, offset=100)

    def stubborn(messages: list[dict], params: dict) -> str:
        return "Read the field carefully from the document."  # never fixes anything

    def deaf_student(messages: list[dict], params: dict) -> str:
        # Ignores every instruction, rule and demo: no proposal can help it.
        document = next(m["content"] for m in reversed(messages) if m["content"].startswith("Document:"))
        return student([{"role": "system", "content": ""}, {"role": "user", "content": document}], params)

    optimizer = GEPA(
        GEPAConfig(minibatch_size=3, merge_every=0),
        run_dir=tmp_path / "run",
        reflection_model=ScriptedLM(stubborn),
        student_client=ScriptedLM(deaf_student),
    )
    result = optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=25))
    assert 25 - 3 <= result.usage["metric_calls"] <= 25 + 3
    assert "budget" in result.stop_reason
    assert result.best_index == 0


def test_a_run_whose_edits_score_nothing_new_stops_instead_of_asking_forever(tmp_path) -> None:
    """The same rule every time makes the same child, already scored: such steps spend no metric
    call, so only the idle limit ends the run (before the fix it asked the reflector without end)."""
    train, val = make_examples(6), make_examples(3, offset=100)
    asked = []

    def same_rule(messages: list[dict], params: dict) -> str:
        asked.append(1)
        return "Copy the value exactly as printed."

    def deaf_student(messages: list[dict], params: dict) -> str:
        document = next(m["content"] for m in reversed(messages) if m["content"].startswith("Document:"))
        return student([{"role": "system", "content": ""}, {"role": "user", "content": document}], params)

    optimizer = GEPA(
        GEPAConfig(minibatch_size=3, merge_every=0, max_idle_steps=5, propose_formats=False),
        run_dir=tmp_path / "run",
        reflection_model=ScriptedLM(same_rule),
        student_client=ScriptedLM(deaf_student),
    )
    result = optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=10_000))
    assert result.stop_reason == "5 steps in a row scored nothing new"
    assert result.usage["metric_calls"] < 100
    assert len(asked) < 60


def test_resume_spends_no_budget_twice_and_ends_the_same(tmp_path) -> None:
    train, val = make_examples(8), make_examples(6, offset=100)
    full = make_gepa(tmp_path / "a").compile(seed_program(), train, val, Budget(max_metric_calls=60))

    # The same run interrupted after two steps, then resumed in a new optimizer object.
    first = make_gepa(tmp_path / "b", max_steps=2).compile(
        seed_program(), train, val, Budget(max_metric_calls=60)
    )
    spent_before = first.usage["metric_calls"]
    resumed_optimizer = make_gepa(tmp_path / "b")
    # Clear the stop mark so the run goes on (what a crash leaves behind).
    checkpoint = tmp_path / "b" / "run" / "checkpoint.json"
    state = json.loads(checkpoint.read_text())
    state["stop_reason"] = ""
    checkpoint.write_text(json.dumps(state))
    student_lm = resumed_optimizer.student_client
    resumed = resumed_optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=60))
    assert resumed.best_program.hash == full.best_program.hash
    assert resumed.usage["metric_calls"] == full.usage["metric_calls"]
    # The resumed run re-asked nothing it had already evaluated.
    assert len(student_lm.calls) == resumed.usage["metric_calls"] - spent_before


def test_a_failed_reflection_falls_back_to_the_data_fact_for_that_field(tmp_path) -> None:
    def vague(messages: list[dict], params: dict) -> str:
        return "Read the value carefully from the document."

    optimizer = GEPA(
        GEPAConfig(minibatch_size=3, merge_every=0),
        run_dir=tmp_path / "run",
        reflection_model=ScriptedLM(vague),
        student_client=ScriptedLM(student),
        seed=1,
    )
    result = optimizer.compile(seed_program(), make_examples(8), make_examples(6, offset=100), Budget(80))
    description = result.best_program.components["field:date"]
    assert result.best_score == pytest.approx(1.0)
    assert "In these documents it is printed day-first (DD/MM/YYYY)" in description
    assert "Read the value carefully" not in description


def test_only_facts_that_prescribe_something_become_rules() -> None:
    never_copied = FieldFacts("address", 40, absent=0, copied=(0, 40))
    assert never_copied.rule() == ""  # a fact for the reflection model, not an instruction
    assert never_copied.text() == "printed in the document in 0 of 40 cases."
    assert FieldFacts("company", 40, copied=(37, 40)).rule() == "Copy it exactly as printed in the document."
    assert FieldFacts("total", 40, absent=1, copied=(3, 39)).rule() == ""
    absent = FieldFacts("total", 40, absent=12)
    assert absent.rule() == "It is absent in 12 of 40 documents: then answer null."
    dates = FieldFacts("date", 40, is_date=True, notations=(("day-first (DD/MM/YYYY)", 38),), n_dates=40)
    assert dates.text() == "printed day-first (DD/MM/YYYY) in 38 of 40 documents; answer as YYYY-MM-DD."
    assert dates.rule() == "In these documents it is " + dates.text()
    sizes = FieldFacts("lines", 40, sizes=(1, 9))
    assert sizes.rule() == "In these documents it is 1 to 9 items per document."


def test_proposal_checks() -> None:
    examples = make_examples(3)
    check = ProposalCheck(max_words=12)
    assert check.check_text("", "old", examples, truncated=False) == "empty proposal"
    assert "cut off" in check.check_text("Dates are day", "old", examples, truncated=True)
    assert "repeats" in check.check_text("Company name.", "Company name.", examples, truncated=False)
    assert "longer" in check.check_text("word " * 13, "old", examples, truncated=False)
    assert "copies" in check.check_text("The company is Acme Hardware 0.", "old", examples, truncated=False)
    assert check.check_text("Dates are printed day-first.", "Receipt date.", examples, False) is None
    assert leaked_value("use the printed total", examples) is None


def test_reply_cleaning_and_excerpts() -> None:
    assert clean_reply("```\nRule: Dates are day-first here.\n```") == ""
    assert clean_reply("**Rule:** Dates are printed day-first.\nMore text") == "Dates are printed day-first."
    assert clean_reply("1. Use the amount after tax.") == "Use the amount after tax."
    text = "ACME\nDate: 13/01/2021 10:22\nTOTAL 10.50"
    assert "13/01/2021" in excerpt(text, "2021-01-13")
    assert "10.50" in excerpt(text, 10.5)
    assert excerpt(text, "nowhere to be found") is None


def test_a_grounded_format_is_accepted_on_a_tie_and_a_model_rule_is_not() -> None:
    from ieflow.optimize.edits import Proposal
    from ieflow.optimize.evaluator import ExampleResult
    from ieflow.optimize.strategies import MinibatchAcceptance

    def results(*scores: float) -> list[ExampleResult]:
        return [ExampleResult(f"d{i}", s, {}, [], None, None, 0, 0, 0.0, 0.0) for i, s in enumerate(scores)]

    acceptance, program = MinibatchAcceptance(), seed_program()
    fmt = Proposal("field:date", program, "format", "date:day-first", grounded=True)
    rule = Proposal("field:date", program, "rule", "Dates are day-first.")
    assert acceptance.accept(results(0.5, 0.5), results(0.5, 0.5), fmt)
    assert not acceptance.accept(results(0.5, 0.5), results(0.5, 0.5), rule)
    assert not acceptance.accept(results(0.5, 0.5), results(0.5, 0.25), fmt)
    assert acceptance.accept(results(0.5, 0.5), results(0.75, 0.5), rule)
    assert not MinibatchAcceptance(grounded_ties=False).accept(results(0.5), results(0.5), fmt)


def test_one_format_proposal_covers_every_field_printed_the_same_way(tmp_path) -> None:
    from ieflow.datasets import Example
    from ieflow.optimize.base import Candidate, OptimizerRun
    from ieflow.optimize.state import GEPAState

    date = {"type": ["string", "null"], "format": "date"}
    schema = {"type": "object", "properties": {"start": date, "end": date, "note": {"type": "string"}}}
    program = ExtractionProgram.from_schema(schema, model="scripted/lm")
    docs = [
        Example(
            f"d{i}",
            f"Flight 0{i + 1}/1{i}/2020 to 0{i + 1}/2{i}/2020. Note x{i}",
            {"start": f"2020-0{i + 1}-1{i}", "end": f"2020-0{i + 1}-2{i}", "note": f"x{i}"},
        )
        for i in range(4)
    ]
    run = OptimizerRun("gepa", program, docs, docs, Budget(), tmp_path, state=GEPAState())
    parent = Candidate(0, program, [], "seed", 0, {}, 0.0)
    gepa = make_gepa(tmp_path)
    proposal = gepa._propose_format(run, parent, "end")
    assert proposal is not None and proposal.grounded
    assert proposal.program.formats == {"end": "date:month-first", "start": "date:month-first"}
    assert "for end, start" in proposal.summary and "month-first" in proposal.summary
    assert gepa._propose_format(run, parent, "start") is None  # tried with "end" on this parent
