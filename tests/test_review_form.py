"""The review form of the label flow: typed inputs prefilled with the drafts, answers read back as
human rows, and what a person got wrong kept for review with the reason."""

from __future__ import annotations

from pydantic import BaseModel

from ieflow.labelfree.review_form import review_form, review_model
from tests.test_review_queue import SCHEMA, drafts


def test_inputs_are_typed_for_scalars_json_text_otherwise_and_prefilled() -> None:
    form = review_form(drafts()[:2], SCHEMA, "Review 2")
    model = review_model(form, BaseModel)
    props = model.model_json_schema()["properties"]
    assert list(props) == [
        "d0_f0_company", "d0_f1_total", "d0_f2_items", "d0_accept",
        "d1_f0_company", "d1_f1_total", "d1_f2_items", "d1_accept",
    ]  # fmt: skip
    assert props["d0_f0_company"] == {"default": "ACME", "title": "r1 · company", "type": "string"}
    assert props["d0_f1_total"]["description"] == "teacher samples disagree"  # the problem, at its field
    assert props["d1_accept"]["description"] == "not schema-valid"  # a whole-record problem, at accept
    assert props["d0_f1_total"]["anyOf"] == [{"type": "number"}, {"type": "null"}]
    assert props["d0_f2_items"]["default"] == '[{"name": "nails", "qty": 3}]'
    assert props["d0_f2_items"]["title"] == "r1 · items (JSON)" and props["d0_accept"]["default"] is False
    assert "**r1** (`documents/r1.txt`): total: teacher samples disagree" in form.description
    assert "**r2**: record: not schema-valid" in form.description


def test_a_value_of_the_wrong_type_is_shown_as_json_text_to_fix() -> None:
    draft = drafts()[0]
    wrong = type(draft)(draft.doc_id, {**draft.record, "total": "12,50"}, {}, {"total": "not a number"})
    (total,) = [i for i in review_form([wrong], SCHEMA).inputs if i.field == "total"]
    assert total.as_json and total.default == '"12,50"' and total.annotation is str


def test_answers_become_human_rows_and_the_rest_stays_with_reasons() -> None:
    form = review_form(drafts(), SCHEMA)
    answers = review_model(form, BaseModel)().model_dump()  # the form as prefilled
    answers.update(d0_accept=True, d0_f1_total=13.5)  # corrected and accepted
    answers.update(d1_accept=True, d1_f2_items='[{"name": "pens"}]')  # accepted, but qty missing
    outcome = form.outcome(answers, SCHEMA)  # r3 not accepted
    (row,) = outcome.labels
    assert row.doc_id == "r1" and row.source == "human" and row.file == "documents/r1.txt"
    assert row.record == {"company": "ACME", "total": 13.5, "items": [{"name": "nails", "qty": 3}]}
    r2, r3 = outcome.kept
    assert r2.record["items"] == [{"name": "pens"}]  # the person's edit is kept, not lost
    assert "reviewed record does not match the schema" in r2.problems[""] and "'qty'" in r2.problems[""]
    assert r3 == drafts()[2]


def test_json_text_that_does_not_parse_is_kept_with_the_reason() -> None:
    form = review_form(drafts()[:1], SCHEMA)
    answers = review_model(form, BaseModel)().model_dump() | {"d0_accept": True, "d0_f2_items": "[{oops"}
    outcome = form.outcome(answers, SCHEMA)
    assert outcome.labels == [] and outcome.kept[0].problems[""].startswith(
        "items: the value given is not JSON"
    )


def test_a_row_the_labels_loader_would_refuse_is_not_written() -> None:
    draft = drafts()[0]
    outside = type(draft)(draft.doc_id, draft.record, {}, draft.problems, "/etc/r1.txt")
    form = review_form([outside], SCHEMA)
    outcome = form.outcome(review_model(form, BaseModel)().model_dump() | {"d0_accept": True}, SCHEMA)
    assert outcome.labels == [] and "is an absolute path" in outcome.kept[0].problems[""]
