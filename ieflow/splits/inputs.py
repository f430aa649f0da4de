"""What a split run reads: the labels, the ingested documents they join to, the previous splits.

Ingest names a document by its content hash, while labels usually name it after its file ('029' for
029.txt), so labels join `documents.parquet` by doc_id, else by the label's `file`, else by the
file stem in the document's source URIs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ieflow import storage
from ieflow.labels import LabelError, load_labels, read_label_column, read_label_splits
from ieflow.schema import load_schema, top_level_fields

HASH_COLUMNS = ("sha256", "content_hash")


@dataclass(frozen=True)
class MatchedDocument:
    """The ingested document a label joined to."""

    document_id: str  # its doc_id in documents.parquet
    sha256: str | None  # its content hash (`sha256`, else `content_hash`)
    columns: dict[str, Any] = field(default_factory=dict)  # the `stratify_by` column, when it has one

    def column(self, name: str) -> Any:
        """A documents column by name (None when absent), for stratifying on it."""
        if name in self.columns:
            return self.columns[name]
        return {"document_id": self.document_id, "sha256": self.sha256}.get(name)


@dataclass(frozen=True)
class SplitInputs:
    """Everything the assignment needs, read once."""

    schema_fields: list[str]
    records: dict[str, dict[str, Any]]  # gold records by label doc_id
    label_errors: list[LabelError]
    label_splits: dict[str, str]  # the labels' own `split` column, where given
    documents: dict[str, MatchedDocument] | None = None  # None: no documents.parquet given
    document_columns: list[str] = field(default_factory=list)
    matched_by: dict[str, int] = field(default_factory=dict)  # how many labels joined each way
    previous: dict[str, str] = field(default_factory=dict)  # the previous splits.parquet


def resolve_label_paths(labels_path: str, schema_path: str | None) -> tuple[Path, Path]:
    """Labels file and schema: a dataset folder means its labels.jsonl and schema.json."""
    labels = Path(labels_path)
    if labels.is_dir():
        labels = labels / "labels.jsonl"
    schema = Path(schema_path) if schema_path else labels.parent / "schema.json"
    if not labels.is_file():
        raise FileNotFoundError(f"labels file not found: {labels}")
    if not schema.is_file():
        raise FileNotFoundError(f"schema not found: {schema} (pass schema_path)")
    return labels, schema


def _stem(uri: str) -> str:
    return Path(str(uri).split("?")[0]).stem


def _document_indexes(
    rows: list[dict[str, Any]],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Document rows by doc_id, by file name and by file stem (first row wins on a clash)."""
    by_id = {str(r["doc_id"]): r for r in rows}
    by_name: dict[str, dict[str, Any]] = {}
    by_stem: dict[str, dict[str, Any]] = {}
    for r in rows:
        uris = [*(r.get("source_uris") or []), r.get("source_uri"), r.get("file_name")]
        for uri in filter(None, uris):
            by_name.setdefault(Path(str(uri)).name, r)
            by_stem.setdefault(_stem(uri), r)
    return by_id, by_name, by_stem


def match_documents(
    doc_ids: list[str], label_files: dict[str, str], frame: pl.DataFrame, extra: str | None
) -> tuple[dict[str, MatchedDocument], dict[str, int]]:
    """Join labels to ingested documents: by doc_id, else by the label's `file`, else by file stem.

    Returns {label doc_id: the document} and how many matched each way; `extra` (a column to
    stratify on) is carried along when the documents have it.
    """
    keep = [
        c
        for c in ("doc_id", *HASH_COLUMNS, "source_uri", "source_uris", "file_name", extra)
        if c in frame.columns
    ]
    rows = frame.select(list(dict.fromkeys(keep))).to_dicts()  # dict.fromkeys: drop a duplicate `extra`
    by_id, by_name, by_stem = _document_indexes(rows)
    matched: dict[str, MatchedDocument] = {}
    how: Counter[str] = Counter()
    for doc_id in doc_ids:
        file_name = Path(label_files[doc_id]).name if doc_id in label_files else None
        for way, row in (
            ("doc_id", by_id.get(doc_id)),
            ("file", by_name.get(file_name or "\0")),
            ("file stem", by_stem.get(doc_id)),
        ):
            if row is not None:
                digest = next((str(row[c]) for c in HASH_COLUMNS if row.get(c)), None)
                columns = {extra: row[extra]} if extra and extra in row else {}
                matched[doc_id] = MatchedDocument(str(row["doc_id"]), digest, columns)
                how[way] += 1
                break
    return matched, dict(how)


def read_previous_splits(path: str | None) -> dict[str, str]:
    """{doc_id: split} of an earlier splits.parquet ({} when there is none)."""
    if not path or not storage.exists(path):
        return {}
    frame = storage.read_parquet(path)
    return {str(d): str(s) for d, s in zip(frame["doc_id"], frame["split"], strict=True) if s}


def read_split_inputs(
    labels_path: str,
    schema_path: str | None,
    documents_path: str | None,
    previous_path: str | None,
    stratify_by: str | None = None,
) -> SplitInputs:
    """Read the labels, join them to `documents_path` (if given) and read `previous_path`."""
    labels_file, schema_file = resolve_label_paths(labels_path, schema_path)
    schema = load_schema(schema_file)
    records, errors = load_labels(labels_file, schema)
    documents: dict[str, MatchedDocument] | None = None
    matched_by: dict[str, int] = {}
    document_columns: list[str] = []
    if documents_path:
        frame = storage.read_parquet(documents_path)
        if "doc_id" not in frame.columns:
            raise ValueError(f"{documents_path} has no doc_id column (columns: {frame.columns})")
        document_columns = list(frame.columns)
        files = read_label_column(labels_file, "file")
        documents, matched_by = match_documents(list(records), files, frame, stratify_by)
    return SplitInputs(
        schema_fields=top_level_fields(schema),
        records=records,
        label_errors=errors,
        label_splits=read_label_splits(labels_file),
        documents=documents,
        document_columns=document_columns,
        matched_by=matched_by,
        previous=read_previous_splits(previous_path),
    )
