"""Schema suggestion with a scripted model: proposals merged across documents, the JSON Schema
built in code and checked as a user's schema is, bad answers retried then recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ieflow.datasets import Example
from ieflow.labelfree.documents import NoDocumentsError, load_documents
from ieflow.labelfree.fields import FieldProposal, merge_proposals, snake_case
from ieflow.labelfree.suggest import SuggestConfig, SuggestionError, suggest_schema
from ieflow.program import ExtractionProgram
from ieflow.schema import load_schema, null_record, validate_record
from tests.support.scripted_lm import ScriptedLM

CONFIG = SuggestConfig(model="scripted/lm")


def field(name: str, kind: str = "string", **more: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "description": f"The {name}.", "example": None, **more}


LINES = field(
    "line_items",
    "items",
    item_fields=[
        {"name": "description", "type": "string", "description": "What was bought."},
        {"name": "amount", "type": "number", "description": "Its price."},
    ],
)
ANSWERS = {
    "doc-a": [field("Invoice Number"), field("invoice_date", "date"), field("total", "number"), LINES,
              field("currency", "enum", options=["USD", "EUR"]), field("cashier_name")],
    "doc-b": [field("invoice_num"), field("invoice_date", "date"), field("total", "number"), LINES,
              field("currency", "enum", options=["EUR", "GBP"])],
    "doc-c": [field("invoice_number"), field("total", "number"), field("currency", "enum", options=["USD"])],
}  # fmt: skip


def examples(*doc_ids: str) -> list[Example]:
    return [Example(doc_id, f"{doc_id.upper()} document text", {}) for doc_id in doc_ids]


def script(messages: list[dict], params: dict) -> str:
    """The proposals of the document named in the prompt; BROKEN answers garbage at seed 0 and
    fine at seed 1; GARBAGE always."""
    document = messages[1]["content"]  # the user turn; a repair turn comes after it
    if "GARBAGE" in document:
        return "Sure! Here are some fields: total, date"
    if "BROKEN" in document and params.get("seed") == 0:
        return json.dumps({"fields": []})
    doc_id = next(d for d in ANSWERS if d.upper() in document)
    return json.dumps({"fields": ANSWERS[doc_id]})


def test_names_become_snake_case() -> None:
    assert snake_case("Invoice No.") == "invoice_no"
    assert snake_case("totalAmount") == "total_amount"
    assert snake_case("2nd line") == "f_2nd_line"
    assert snake_case("  ") == ""


def test_fields_are_merged_across_documents_with_support_and_the_one_off_is_dropped() -> None:
    suggestion = suggest_schema(examples("doc-a", "doc-b", "doc-c"), CONFIG, ScriptedLM(script))
    support = {f.name: f.support for f in suggestion.fields}
    # invoice_num and Invoice Number are one field under its most common spelling
    assert support == {"invoice_number": 3, "total": 3, "currency": 3, "invoice_date": 2, "line_items": 2}
    assert suggestion.dropped == {"cashier_name": 1}
    recorded = suggestion.schema["x-ieflow-suggested"]
    assert recorded["support"] == support and recorded["dropped"] == {"cashier_name": 1}
    assert recorded["aliases"] == {"invoice_number": ["invoice_num"]} and recorded["documents"] == 3


def test_types_map_to_json_schema_and_absent_fields_are_nullable() -> None:
    schema = suggest_schema(examples("doc-a", "doc-b", "doc-c"), CONFIG, ScriptedLM(script)).schema
    props = schema["properties"]
    assert props["invoice_date"] == {
        "type": ["string", "null"],  # doc-c did not propose it: may be absent
        "format": "date",
        "description": "The invoice_date.",
    }
    assert props["total"]["type"] == ["number"]  # every document has one
    assert props["currency"]["enum"] == ["USD", "EUR", "GBP"]
    items = props["line_items"]
    assert items["type"] == "array" and items["items"]["type"] == "object"
    assert items["items"]["properties"]["amount"]["type"] == ["number", "null"]
    assert set(items["items"]["required"]) == {"description", "amount"}
    assert schema["required"] == list(props) and schema["additionalProperties"] is False


def test_the_suggested_schema_passes_the_checks_a_users_schema_gets() -> None:
    schema = suggest_schema(examples("doc-a", "doc-b", "doc-c"), CONFIG, ScriptedLM(script)).schema
    assert load_schema(schema) is schema
    program = ExtractionProgram.from_schema(schema, model="scripted/lm")
    assert "field:line_items[].amount" in program.components
    assert program.field_descriptions()["total"] == "The total."
    # the fields every document had must have a value; the others may be null
    problems = validate_record(schema, null_record(schema))
    assert {p.split(":")[0] for p in problems} == {"currency", "invoice_number", "total"}


def test_a_bad_answer_is_asked_again_then_recorded_with_its_reason() -> None:
    lm = ScriptedLM(script)
    docs = [*examples("doc-a", "doc-b"), Example("broken", "BROKEN DOC-C", {}), Example("g", "GARBAGE", {})]
    suggestion = suggest_schema(docs, CONFIG, lm)
    assert suggestion.documents == 3  # the broken document's second answer was used
    assert suggestion.fields[0].support == 3
    (failure,) = suggestion.failures
    assert failure.doc_id == "g" and failure.reason.startswith("no usable answer after 2 tries")
    assert suggestion.schema["x-ieflow-suggested"]["failed"] == [{"doc_id": "g", "reason": failure.reason}]
    garbage_calls = [m for m in lm.calls if "GARBAGE" in m[1]["content"]]
    assert len(garbage_calls) == 6  # per try: the answer, a fresh try of non-JSON, one repair turn


def test_no_usable_answer_at_all_is_an_error() -> None:
    with pytest.raises(SuggestionError, match="no document gave a usable field list"):
        suggest_schema([Example("g", "GARBAGE", {})], CONFIG, ScriptedLM(script))


def test_hints_reach_the_prompt_and_a_single_document_keeps_its_fields() -> None:
    lm = ScriptedLM(script)
    cfg = SuggestConfig(model="scripted/lm", hints=("total", "vat rate"))
    suggestion = suggest_schema(examples("doc-c"), cfg, lm)
    assert "at least these fields: total, vat rate" in lm.calls[0][-1]["content"]
    assert [f.name for f in suggestion.fields] == ["invoice_number", "total", "currency"]


def test_item_fields_seen_in_half_the_lists_are_kept() -> None:
    amount = FieldProposal("amount", "number")
    note = FieldProposal("note", "string")
    lists = [
        [FieldProposal("lines", "items", item_fields=(amount, note))],
        [FieldProposal("lines", "items", item_fields=(amount,))],
        [FieldProposal("lines", "items", item_fields=(amount,))],
    ]
    (lines,), _ = merge_proposals(lists, 2)
    assert [f.name for f in lines.item_fields] == ["amount"]


def test_documents_load_from_a_folder_skipping_unreadable_files_with_their_reason(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Invoice 1\nTotal 10.00")
    (tmp_path / "b.md").write_text("# Invoice 2\nTotal 12.00")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    loaded = load_documents(tmp_path)
    assert sorted(ex.source for ex in loaded.examples) == ["a.txt", "b.md"]
    assert all(ex.content_hash and ex.doc_id == ex.content_hash[:16] for ex in loaded.examples)
    (skipped,) = loaded.skipped
    assert skipped.source == "broken.pdf" and skipped.reason
    assert len(load_documents(tmp_path, sample=1).examples) == 1


def test_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NoDocumentsError, match="no readable documents"):
        load_documents(tmp_path)
    with pytest.raises(NoDocumentsError, match="neither a folder"):
        load_documents(tmp_path / "missing")


def fake_proposer(body: dict[str, Any]) -> str:
    return script(body["messages"], {"seed": body.get("seed")})


def test_the_suggest_schema_flow_writes_the_schema_and_reports_the_support(
    tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ieflow_flows.suggest_schema import SuggestSchemaParams
    from ieflow_flows.suggest_schema import suggest_schema as suggest_flow
    from ieflow_testing.fake_server import FakeLMServer

    docs = tmp_path / "docs"
    docs.mkdir()
    for doc_id in ANSWERS:
        (docs / f"{doc_id}.txt").write_text(f"{doc_id.upper()} document text")
    out = tmp_path / "schema.json"
    monkeypatch.setenv("OPENAI_API_KEY", "fake")
    monkeypatch.setenv("IEFLOW_LM_CACHE", str(tmp_path / "cache"))
    with FakeLMServer(answer=fake_proposer) as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
        params = SuggestSchemaParams(documents=str(docs), out=str(out), model=server.model_name("proposer"))
        summary = suggest_flow(params)
    assert summary["support"]["invoice_number"] == 3 and summary["dropped"] == {"cashier_name": 1}
    written = load_schema(out)
    assert set(written["properties"]) == set(summary["support"])
    assert written["x-ieflow-suggested"]["support"] == summary["support"]


def test_documents_load_from_ingests_table_skipping_error_rows(tmp_path: Path) -> None:
    import polars as pl

    pl.DataFrame(
        {
            "doc_id": ["d1", "d2", "d3"],
            "sha256": ["a" * 64, "b" * 64, None],
            "file_name": ["one.pdf", "two.pdf", "three.pdf"],
            "status": ["ok", "ok", "error"],
            "error": [None, None, "encrypted PDF"],
            "text": ["Invoice 1", "Invoice 2", ""],
        }
    ).write_parquet(tmp_path / "documents.parquet")
    loaded = load_documents(tmp_path)  # a folder holding the table reads the table
    assert sorted(ex.doc_id for ex in loaded.examples) == ["d1", "d2"]
    assert {ex.source for ex in loaded.examples} == {"one.pdf", "two.pdf"}
    assert [(s.source, s.reason) for s in loaded.skipped] == [("three.pdf", "encrypted PDF")]
    assert load_documents(tmp_path / "documents.parquet", sample=1).examples[0].doc_id in {"d1", "d2"}


def test_ieflow_schema_suggest_writes_the_schema_and_names_what_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from ieflow_cli import main as cli
    from ieflow_testing.fake_server import FakeLMServer

    docs = tmp_path / "docs"
    docs.mkdir()
    for doc_id in ANSWERS:
        (docs / f"{doc_id}.txt").write_text(f"{doc_id.upper()} document text")
    (docs / "junk.txt").write_text("GARBAGE")
    out = tmp_path / "schema.json"
    monkeypatch.setenv("OPENAI_API_KEY", "fake")
    monkeypatch.setenv("IEFLOW_LM_CACHE", str(tmp_path / "cache"))
    with FakeLMServer(answer=fake_proposer) as server:
        args = ["schema", "suggest", str(docs), "--out", str(out), "--fields", "total, due date"]
        args += ["--model", server.model_name("proposer"), "--api-base", server.base_url]
        monkeypatch.setattr(sys, "argv", ["ieflow", *args])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
    assert exit_info.value.code in (0, None)
    captured = capsys.readouterr()
    assert "5 fields suggested from 3 documents: invoice_number (3/3)" in captured.out
    assert "no fields from" in captured.err and "no usable answer after 2 tries" in captured.err
    schema = load_schema(out)
    assert len(schema["x-ieflow-suggested"]["failed"]) == 1
