"""TextGrad at the instance level with a scripted model: one record critiqued against its document
and revised; the revision is kept only when schema-valid and grounded, and its calls are counted."""

from __future__ import annotations

import json

import pytest

from ieflow.program import ExtractionProgram
from ieflow.textgrad_revise import CRITIC_SYSTEM, needs_revision, revise_record
from ieflow.trace import Trace
from tests.support.receipts import SCHEMA, make_examples
from tests.support.scripted_lm import ScriptedLM

EXAMPLE = make_examples(4)[3]  # "Delta Foods 3", printed 04/09/2021, total 13.50
SWAPPED = {**EXAMPLE.gold, "date": "2021-04-09"}  # day and month read the wrong way round
CRITIQUE = "date: day and month are swapped; the document prints the day first."


def program() -> ExtractionProgram:
    return ExtractionProgram.from_schema(SCHEMA, model="scripted/lm")


def model(revision: dict | str, critique: str = CRITIQUE) -> ScriptedLM:
    def script(messages: list[dict], params: dict) -> str:
        if messages[0]["content"] == CRITIC_SYSTEM:
            return critique
        return revision if isinstance(revision, str) else json.dumps(revision)

    return ScriptedLM(script)


def test_a_grounded_revision_is_kept_and_its_calls_are_counted() -> None:
    client = model(EXAMPLE.gold)
    revision = revise_record(program(), EXAMPLE.text, SWAPPED, client)
    assert revision.revised and revision.reason == "kept"
    assert revision.record == EXAMPLE.gold
    assert revision.critique == CRITIQUE
    assert revision.calls == 2 == len(client.calls)
    assert revision.prompt_tokens == client.usage.prompt_tokens > 0
    assert revision.completion_tokens == client.usage.completion_tokens > 0
    # The revise call showed the model its own answer and the critique.
    last = client.calls[-1]
    assert last[-2] == {"role": "assistant", "content": json.dumps(SWAPPED)}
    assert CRITIQUE in last[-1]["content"] and last[-3]["content"].startswith("Document:")


def test_an_ungrounded_revision_is_rejected_and_the_record_kept() -> None:
    invented = {**EXAMPLE.gold, "company": "Zeta Widgets 77"}
    client = model(invented)
    revision = revise_record(program(), EXAMPLE.text, SWAPPED, client)
    assert not revision.revised
    assert revision.reason.startswith("ungrounded: company='Zeta Widgets 77'")
    assert revision.record == SWAPPED and revision.proposed == invented
    assert revision.calls == 2


def test_a_revision_that_is_not_schema_valid_is_rejected() -> None:
    client = model('{"company": 5, "date": "someday", "total": "a lot"}')
    revision = revise_record(program(), EXAMPLE.text, SWAPPED, client)
    assert not revision.revised and revision.reason.startswith("not schema-valid")
    assert revision.record == SWAPPED
    assert revision.calls == len(client.calls) >= 2  # the repair attempt is counted too


def test_no_revise_call_when_the_critique_finds_nothing() -> None:
    client = model(EXAMPLE.gold, critique="OK")
    revision = revise_record(program(), EXAMPLE.text, EXAMPLE.gold, client)
    assert not revision.revised and revision.reason == "no problem found"
    assert revision.calls == 1 == len(client.calls)


def test_an_unchanged_revision_is_no_change() -> None:
    revision = revise_record(program(), EXAMPLE.text, SWAPPED, model(SWAPPED))
    assert not revision.revised and revision.reason == "no change"


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [({"date": 0.4, "total": 0.99}, True), ({"date": 0.9}, False), ({"date": None}, False), ({}, False)],
)
def test_only_records_with_a_low_confidence_value_need_revision(
    confidence: dict[str, float | None], expected: bool
) -> None:
    assert needs_revision(Trace(field_confidence=confidence), below=0.5) is expected
