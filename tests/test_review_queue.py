"""The review file round trip: drafts out to CSV/JSONL, a person's corrections back in as `human` rows.

Bad rows stay in the edited file with their reason, nothing is appended twice, and the queue keeps
what was not imported."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ieflow.labelfree.drafts import DraftRecord
from ieflow.labelfree.review_queue import (
    append_label_rows,
    export_review,
    import_review,
    read_review_queue,
    write_review_queue,
)
from ieflow.labels import load_labels

SCHEMA = {
    "type": "object",
    "properties": {
        "company": {"type": "string"},
        "total": {"type": ["number", "null"]},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "qty": {"type": "integer"}},
                "required": ["name", "qty"],
            },
        },
    },
    "required": ["company", "total", "items"],
}


def drafts() -> list[DraftRecord]:
    return [
        DraftRecord(
            "r1",
            {"company": "ACME", "total": 12.5, "items": [{"name": "nails", "qty": 3}]},
            {"company": 1.0, "total": 0.33, "items": 1.0},
            {"total": "teacher samples disagree"},
            "documents/r1.txt",
        ),
        DraftRecord("r2", {"company": "Bright", "total": None, "items": []}, {}, {"": "not schema-valid"}),
        DraftRecord("r3", {"company": "Corner", "total": 3, "items": []}, {}, {"company": "not found"}),
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def label_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_queue_round_trips_through_review_jsonl(tmp_path: Path) -> None:
    queue = tmp_path / "review.jsonl"
    write_review_queue(queue, drafts())
    read, errors = read_review_queue(queue)
    assert read == drafts() and errors == []
    queue.write_text(queue.read_text() + "not json\n")
    read, errors = read_review_queue(queue)
    assert len(read) == 3 and [e.line for e in errors] == [4] and "invalid JSON" in errors[0].reason


def test_csv_export_has_one_row_per_document_and_json_text_per_field(tmp_path: Path) -> None:
    rows = read_csv(export_review(drafts(), SCHEMA, tmp_path / "review.csv"))
    assert list(rows[0]) == ["doc_id", "file", "accept", "problems", "company", "total", "items"]
    assert [r["doc_id"] for r in rows] == ["r1", "r2", "r3"]
    first = rows[0]
    assert first["company"] == '"ACME"' and first["total"] == "12.5" and first["accept"] == ""
    assert json.loads(first["items"]) == [{"name": "nails", "qty": 3}]
    assert first["problems"] == "total: teacher samples disagree" and first["file"] == "documents/r1.txt"
    assert rows[1]["problems"] == "record: not schema-valid" and rows[1]["total"] == "null"


def test_csv_import_appends_corrected_accepted_rows_as_human_labels(tmp_path: Path) -> None:
    out = export_review(drafts(), SCHEMA, tmp_path / "review.csv")
    queue = tmp_path / "review.jsonl"
    write_review_queue(queue, drafts())
    queue.write_text(queue.read_text() + "{broken line\n")  # not ours to drop
    rows = read_csv(out)
    rows[0].update(accept="yes", total="13.50")  # corrected value, typed as a number
    rows[1].update(accept="y", company="Bright Books")  # a string typed without JSON quotes
    write_csv(out, rows)  # r3 not accepted yet
    labels = tmp_path / "labels.jsonl"
    result = import_review(out, SCHEMA, labels, queue)
    assert [r.doc_id for r in result.added] == ["r1", "r2"] and result.errors == []
    assert result.not_accepted == 1
    written = label_rows(labels)
    assert written[0] == {
        "doc_id": "r1",
        "file": "documents/r1.txt",
        "record": {"company": "ACME", "total": 13.5, "items": [{"name": "nails", "qty": 3}]},
        "source": "human",
    }
    assert written[1]["record"]["company"] == "Bright Books" and written[1]["source"] == "human"
    records, errors = load_labels(labels, SCHEMA)  # the labels loader takes them
    assert set(records) == {"r1", "r2"} and errors == []
    assert [r["doc_id"] for r in read_csv(out)] == ["r3"]  # what is left for the person
    left, unreadable = read_review_queue(queue)
    assert [d.doc_id for d in left] == ["r3"] and queue.read_text().endswith("{broken line\n")
    assert len(unreadable) == 1


def test_bad_rows_stay_in_the_file_with_their_reason(tmp_path: Path) -> None:
    out = export_review(drafts(), SCHEMA, tmp_path / "review.csv")
    rows = read_csv(out)
    rows[0].update(accept="yes", items='[{"name": "nails"}]')  # qty missing
    rows[1].update(accept="maybe")
    rows[2].update(accept="yes", total="twelve")  # not a number
    write_csv(out, rows)
    labels = tmp_path / "labels.jsonl"
    result = import_review(out, SCHEMA, labels)
    assert result.added == [] and not labels.exists()
    reasons = {e.doc_id: e.reason for e in result.errors}
    assert "'qty' is a required property" in reasons["r1"] and "does not match the schema" in reasons["r1"]
    assert reasons["r2"] == "accept must be yes or no, got 'maybe'"
    assert "'twelve' is not of type" in reasons["r3"]
    kept = read_csv(out)
    assert [r["doc_id"] for r in kept] == ["r1", "r2", "r3"]
    assert kept[0]["items"] == '[{"name": "nails"}]' and kept[0]["error"] == reasons["r1"]
    kept[0]["items"] = '[{"name": "nails", "qty": 3}]'  # the person fixes one and imports again
    write_csv(out, kept)
    again = import_review(out, SCHEMA, labels)
    assert [r.doc_id for r in again.added] == ["r1"] and len(again.errors) == 2
    assert [r["doc_id"] for r in read_csv(out)] == ["r2", "r3"]


def test_doc_ids_already_labelled_are_not_added_twice(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"doc_id": "r1", "record": drafts()[0].record}) + "\n")
    out = export_review(drafts(), SCHEMA, tmp_path / "review.jsonl")
    edited = [{**row, "accept": True} for row in label_rows(out)]
    edited.append({**edited[1]})  # the same document twice in the file
    out.write_text("".join(json.dumps(row) + "\n" for row in edited))
    result = import_review(out, SCHEMA, labels)
    assert [r.doc_id for r in result.added] == ["r2", "r3"]
    reasons = {e.line: e.reason for e in result.errors}
    assert reasons[1] == "already labelled in the labels file; not added again"
    assert reasons[4].startswith("duplicate doc_id (first on line 2)")
    assert [row["doc_id"] for row in label_rows(labels)] == ["r1", "r2", "r3"]
    kept = label_rows(out)
    assert [row["doc_id"] for row in kept] == ["r1", "r2"] and all(row["error"] for row in kept)


def test_append_label_rows_skips_known_doc_ids_and_mends_a_missing_newline(tmp_path: Path) -> None:
    from ieflow.labelfree.drafts import teacher_row

    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"doc_id": "r2", "record": {}}))  # no final newline
    added = append_label_rows(labels, [teacher_row(d) for d in drafts()])
    assert [r.doc_id for r in added] == ["r1", "r3"]
    assert [row["doc_id"] for row in label_rows(labels)] == ["r2", "r1", "r3"]


@pytest.mark.parametrize("name", ["review.txt", "review.xlsx"])
def test_unknown_file_kinds_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"must be \.csv or \.jsonl"):
        export_review(drafts(), SCHEMA, tmp_path / name)


def test_a_csv_without_the_accept_column_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "review.csv"
    out.write_text("doc_id,company\nr1,ACME\n")
    with pytest.raises(ValueError, match="has no accept column"):
        import_review(out, SCHEMA, tmp_path / "labels.jsonl")
    assert out.read_text() == "doc_id,company\nr1,ACME\n"


def test_a_field_named_like_a_csv_column_asks_for_jsonl(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"file": {"type": "string"}}}
    with pytest.raises(ValueError, match="schema field 'file' has the name of a column"):
        export_review(drafts(), schema, tmp_path / "review.csv")
    assert export_review(drafts(), schema, tmp_path / "review.jsonl").exists()
