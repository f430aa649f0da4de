"""The split flow: its plain planning logic in `ieflow.splits` (fast) and one real Prefect run (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from ieflow import storage
from ieflow.splits import (
    MatchedDocument,
    SplitInputs,
    SplitPlan,
    plan_splits,
    read_split_inputs,
    summary_markdown,
    write_split_rows,
)

SCHEMA = {
    "type": "object",
    "properties": {"kind": {"type": ["string", "null"]}, "total": {"type": ["number", "null"]}},
    "required": ["kind", "total"],
}


def write_inputs(root: Path, n: int, *, with_split: bool = False) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.json").write_text(json.dumps(SCHEMA))
    lines = []
    for i in range(n):
        row = {"doc_id": f"d{i}", "record": {"kind": "a" if i % 4 else "b", "total": float(i)}}
        if with_split and i < 5:
            row["split"] = "test"
        lines.append(json.dumps(row))
    lines.append('{"doc_id": "bad", "record": {"kind": 3, "total": null}}')
    (root / "labels.jsonl").write_text("\n".join(lines) + "\n")
    # Documents d0..d(n-1), with d1 a byte-for-byte copy of d0; d(n-1) was never ingested.
    docs = pl.DataFrame(
        {
            "doc_id": [f"d{i}" for i in range(n - 1)],
            "sha256": ["h0" if i == 1 else f"h{i}" for i in range(n - 1)],
        }
    )
    storage.write_parquet(docs, root / "documents.parquet")
    return root / "labels.jsonl", root / "documents.parquet"


def plan(inputs: SplitInputs, **kwargs: object) -> SplitPlan:
    options = {
        "seed": 0,
        "ratios": {"train": 0.6, "val": 0.2, "test": 0.2},
        "stratify_by": None,
        "respect_existing": True,
        "keep_previous": True,
    } | kwargs
    return plan_splits(inputs, **options)  # type: ignore[arg-type]


def test_plan_joins_documents_and_reports_problems(tmp_path: Path) -> None:
    labels, docs = write_inputs(tmp_path, 40)
    planned = plan(read_split_inputs(str(labels), None, str(docs), None))
    splits = {r.doc_id: r.split for r in planned.rows}
    summary = planned.summary
    assert len(splits) == 39 and splits["d0"] == splits["d1"]  # same content, same split
    assert summary.labels_without_document == ["d39"]
    assert summary.label_errors[0].line == 41 and summary.leaks == {}
    report = summary_markdown(summary, "out/splits.parquet")
    assert "| train |" in report and "1 bad label rows" in report and "d39" in report


def test_plan_keeps_previous_and_label_splits(tmp_path: Path) -> None:
    labels, _ = write_inputs(tmp_path / "v1", 30, with_split=True)
    first = plan(read_split_inputs(str(labels), None, None, None), stratify_by="kind")
    assert all(r.split == "test" and r.assigned_by == "labels" for r in first.rows[:5])
    out = tmp_path / "splits.parquet"
    write_split_rows(first.rows, str(out))
    labels2, _ = write_inputs(tmp_path / "v2", 60, with_split=True)
    second = plan(read_split_inputs(str(labels2), None, None, str(out)), stratify_by="kind")
    before = {r.doc_id: r.split for r in first.rows}
    after = {r.doc_id: r.split for r in second.rows}
    assert all(after[d] == s for d, s in before.items())
    assert {r.assigned_by for r in second.rows} == {"labels", "previous", "stratified"}
    with pytest.raises(ValueError, match="neither a record field"):
        plan(read_split_inputs(str(labels), None, None, None), stratify_by="colour")


def test_labels_join_ingested_documents_by_file_name(tmp_path: Path) -> None:
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    record = {"kind": "a", "total": 1.0}
    rows = [
        {"doc_id": "029", "file": "documents/029.txt", "record": record},  # by file
        {"doc_id": "030", "record": record},  # by file stem
        {"doc_id": "aaaa", "record": record},  # by ingest doc_id
        {"doc_id": "031", "file": "documents/031.txt", "record": record},
    ]  # not ingested
    (tmp_path / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    docs = pl.DataFrame(
        {
            "doc_id": ["h029", "h030", "aaaa"],
            "sha256": ["s029", "s030", "saaa"],
            "source_uris": [["/in/029.txt", "/in/copy/029-dup.txt"], ["s3://b/030.txt"], ["/in/x.txt"]],
            "file_name": ["029.txt", "030.txt", "x.txt"],
            "text": ["t", "t", "t"],
        }
    )
    storage.write_parquet(docs, tmp_path / "documents.parquet")
    inputs = read_split_inputs(str(tmp_path), None, str(tmp_path / "documents.parquet"), None)
    assert inputs.matched_by == {"file": 1, "file stem": 1, "doc_id": 1}
    planned = plan(inputs)
    by_id = {r.doc_id: r for r in planned.rows}
    assert by_id["029"].document_id == "h029" and by_id["030"].document_id == "h030"
    assert planned.summary.labels_without_document == ["031"]


@pytest.mark.slow
def test_split_flow_writes_parquet_and_summary(tmp_path: Path, prefect_harness: None) -> None:
    from ieflow_flows.split import SplitParams, split

    labels, docs = write_inputs(tmp_path / "data", 50)
    params = SplitParams(
        labels_path=str(labels.parent),
        documents_path=str(docs),
        output_dir=str(tmp_path / "out"),
        seed=7,
        stratify_by="kind",
    )
    summary = split(params)
    frame = storage.read_parquet(tmp_path / "out" / "splits.parquet")
    assert frame.columns == ["doc_id", "split", "assigned_by", "document_id"] and frame.height == 49
    assert summary["splits"] == dict(frame["split"].value_counts().iter_rows())
    from prefect.artifacts import Artifact

    artifact = Artifact.get("split-summary")
    assert artifact is not None and "# Splits: 49 documents" in str(artifact.data)
    again = split(params)  # re-run: everything is kept from the previous output
    assert again["assigned_by"] == {"previous": 49}
    assert storage.read_parquet(tmp_path / "out" / "splits.parquet").equals(
        frame.with_columns(pl.lit("previous").alias("assigned_by"))
    )


def test_summary_dict_is_the_flow_result_shape(tmp_path: Path) -> None:
    labels, docs = write_inputs(tmp_path, 12)
    summary = plan(read_split_inputs(str(labels), None, str(docs), None)).summary.to_dict()
    assert list(summary) == [
        "n_labelled",
        "n_assigned",
        "splits",
        "assigned_by",
        "label_errors",
        "labels_without_document",
        "matched_by",
        "leaks",
        "by_stratum",
        "seed",
        "ratios",
        "stratify_by",
    ]
    assert summary["label_errors"] == [
        {"line": 13, "doc_id": "bad", "reason": summary["label_errors"][0]["reason"]}
    ]
    assert summary["matched_by"] == {"doc_id": 11} and summary["labels_without_document"] == ["d11"]


def test_a_documents_column_is_a_stratum() -> None:
    document = MatchedDocument("h1", "s1", {"layout": "wide"})
    assert document.column("layout") == "wide" and document.column("sha256") == "s1"
    assert document.column("colour") is None
