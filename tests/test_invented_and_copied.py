"""The optimizers use grounding: a wrong value printed nowhere in the document is called invented in
the feedback they read, and a candidate whose answers copy its new demos' values into other
documents is rejected before it can win on a lucky validation set."""

from __future__ import annotations

import json

from ieflow.optimize import Budget
from ieflow.optimize.bootstrap import BootstrapConfig, BootstrapFewShot
from ieflow.optimize.checks import copied_from_demos
from ieflow.optimize.evaluator import BudgetTracker, Evaluator
from ieflow.optimize.prompts import failure_lines
from ieflow.program import Demo, Trace
from ieflow.scoring import Scorer
from ieflow.scoring.invented import NOWHERE
from tests.support.receipts import student_answer
from tests.support.scripted_lm import ScriptedLM
from tests.test_gepa import make_examples, seed_program


def test_a_wrong_value_printed_nowhere_is_called_invented_and_a_misread_one_is_not() -> None:
    program = seed_program()
    example = make_examples(1)[0]  # "Acme ... 0", dated 01/06/2021, total 10.50
    made_up = {**example.gold, "company": "Zenith Traders", "total": 99.95}
    misread = {**example.gold, "company": "TOTAL"}  # printed in the document, just the wrong line
    evaluator = Evaluator(Scorer(program.schema), BudgetTracker(Budget()))

    invented = evaluator.score(example, made_up, Trace(), program)
    assert [s for s in invented.feedback if s.endswith(NOWHERE)] == [
        s for s in invented.feedback if s.startswith(("company:", "total:"))
    ]
    assert len(invented.feedback) == 2
    assert invented.field_details["company"]["invented"] is True
    lines = failure_lines("company", [invented], {example.doc_id: example})
    assert lines[0].endswith(NOWHERE)

    read_wrong = evaluator.score(example, misread, Trace(), program)
    assert read_wrong.feedback and not any(NOWHERE in s for s in read_wrong.feedback)
    assert "invented" not in read_wrong.field_details["company"]
    # Without the program (no schema to ground with) the feedback is the scorer's alone.
    assert not any(NOWHERE in s for s in evaluator.score(example, made_up, Trace()).feedback)


def test_values_copied_from_a_demo_are_found_and_values_the_document_prints_are_not() -> None:
    demo_ex, other = make_examples(2)
    demo = Demo(demo_ex.doc_id, demo_ex.text, demo_ex.gold)
    copied = {**other.gold, "company": demo_ex.gold["company"]}
    assert copied_from_demos([demo], other, copied) == [demo_ex.gold["company"]]
    assert copied_from_demos([demo], other, other.gold) == []
    assert copied_from_demos([demo], demo_ex, demo_ex.gold) == []  # the demo's own document


def copycat(messages: list[dict], params: dict) -> str:
    """Right on its own; shown a demo, it copies the demo's company into every answer."""
    answer = json.loads(student_answer(messages))
    demos = [json.loads(m["content"]) for m in messages[1:-1] if m["role"] == "assistant"]
    if demos:
        answer["company"] = demos[0]["company"]
    return json.dumps(answer)


def test_a_candidate_whose_answers_copy_its_demo_is_rejected(tmp_path) -> None:
    train, val = make_examples(6), make_examples(4, offset=100)
    optimizer = BootstrapFewShot(
        BootstrapConfig(), run_dir=tmp_path / "run", student_client=ScriptedLM(copycat), seed=0
    )
    result = optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=60))
    assert [c.changed_component for c in result.candidates] == ["seed"]
    rejected = [e for e in result.history if e.get("event") == "rejected"]
    assert rejected and all("answers copy demo values into other documents" in e["reason"] for e in rejected)
    assert result.best_program.demos == []
