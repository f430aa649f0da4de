"""The judge scorer and silver-label weighting, with scripted models: verdicts parsed and checked,
garbage asked once more then "unsure" with the reason, the score the share judged correct, long
documents judged on their passages; teacher labels weighted by agreement."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from ieflow.labelfree.judge import JudgeConfig, JudgeScorer, read_verdicts
from ieflow.lm import LMClient
from ieflow.optimize.evaluator import Budget, BudgetTracker, Evaluator
from ieflow.program import ExtractionProgram
from ieflow.scoring import LabelScorer, Scorer
from ieflow.scoring.silver import label_source_name
from tests.support.receipts import SCHEMA, make_examples
from tests.support.scripted_lm import ScriptedLM

FIELDS = ["company", "date", "total"]


def verdict_json(**verdicts: str) -> str:
    return json.dumps({name: {"verdict": v, "reason": f"{name} is {v}"} for name, v in verdicts.items()})


def honest_judge(messages: list[dict], params: dict) -> str:
    """Judges each field by looking for its value in the document (what a good judge does)."""
    question = messages[1]["content"]
    document = question.split("Record:")[0]
    verdicts = {}
    for name in FIELDS:
        value = json.loads(re.search(rf"^{name}: (.*?)(  \(see|$)", question, re.M).group(1))
        if name == "date" and value:
            y, m, d = value.split("-")
            value = f"{d}/{m}/{y}"
        verdicts[name] = "correct" if value is not None and str(value) in document else "wrong"
    return verdict_json(**verdicts)


def judge(script, **config) -> JudgeScorer:
    return JudgeScorer(SCHEMA, JudgeConfig(**config), lm=ScriptedLM(script, "scripted/judge"))


def test_score_is_the_share_of_fields_judged_correct() -> None:
    example = make_examples(1)[0]
    right = dict(example.gold)
    scorer = judge(honest_judge)
    assert scorer.score_example(example, right).score == pytest.approx(1.0)
    wrong_date = {**right, "date": "2021-01-06"}  # month and day swapped: not what is printed
    scored = scorer.score_example(example, wrong_date)
    assert scored.score == pytest.approx(2 / 3)
    assert scored.fields["date"].error_kind == "judged_wrong"
    assert scored.fields["date"].feedback == "date: the judge says wrong: date is wrong"
    assert scored.fields["company"].correct and scored.fields["company"].hint == "company is correct"


def test_read_verdicts_names_each_problem() -> None:
    text = json.dumps({"company": {"verdict": "correct", "reason": "printed"}, "date": {"verdict": "maybe"}})
    found, problems = read_verdicts(text, FIELDS)
    assert list(found) == ["company"] and found["company"].reason == "printed"
    assert problems == {
        "date": "verdict 'maybe' is not one of correct, wrong, unsure",
        "total": "no entry for the field",
    }
    assert set(read_verdicts("I think it is fine", FIELDS)[1]) == set(FIELDS)


def test_garbage_is_asked_once_more_for_the_unusable_fields_only() -> None:
    def script(messages: list[dict], params: dict) -> str:
        if len(messages) == 2:  # first answer: company usable, the rest garbage
            return '{"company": {"verdict": "correct", "reason": "printed at the top"}, "date": 3}'
        assert "date: the answer" not in messages[-1]["content"]
        assert "date" in messages[-1]["content"] and "company:" not in messages[-1]["content"]
        assert list(params["response_schema"]["properties"]) == ["date", "total"]
        return verdict_json(date="wrong", total="correct")

    scorer = judge(script)
    verdicts = scorer.verdicts("Acme 1\nDate: 01/06/2021\nTOTAL: 10.50", {"company": "Acme 1"})
    assert [v.verdict for v in verdicts.values()] == ["correct", "wrong", "correct"]
    assert scorer.calls == 2


def test_garbage_twice_makes_the_field_unsure_with_the_reason() -> None:
    def script(messages: list[dict], params: dict) -> str:
        return '{"company": {"verdict": "correct", "reason": "ok"}}' if len(messages) == 2 else "no idea"

    scorer = judge(script)
    scored = scorer.score_text("Acme 1", {"company": "Acme 1", "date": None, "total": 3})
    assert scored.score == pytest.approx(1 / 3)
    assert scored.fields["total"].error_kind == "judged_unsure"
    assert "unusable twice: not JSON" in scored.fields["total"].feedback
    assert scorer.calls == 2


def test_no_record_is_wrong_everywhere_without_a_call() -> None:
    scorer = judge(honest_judge)
    assert scorer.score_text("text", None).score == 0.0
    assert scorer.lm.calls == []


def test_long_documents_are_judged_on_each_fields_passages() -> None:
    filler = "\n".join(f"Line {i} of the terms and conditions of sale." for i in range(400))
    text = f"Acme 1 receipt\n{filler}\nTotal paid: TOTAL: 10.50\n{filler}\nReceipt date: 01/06/2021"
    seen: list[str] = []

    def script(messages: list[dict], params: dict) -> str:
        seen.append(messages[1]["content"])
        return verdict_json(company="correct", date="correct", total="correct")

    scorer = judge(script, max_document_tokens=500, chunk_tokens=120)
    scorer.score_text(text, {"company": "Acme 1", "date": "2021-06-01", "total": 10.5})
    question = seen[0]
    assert "Passages of the document:" in question and "Document:" not in question
    assert "TOTAL: 10.50" in question and "01/06/2021" in question
    assert len(question) < len(text) / 3  # passages, not the whole document
    assert re.search(r"^total: 10\.5  \(see passages [\d, ]+\)$", question, re.M)


def test_judge_calls_are_cached_by_the_client(tmp_path, monkeypatch) -> None:
    """The judge's requests go through LMClient (litellm's mock response stands in for a model):
    a second scorer judging the same record reads the response cache and calls nothing."""
    monkeypatch.setenv("IEFLOW_LM_CACHE", str(tmp_path / "cache"))
    answer = verdict_json(company="correct", date="correct", total="wrong")
    example = make_examples(1)[0]
    scores, clients = [], []
    for _ in range(2):
        lm = LMClient("openai/gpt-4o-mini", params={"mock_response": answer}, max_retries=0)
        scores.append(JudgeScorer(SCHEMA, lm=lm).score_example(example, example.gold).score)
        clients.append(lm.usage)
    assert scores == [pytest.approx(2 / 3)] * 2
    assert (clients[0].calls, clients[0].cached_calls) == (1, 0)
    assert (clients[1].calls, clients[1].cached_calls) == (0, 1)


# -- silver labels ------------------------------------------------------------------------------


def test_agreement_half_halves_that_fields_weight() -> None:
    gold = make_examples(1)[0]
    silver = replace(gold, label_source="teacher", agreement={"company": 1.0, "date": 0.5, "total": 1.0})
    record = {**gold.gold, "total": 99.0}  # total wrong, the rest right
    scorer = LabelScorer(Scorer(SCHEMA))
    assert scorer.score_example(gold, record).score == pytest.approx(2 / 3)
    assert scorer.score_example(silver, record).score == pytest.approx(1.5 / 2.5)
    wrong_date = {**gold.gold, "date": None}
    assert scorer.score_example(silver, wrong_date).score == pytest.approx(2 / 2.5)
    human = replace(silver, label_source="human")
    assert scorer.score_example(human, wrong_date).score == pytest.approx(2 / 3)


def test_the_evaluator_weights_silver_labels_and_scores_with_a_judge() -> None:
    example = replace(
        make_examples(1)[0], label_source="teacher", agreement={"company": 0.0, "date": 1.0, "total": 1.0}
    )
    program = ExtractionProgram.from_schema(SCHEMA, model="scripted/lm")
    answer = json.dumps({"company": "nobody", "date": example.gold["date"], "total": example.gold["total"]})
    student = ScriptedLM(lambda m, p: answer)
    silver = Evaluator(Scorer(SCHEMA), BudgetTracker(Budget()), client=student).evaluate(program, [example])
    assert silver[0].score == pytest.approx(1.0)  # the company the teacher disagreed on weighs nothing
    judged = Evaluator(judge(honest_judge), BudgetTracker(Budget()), client=student).evaluate(
        program, [replace(example, gold={}, label_source="none")]
    )
    assert judged[0].score == pytest.approx(2 / 3)  # "nobody" is printed nowhere: judged wrong
    [line] = judged[0].feedback
    assert line.startswith("company: the judge says wrong: company is wrong") and "nowhere" in line


def test_label_source_names() -> None:
    gold = make_examples(2)
    teacher = [replace(ex, label_source="teacher") for ex in gold]
    assert label_source_name(gold) == "gold"
    assert label_source_name(teacher) == "silver (teacher, weighted by agreement)"
    assert label_source_name([gold[0], teacher[1]]).startswith("gold and silver (1 gold/human, 1 teacher")


def test_judge_agreement_counts_per_field() -> None:
    from benchmarks.label_free_judge import field_agreement

    pairs = [("date", True, "correct"), ("date", False, "correct"), ("date", False, "unsure")]
    pairs += [("total", True, "wrong")]
    table = field_agreement(pairs)
    assert table["date"]["n"] == 3 and table["date"]["agreement"] == pytest.approx(2 / 3)
    assert table["date"]["counts"] == {
        "gold_right/judge_correct": 1,
        "gold_wrong/judge_correct": 1,
        "gold_wrong/judge_unsure": 1,
    }
    assert table["total"]["agreement"] == 0.0
