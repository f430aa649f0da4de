"""GEPA's logic with scripted models: it must find the rule that fixes a failing field, respect its
budget, and resume from its checkpoint without spending twice."""

from __future__ import annotations

import json
import re

import pytest

from ieflow.datasets import Example
from ieflow.optimize import Budget
from ieflow.optimize.gepa import GEPA, GEPAConfig
from ieflow.optimize.reflection import ProposalCheck, clean_reply, excerpt, leaked_value
from ieflow.program import ExtractionProgram
from tests.support.scripted_lm import ScriptedLM

SCHEMA = {
    "type": "object",
    "properties": {
        "company": {"type": ["string", "null"], "description": "Company name."},
        "date": {"type": ["string", "null"], "format": "date", "description": "Receipt date."},
        "total": {"type": ["number", "null"], "description": "Total paid."},
    },
    "required": ["company", "date", "total"],
}

SHOPS = ["Acme Hardware", "Bright Books", "Corner Cafe", "Delta Foods", "Echo Pharmacy", "Fern Florist"]


def make_examples(n: int, offset: int = 0) -> list[Example]:
    out = []
    for i in range(n):
        day, month = 1 + (i + offset) % 12, 1 + (i + offset + 5) % 12
        shop = f"{SHOPS[(i + offset) % len(SHOPS)]} {i + offset}"
        text = f"{shop}\nDate: {day:02d}/{month:02d}/2021\nTOTAL: {10 + i}.50"
        gold = {"company": shop, "date": f"2021-{month:02d}-{day:02d}", "total": 10 + i + 0.5}
        out.append(Example(doc_id=f"d{i + offset}", text=text, gold=gold))
    return out


def student(messages: list[dict], params: dict) -> str:
    """Reads dates month-first unless its prompt says they are day-first."""
    document = next(m["content"] for m in reversed(messages) if m["content"].startswith("Document:"))
    company = document.splitlines()[1]
    day, month = re.search(r"(\d\d)/(\d\d)/2021", document).groups()
    total = float(re.search(r"TOTAL: ([\d.]+)", document).group(1))
    # Without "day-first" in its prompt it reads the date the wrong way round.
    date = f"2021-{month}-{day}" if "day-first" in messages[0]["content"] else f"2021-{day}-{month}"
    return json.dumps({"company": company, "date": date, "total": total})


def reflector(messages: list[dict], params: dict) -> str:
    prompt = messages[-1]["content"]
    if '"date"' in prompt:
        return "Rule: Dates are printed day-first (DD/MM/YYYY); write them as YYYY-MM-DD."
    return "Copy the value exactly as printed."


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
    assert result.candidates[result.best_index].changed in ("field:date", "instruction", "demos")
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
