"""Issue 17, every value traceable: evidence in batch outputs, the review policy and queue, the
great-expectations grounding check, page offsets from ingest, and `extract-file --evidence`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ieflow import batch
from ieflow.batch import Outcome, OutcomeKind, ReviewPolicy, review_item, run_batch
from ieflow.batch.review_queue import is_required
from ieflow.grounding import Evidence, leaf_values
from ieflow.ingest.tables import load_previous, to_frames, write_tables
from ieflow.validation.grounding import EvidenceRow, check_grounding
from ieflow_testing.fake_server import FakeLMServer
from tests.test_batch import GOLD, PO, answer, make_documents, program, settings

SCHEMA = {
    "type": "object",
    "properties": {
        "number": {"type": "string"},
        "note": {"type": ["string", "null"]},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "memo": {"type": ["string", "null"]}},
                "required": ["sku"],
            },
        },
    },
    "required": ["number", "lines"],
}


@pytest.fixture(scope="module")
def server() -> Any:
    with FakeLMServer(answer=answer) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IEFLOW_TEST_FAKE_KEY", "fake")


def outcome_with(evidence: list[Evidence], confidence: dict[str, float | None] | None = None) -> Outcome:
    return Outcome("d1", OutcomeKind.OK, {}, evidence=tuple(evidence), field_confidence=confidence or {})


def test_required_is_read_along_the_whole_path_through_arrays() -> None:
    assert is_required(SCHEMA, "number") and is_required(SCHEMA, "lines[3].sku")
    assert not is_required(SCHEMA, "note") and not is_required(SCHEMA, "lines[0].memo")


def test_the_policy_sends_a_record_to_review_for_each_reason_it_names() -> None:
    missing = [
        Evidence("number", "X-1", "not_found", 0.0),
        Evidence("note", "hello", "not_found", 0.0),
        Evidence("lines[0].sku", "A1", "exact", 1.0, 10, 12, 1, "A1"),
    ]
    item = review_item(outcome_with(missing), SCHEMA, ReviewPolicy())
    assert item is not None and item.reasons == ("not_found",) and item.fields == ("number",)
    assert item.issues[0].detail == "number: 'X-1' appears nowhere in the document"
    assert review_item(outcome_with(missing), SCHEMA, ReviewPolicy("any")).fields == ("number", "note")
    assert review_item(outcome_with(missing), SCHEMA, ReviewPolicy("never")) is None
    unsure = outcome_with(missing[2:], {"lines[0].sku": 0.31})
    assert review_item(unsure, SCHEMA, ReviewPolicy()) is None  # confidence unused by default
    low = review_item(unsure, SCHEMA, ReviewPolicy(below_confidence=0.5))
    assert low is not None and low.reasons == ("low_confidence",) and low.fields == ("lines[0].sku",)
    no_number = outcome_with(missing[2:], {"lines[0].sku": None})  # no confidence: never counts
    assert review_item(no_number, SCHEMA, ReviewPolicy(below_confidence=0.5)) is None
    with pytest.raises(ValueError, match="within 0-1"):
        ReviewPolicy(below_confidence=1.5)


def test_evidence_and_confidence_survive_staging_and_old_files_read_latency_as_model_time() -> None:
    outcome = Outcome(
        "d1",
        OutcomeKind.OK,
        {"number": "X-1"},
        model_s=1.5,
        wall_s=9.0,
        source_uri="s3://b/a.pdf",
        file_name="a.pdf",
        evidence=(Evidence("number", "X-1", "exact", 1.0, 3, 6, 2, "X-1"),),
        field_confidence={"number": 0.9},
        confidence_note=None,
    )
    staged = json.loads(json.dumps(outcome.to_dict()))
    assert Outcome.from_dict(staged) == outcome
    old = {"doc_id": "d", "kind": "ok", "value": {}, "latency_s": 2.5}
    assert Outcome.from_dict(old).model_s == 2.5 and Outcome.from_dict(old).evidence == ()


def test_great_expectations_checks_the_grounded_share_of_each_field() -> None:
    rows = [EvidenceRow(f"d{i}", "total", "exact" if i < 9 else "not_found") for i in range(10)]
    rows += [EvidenceRow(f"d{i}", "vendor", "fuzzy" if i < 5 else "not_found") for i in range(10)]
    rows += [EvidenceRow(f"d{i}", "paid", "derived") for i in range(10)]  # counted neither way
    report = check_grounding(rows, 0.8, "receipts.grounding")
    assert report.failed == ["vendor"] and report.errors == []
    assert report.counted == {"total": 10, "vendor": 10} and report.grounded == {"total": 9, "vendor": 5}
    (result,) = report.result["results"]  # one expectation over the per-field table
    assert result["expectation_config"]["type"] == "expect_column_values_to_be_between"
    kwargs = result["expectation_config"]["kwargs"]
    assert (kwargs["column"], kwargs["min_value"]) == ("grounded_share", 0.8)
    assert not result["success"] and result["result"]["unexpected_list"] == [0.5]
    assert check_grounding(rows, 0.5, "receipts.grounding").failed == []


def test_a_valid_record_with_an_invented_required_value_is_kept_and_queued_for_review(
    tmp_path: Path, server: FakeLMServer
) -> None:
    markers = {"po-1001#1": "", "po-1002#2": "MADE-UP-PO", "po-1003#3": ""}
    docs = make_documents(tmp_path / "docs.parquet", markers)
    out = tmp_path / "out"
    summary = run_batch(docs, program(server), settings(out, server, shard_size=10, min_grounded_share=1.0))
    records, quarantine = batch.read_outputs(str(out))
    assert quarantine.is_empty() and sorted(records["doc_id"]) == sorted(markers)  # still a record
    flagged = dict(records.select("doc_id", "needs_review").iter_rows())
    assert flagged == {"po-1001#1": False, "po-1002#2": True, "po-1003#3": False}
    review = batch.read_dataset(str(out), "review").to_dicts()
    assert [r["doc_id"] for r in review] == ["po-1002#2"]
    assert review[0]["reasons"] == ["not_found"] and review[0]["fields"] == ["po_number"]
    assert review[0]["file_name"] == Path(GOLD["po-1002"]["file"]).name
    assert summary["n_review"] == 1 and summary["review_by_reason"] == {"not_found": 1}
    # The grounding check: po_number is grounded in 2 of 3 documents, below the 1.0 asked for.
    assert summary["grounded_share"]["po_number"] == round(2 / 3, 4)
    assert summary["grounding_failed_shards"] == {"po_number": 1}
    (results,) = [json.loads(p.read_text()) for p in (out / "validation").glob("*.json")]
    grounding = [r for r in results if r["suite_name"].endswith(".grounding")]
    assert len(grounding) == 1 and not grounding[0]["success"]
    assert (out / "data_docs" / "index.html").is_file()  # Data Docs render the grounding result too
    assert (out / "review.html").is_file() and summary["review_page"] == str(out / "review.html")


def test_the_evidence_dataset_has_one_row_per_leaf_of_each_record_at_the_texts_own_span(
    tmp_path: Path, server: FakeLMServer
) -> None:
    markers = {"po-1001#1": "", "po-1002#2": "MADE-UP-PO", "po-1003#3": "", "po-1001#4": "MALFORMED"}
    docs = make_documents(tmp_path / "docs.parquet", markers)
    out = tmp_path / "out"
    run_batch(docs, program(server), settings(out, server, shard_size=2))
    records, _ = batch.read_outputs(str(out))
    evidence = batch.read_dataset(str(out), "evidence")
    assert set(evidence["doc_id"]) == set(records["doc_id"]) == {"po-1001#1", "po-1002#2", "po-1003#3"}
    schema = program(server).schema
    for doc_id in records["doc_id"]:
        record = GOLD[doc_id.split("#")[0]]["record"]
        if doc_id == "po-1002#2":
            record = {**record, "po_number": "ZQ-4410-XW"}
        leaves = [path for path, _, _ in leaf_values(record, schema)]
        assert sorted(evidence.filter(pl.col("doc_id") == doc_id)["path"]) == sorted(leaves)
    texts = dict(pl.read_parquet(docs).select("doc_id", "text").iter_rows())
    located = evidence.filter(pl.col("char_start").is_not_null())
    for row in located.iter_rows(named=True):
        assert texts[row["doc_id"]][row["char_start"] : row["char_end"]] == row["matched_text"]
        assert row["page"] == 1  # the documents have one page: page_offsets [0]
    unlocated = evidence.filter(pl.col("char_start").is_null())
    assert set(unlocated["method"]) <= {"not_found", "derived"}
    invented = evidence.filter(pl.col("method") == "not_found").select("doc_id", "path").rows()
    assert invented == [("po-1002#2", "po_number")]  # the one value printed nowhere


def test_documents_parquet_keeps_page_offsets_and_an_older_table_reads_with_unknown_pages(
    tmp_path: Path,
) -> None:
    row = {
        "doc_id": "d1",
        "sha256": "s1",
        "source_uri": "a.pdf",
        "source_uris": ["a.pdf"],
        "file_name": "a.pdf",
        "size_bytes": 10,
        "n_pages": 2,
        "n_chars": 9,
        "method": "text_layer",
        "status": "ok",
        "error": None,
        "ocr_pages": [],
        "warnings": [],
        "parse_options": "opts",
        "text": "one\n\ntwo",
        "page_offsets": [0, 5],
    }
    documents, chunks = to_frames([row], [])
    assert documents.schema["page_offsets"] == pl.List(pl.Int64)
    write_tables(documents, chunks, str(tmp_path / "new"))
    assert load_previous(str(tmp_path / "new"), "opts")["s1"]["document"]["page_offsets"] == [0, 5]
    write_tables(documents.drop("page_offsets"), chunks, str(tmp_path / "old"))
    assert load_previous(str(tmp_path / "old"), "opts")["s1"]["document"]["page_offsets"] is None


def test_extract_file_prints_the_evidence_with_the_record(
    server: FakeLMServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from ieflow_cli import main as cli

    document = tmp_path / "po.txt"
    document.write_text("[po-1001] \n" + (PO / GOLD["po-1001"]["file"]).read_text(encoding="utf-8"))
    monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "fake")
    schema = Path(__file__).resolve().parents[1] / "schemas" / "purchase_order.json"
    args = ["extract-file", str(document), "--schema", str(schema), "--model", server.model_name("cli")]
    monkeypatch.setattr(sys, "argv", ["ieflow", *args, "--evidence"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code in (0, None)
    printed = json.loads(capsys.readouterr().out)
    assert printed["record"]["po_number"] == GOLD["po-1001"]["record"]["po_number"]
    rows = {row["path"]: row for row in printed["evidence"]}
    text = document.read_text()
    po = rows["po_number"]
    assert po["method"] == "exact" and text[po["char_start"] : po["char_end"]] == po["matched_text"]
    assert po["page"] == 1 and set(po) >= {"score", "confidence", "confidence_note"}


def test_the_extract_flow_takes_the_review_policy_and_grounding_threshold_as_parameters() -> None:
    from pydantic import ValidationError

    from ieflow_flows.extract import ExtractParams

    given = ExtractParams(
        documents="d",
        program="p",
        output_dir="o",
        review_when_not_found="any",
        review_below_confidence=0.4,
        min_grounded_share=None,
    ).settings()
    assert given.review == ReviewPolicy("any", 0.4) and given.min_grounded_share is None
    default = ExtractParams(documents="d", program="p", output_dir="o").settings()
    assert default.review == ReviewPolicy("required", None) and default.min_grounded_share == 0.8
    with pytest.raises(ValidationError, match="review_below_confidence"):
        ExtractParams(documents="d", program="p", output_dir="o", review_below_confidence=2)


def test_a_crash_before_the_records_part_leaves_no_evidence_or_review_row_twice(
    tmp_path: Path, server: FakeLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exactly once for evidence and review too: their parts are written before the records part
    (the commit), so a shard that crashed between them is redone whole, at the same paths."""
    markers = {"po-1001#1": "", "po-1002#2": "MADE-UP-PO", "po-1003#3": ""}
    docs = make_documents(tmp_path / "docs.parquet", markers)
    conf = settings(tmp_path / "out", server, shard_size=10)
    real_write = batch.finish.storage.write_parquet

    def crash_at_the_commit(frame: pl.DataFrame, url: str) -> None:
        if "/records/" in url:
            raise OSError("disk full")
        real_write(frame, url)

    monkeypatch.setattr(batch.finish.storage, "write_parquet", crash_at_the_commit)
    first = run_batch(docs, program(server), conf)
    assert first["status"] == "incomplete" and first["shards_done"] == 0
    assert list((tmp_path / "out" / "evidence").glob("shard=*/part.parquet"))  # written, not committed
    assert batch.read_dataset(conf.output_dir, "evidence").is_empty()  # a reader sees none of it
    monkeypatch.setattr(batch.finish.storage, "write_parquet", real_write)
    again = run_batch(docs, program(server), conf)
    assert again["status"] == "complete" and again["n_records"] == 3
    evidence = batch.read_dataset(conf.output_dir, "evidence")
    review = batch.read_dataset(conf.output_dir, "review")
    assert not evidence.select("doc_id", "path").is_duplicated().any()
    assert evidence["doc_id"].n_unique() == 3 and review["doc_id"].to_list() == ["po-1002#2"]


