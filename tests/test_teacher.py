"""Teacher drafting with a scripted teacher: self-consistency agreement per field, the checks that
send a draft to review, and `ieflow label` writing labels a corpus loads as teacher labels."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from ieflow.datasets import Example
from ieflow.labelfree.labelling import DRAFTED_FILE, LABELS_FILE, REVIEW_FILE, label_documents
from ieflow.labelfree.teacher import DISAGREE, NOT_FOUND, TeacherConfig, check_draft, draft_labels
from ieflow.labels import load_labels
from ieflow.program import ExtractionProgram
from ieflow_testing.fake_server import FakeLMServer
from tests.support.receipts import SCHEMA
from tests.support.scripted_lm import ScriptedLM

CONFIG = TeacherConfig(model="scripted/lm")


def receipt(doc_id: str, shop: str, day: int, month: int, total: str, *, note: str = "") -> Example:
    text = f"{shop}\nDate: {day:02d}/{month:02d}/2021\nTOTAL: {total}\n{note}"
    return Example(doc_id, text, {}, content_hash=f"hash-{doc_id}")


def read_receipt(document: str, seed: int | None) -> dict[str, Any]:
    """A teacher that reads the receipt right, except where the document asks for trouble:
    WOBBLY (a different total per seed), TWO-OF-THREE (seed 2 reads another total),
    SHOUTY (seed 1 writes the shop in capitals: the same value to the scorer), INVENTED (a shop
    that is not in the text)."""
    lines = document.removeprefix("Document:").strip().splitlines()
    day, month = re.search(r"(\d\d)/(\d\d)/2021", document).groups()
    total = float(re.search(r"TOTAL: ([\d.]+)", document).group(1))
    shop = lines[0]
    if "WOBBLY" in document:
        total += seed or 0
    if "TWO-OF-THREE" in document and seed == 2:
        total += 1
    if "SHOUTY" in document and seed == 1:
        shop = f"  {shop.upper()} "
    if "INVENTED" in document:
        shop = "Imaginary Traders Ltd"
    return {"company": shop, "date": f"2021-{month}-{day}", "total": total}


def teacher_script(messages: list[dict], params: dict) -> str:
    document = next(m["content"] for m in messages if m["content"].startswith("Document:"))
    if "SILENT" in document:
        return "I would rather not."
    return json.dumps(read_receipt(document, params.get("seed")))


def test_unanimous_samples_agree_fully_and_raise_no_problem() -> None:
    lm = ScriptedLM(teacher_script)
    (draft,) = draft_labels([receipt("r1", "Acme Hardware", 3, 7, "12.50")], SCHEMA, CONFIG, lm)
    assert draft.record == {"company": "Acme Hardware", "date": "2021-07-03", "total": 12.5}
    assert draft.agreement == {"company": 1.0, "date": 1.0, "total": 1.0}
    assert draft.problems == {} and not draft.needs_review


def test_each_sample_is_its_own_request_at_the_teachers_temperature() -> None:
    seen: list[tuple[Any, Any]] = []

    def script(messages: list[dict], params: dict) -> str:
        seen.append((params.get("seed"), params.get("temperature")))
        return teacher_script(messages, params)

    draft_labels(
        [receipt("r1", "Acme Hardware", 3, 7, "12.50")],
        SCHEMA,
        TeacherConfig("scripted/lm", 4),
        ScriptedLM(script),
    )
    assert sorted(seen) == [(0, 0.7), (1, 0.7), (2, 0.7), (3, 0.7)]


def test_a_field_the_samples_disagree_on_is_a_problem() -> None:
    lm = ScriptedLM(teacher_script)
    (draft,) = draft_labels([receipt("r2", "Bright Books", 4, 5, "10.00", note="WOBBLY")], SCHEMA, CONFIG, lm)
    assert draft.agreement["total"] == pytest.approx(1 / 3, abs=1e-3)
    assert draft.agreement["company"] == 1.0 and draft.record["total"] == 10.0  # the first sample's
    assert set(draft.problems) == {"total"} and draft.problems["total"].startswith(DISAGREE)


def test_two_samples_of_three_meet_the_default_agreement() -> None:
    lm = ScriptedLM(teacher_script)
    (draft,) = draft_labels(
        [receipt("r3", "Corner Cafe", 4, 5, "10.00", note="TWO-OF-THREE")], SCHEMA, CONFIG, lm
    )
    assert draft.agreement["total"] == pytest.approx(0.6667) and draft.record["total"] == 10.0
    assert draft.problems == {}
    stricter = TeacherConfig("scripted/lm", min_agreement=0.9)
    (strict,) = draft_labels(
        [receipt("r3", "Corner Cafe", 4, 5, "10.00", note="TWO-OF-THREE")], SCHEMA, stricter, lm
    )
    assert set(strict.problems) == {"total"}


def test_values_the_gold_scorer_counts_equal_agree() -> None:
    lm = ScriptedLM(teacher_script)
    (draft,) = draft_labels([receipt("r4", "Delta Foods", 1, 2, "3.00", note="SHOUTY")], SCHEMA, CONFIG, lm)
    assert draft.agreement["company"] == 1.0 and draft.record["company"] == "Delta Foods"


def test_a_value_not_in_the_document_is_a_problem() -> None:
    lm = ScriptedLM(teacher_script)
    (draft,) = draft_labels(
        [receipt("r5", "Echo Pharmacy", 1, 2, "3.00", note="INVENTED")], SCHEMA, CONFIG, lm
    )
    assert draft.agreement["company"] == 1.0  # sure, and still wrong: grounding catches it
    assert set(draft.problems) == {"company"} and draft.problems["company"].startswith(NOT_FOUND)


def test_a_record_that_breaks_the_schema_is_a_problem() -> None:
    program = ExtractionProgram.from_schema(SCHEMA, model="scripted/lm")
    text = "Fern Florist\nDate: 01/02/2021\nTOTAL: 3.00"
    record = {"company": "Fern Florist", "date": "2021-02-01", "total": "three"}
    problems = check_draft(record, {"company": 1.0, "date": 1.0, "total": 1.0}, text, program, 0.67)
    assert problems["total"].startswith("not schema-valid: 'three' is not of type")
    assert set(problems) == {"total"}


def test_a_document_every_sample_failed_on_goes_to_review_with_the_reason() -> None:
    lm = ScriptedLM(teacher_script)
    (draft,) = draft_labels([receipt("r6", "Fern Florist", 1, 2, "3.00", note="SILENT")], SCHEMA, CONFIG, lm)
    assert draft.record == {"company": None, "date": None, "total": None}
    assert list(draft.problems) == [""] and draft.problems[""].startswith("every teacher sample failed")


def corpus() -> list[Example]:
    return [
        receipt("r1", "Acme Hardware", 3, 7, "12.50"),
        receipt("r2", "Bright Books", 4, 5, "10.00", note="WOBBLY"),
        receipt("r3", "Corner Cafe", 6, 8, "7.25"),
    ]


def test_label_documents_writes_teacher_labels_and_a_review_queue_and_resumes(tmp_path: Path) -> None:
    lm = ScriptedLM(teacher_script)
    summary = label_documents(corpus(), SCHEMA, CONFIG, tmp_path, lm)
    assert (summary.accepted, summary.to_review, summary.skipped) == (2, 1, 0)
    records, errors = load_labels(tmp_path / LABELS_FILE, SCHEMA)
    assert errors == [] and set(records) == {"r1", "r3"}
    rows = [json.loads(line) for line in (tmp_path / LABELS_FILE).read_text().splitlines()]
    assert {row["source"] for row in rows} == {"teacher"}
    assert rows[0]["agreement"] == {"company": 1.0, "date": 1.0, "total": 1.0}
    (review,) = [json.loads(line) for line in (tmp_path / REVIEW_FILE).read_text().splitlines()]
    assert review["doc_id"] == "r2" and set(review["problems"]) == {"total"}
    assert set(review) == {"doc_id", "file", "record", "agreement", "problems"}
    calls = len(lm.calls)
    again = label_documents(corpus(), SCHEMA, CONFIG, tmp_path, lm)
    assert (again.accepted, again.to_review, again.skipped) == (0, 0, 3) and len(lm.calls) == calls
    assert len((tmp_path / DRAFTED_FILE).read_text().splitlines()) == 3


def fake_teacher(body: dict[str, Any]) -> str:
    document = next(m["content"] for m in body["messages"] if str(m["content"]).startswith("Document:"))
    return json.dumps(read_receipt(document, body.get("seed")))


def test_ieflow_label_writes_files_that_load_as_teacher_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ieflow_cli import main as cli

    docs = tmp_path / "docs"
    docs.mkdir()
    for example in corpus():
        (docs / f"{example.doc_id}.txt").write_text(example.text)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    out = tmp_path / "labels"
    with FakeLMServer(answer=fake_teacher) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "fake")
        monkeypatch.setenv("IEFLOW_LM_CACHE", str(tmp_path / "cache"))
        args = ["label", str(docs), "--schema", str(schema), "--out", str(out)]
        args += ["--teacher", server.model_name("teacher"), "--api-base", server.base_url]
        monkeypatch.setattr(sys, "argv", ["ieflow", *args])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
    assert exit_info.value.code in (0, None)
    printed = json.loads(capsys.readouterr().out)
    assert (printed["accepted"], printed["to_review"]) == (2, 1)
    records, errors = load_labels(out / LABELS_FILE, schema)
    assert errors == [] and len(records) == 2
    rows = [json.loads(line) for line in (out / LABELS_FILE).read_text().splitlines()]
    assert {row["source"] for row in rows} == {"teacher"}
    assert sorted(row["file"] for row in rows) == ["r1.txt", "r3.txt"]
    (review,) = [json.loads(line) for line in (out / REVIEW_FILE).read_text().splitlines()]
    assert review["file"] == "r2.txt" and set(review["problems"]) == {"total"}


def test_ieflow_label_on_an_empty_folder_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ieflow_cli import main as cli

    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    (tmp_path / "empty").mkdir()
    args = ["label", str(tmp_path / "empty"), "--schema", str(schema), "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", ["ieflow", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: no readable documents in")
