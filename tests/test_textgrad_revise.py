"""TextGrad at the instance level with a scripted model: one record critiqued against its document
and revised; the revision is kept only when schema-valid and grounded, and its calls are counted."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import polars as pl
import pytest

from ieflow.batch.plan import ReviewPolicy
from ieflow.program import ExtractionProgram
from ieflow.textgrad_revise import CRITIC_SYSTEM, needs_revision, revise_record
from ieflow.trace import Trace
from ieflow_testing.fake_server import FakeLMServer, piece_logprobs
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


# -- in the batch run (`ieflow extract --revise-below`) ------------------------------------------------

WRONG_TOTAL = 7.77


def batch_answer(body: dict) -> object:
    """Purchase orders: a marked document gets a wrong total at first; the critique names it; the
    revision is the gold record, or (INVENT) the gold record with a purchase-order number printed
    nowhere."""
    from tests.test_batch import GOLD, user_text

    if body["messages"][0]["content"] == CRITIC_SYSTEM:
        return "total: the document prints another amount."
    text = user_text(body)
    doc = next(d for d in GOLD if f"[{d}]" in text)
    record = copy.deepcopy(GOLD[doc]["record"])
    revising = "A reviewer found these problems" in text
    if not revising and ("WRONG-TOTAL" in text or "INVENT" in text):
        record["total"] = WRONG_TOTAL
    if revising and "INVENT" in text:
        record["po_number"] = "ZQ-4410-XW"
    return record


def doubtful_77(text: str) -> list[tuple[str, float]]:
    """Every token certain but the "77" of the wrong total."""
    return [(piece, -3.0 if piece == "77" else -0.01) for piece, _ in piece_logprobs(text)]


def test_the_batch_run_revises_low_confidence_records_and_shows_the_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ieflow.batch import run_batch
    from tests.test_batch import GOLD, KEY_ENV, make_documents, program, settings

    monkeypatch.setenv(KEY_ENV, "fake")
    docs = make_documents(
        tmp_path / "docs.parquet", {"po-1001": "WRONG-TOTAL", "po-1002": "", "po-1003": "INVENT"}
    )
    with FakeLMServer(answer=batch_answer) as server:
        server.token_logprobs = doubtful_77
        conf = settings(tmp_path / "out", server, revise_below=0.5, review=ReviewPolicy("never", None))
        summary = run_batch(docs, program(server), conf)
    records = {r["doc_id"]: r for r in pl.read_parquet(tmp_path / "out" / "records").iter_rows(named=True)}
    fixed, plain, invented = records["po-1001"], records["po-1002"], records["po-1003"]
    assert fixed["total"] == GOLD["po-1001"]["record"]["total"] and fixed["revised"] is True
    assert fixed["revise_reason"] == "kept" and fixed["revise_calls"] == 2 and fixed["revise_tokens"] > 0
    assert plain["revised"] is None and plain["revise_calls"] is None  # confident: not revised
    assert invented["revised"] is False and invented["revise_reason"].startswith("ungrounded: po_number")
    assert (
        invented["total"] == WRONG_TOTAL and invented["po_number"] == GOLD["po-1003"]["record"]["po_number"]
    )
    assert summary["n_revised"] == 1 and summary["revise_calls"] == 4
    assert summary["revise_tokens"] == fixed["revise_tokens"] + invented["revise_tokens"]


def test_the_extract_command_passes_the_bound_to_the_batch_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError
    from typer.testing import CliRunner

    from ieflow_cli import main as cli
    from ieflow_flows import extract as extract_flow

    seen: list[object] = []
    monkeypatch.setattr(extract_flow, "extract", lambda params: seen.append(params) or {})
    args = ["extract", "docs.parquet", "--program", "p.json", "--output-dir", "out", "--revise-below", "0.4"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert seen.pop().settings().revise_below == 0.4  # type: ignore[attr-defined]
    params = extract_flow.ExtractParams(documents="d", program="p", output_dir="o")
    assert params.settings().revise_below is None  # off unless asked for
    with pytest.raises(ValidationError, match="revise_below"):
        extract_flow.ExtractParams(documents="d", program="p", output_dir="o", revise_below=2)


def test_a_bound_outside_0_1_is_one_error_line_and_exit_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from ieflow_cli import main as cli

    args = ["extract", "docs.parquet", "--program", "p.json", "--output-dir", "out", "--revise-below", "2"]
    monkeypatch.setattr(sys, "argv", ["ieflow", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "revise_below" in err