def test_the_review_policy_is_part_of_the_runs_identity(tmp_path: Path, server: FakeLMServer) -> None:
    docs = make_documents(tmp_path / "docs.parquet", {"po-1001#1": ""})
    batch.plan_run(docs, program(server), settings(tmp_path / "out", server))
    other = settings(tmp_path / "out", server, review=ReviewPolicy("any"))
    with pytest.raises(batch.RunConflictError, match="review policy"):
        batch.plan_run(docs, program(server), other)


def test_an_outcome_copies_the_traces_confidence_when_the_trace_has_it() -> None:
    """The contract with the confidence branch: Trace.field_confidence and Trace.confidence_note."""
    from ieflow.trace import Trace

    bare = Trace(raw='{"number": "X-1"}', latency_s=0.5, calls=1)
    assert Outcome.from_extraction("d", {"number": "X-1"}, bare).field_confidence == {}
    bare.field_confidence = {"number": 0.42}  # type: ignore[attr-defined]
    bare.confidence_note = "one token below 0.5"  # type: ignore[attr-defined]
    outcome = Outcome.from_extraction("d", {"number": "X-1"}, bare)
    assert outcome.field_confidence == {"number": 0.42} and outcome.confidence_note == "one token below 0.5"
    assert outcome.model_s == 0.5
