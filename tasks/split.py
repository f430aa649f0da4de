"""Prefect tasks of the split flow: read labels and documents, assign splits, write them.

The work is a few thousand small rows, so the flow is three tasks, not one per document. None of them
is cached: their inputs are files whose contents can change under the same path, and recomputing is
cheaper than hashing them. The plain functions (`plan_splits`, `summary_markdown`) are the logic;
the tasks only wrap them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from ieflow import storage
from ieflow.datasets import assign_splits, find_leaks, load_labels, read_label_column, read_label_splits
from ieflow.schema import load_schema, top_level_fields

HASH_COLUMNS = ("sha256", "content_hash")


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


def match_documents(
    doc_ids: list[str], label_files: dict[str, str], frame: pl.DataFrame, extra: str | None
) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Join labels to ingested documents: by doc_id, else by the label's `file`, else by file stem.

    Ingest names a document by its content hash, while labels usually name it after its file
    ('029' for 029.txt), so the file names in `source_uris` are the usual bridge.
    Returns {label doc_id: {document_id, sha256, <extra>}} and how many matched each way.
    """
    keep = [
        c
        for c in ("doc_id", *HASH_COLUMNS, "source_uri", "source_uris", "file_name", extra)
        if c in frame.columns
    ]
    rows = frame.select(list(dict.fromkeys(keep))).to_dicts()  # dict.fromkeys: drop a duplicate `extra`
    by_id = {str(r["doc_id"]): r for r in rows}
    by_name: dict[str, dict[str, Any]] = {}
    by_stem: dict[str, dict[str, Any]] = {}
    for r in rows:
        uris = [*(r.get("source_uris") or []), r.get("source_uri"), r.get("file_name")]
        for uri in filter(None, uris):
            by_name.setdefault(Path(str(uri)).name, r)
            by_stem.setdefault(_stem(uri), r)
    matched: dict[str, dict[str, Any]] = {}
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
                matched[doc_id] = {"document_id": str(row["doc_id"]), "sha256": digest}
                if extra and extra in row:
                    matched[doc_id][extra] = row[extra]
                how[way] += 1
                break
    return matched, dict(how)


def read_inputs(
    labels_path: str,
    schema_path: str | None,
    documents_path: str | None,
    previous_path: str | None,
    stratify_by: str | None = None,
) -> dict[str, Any]:
    """Everything the assignment needs, as plain JSON-able data."""
    labels_file, schema_file = resolve_label_paths(labels_path, schema_path)
    schema = load_schema(schema_file)
    records, errors = load_labels(labels_file, schema)
    documents: dict[str, dict[str, Any]] | None = None
    matched_by: dict[str, int] = {}
    document_columns: list[str] = []
    if documents_path:
        frame = storage.read_parquet(documents_path)
        if "doc_id" not in frame.columns:
            raise ValueError(f"{documents_path} has no doc_id column (columns: {frame.columns})")
        document_columns = list(frame.columns)
        files = read_label_column(labels_file, "file")
        documents, matched_by = match_documents(list(records), files, frame, stratify_by)
    previous: dict[str, str] = {}
    if previous_path and storage.exists(previous_path):
        frame = storage.read_parquet(previous_path)
        previous = {str(d): str(s) for d, s in zip(frame["doc_id"], frame["split"], strict=True) if s}
    return {
        "schema_fields": top_level_fields(schema),
        "records": records,
        "label_errors": [{"line": e.line, "doc_id": e.doc_id, "reason": e.reason} for e in errors],
        "label_splits": read_label_splits(labels_file),
        "documents": documents,
        "document_columns": document_columns,
        "matched_by": matched_by,
        "previous": previous,
    }


def _stratum_value(key: str, record: dict[str, Any], document: dict[str, Any] | None) -> Any:
    if key in record:
        value = record[key]
        return sorted(map(str, value)) if isinstance(value, list) else value
    if document is not None and key in document:
        return document[key]
    return None


def plan_splits(
    inputs: dict[str, Any],
    *,
    seed: int,
    ratios: dict[str, float],
    stratify_by: str | None,
    respect_existing: bool,
    keep_previous: bool,
) -> dict[str, Any]:
    """Assign splits to the labelled documents; returns the rows and a summary."""
    records: dict[str, dict[str, Any]] = inputs["records"]
    documents: dict[str, dict[str, Any]] | None = inputs["documents"]
    doc_ids = [d for d in records if documents is None or d in documents]
    without_document = [d for d in records if documents is not None and d not in documents]
    hashes = {d: ((documents or {}).get(d) or {}).get("sha256") for d in doc_ids}
    if stratify_by:
        known = set(inputs["schema_fields"]) | set(inputs.get("document_columns", []))
        if stratify_by not in known:
            raise ValueError(f"stratify_by={stratify_by!r} is neither a record field nor a documents column")
    strata = (
        {d: _stratum_value(stratify_by, records[d], (documents or {}).get(d)) for d in doc_ids}
        if stratify_by
        else None
    )
    existing: dict[str, str] = {}
    origin: dict[str, str] = {}
    if keep_previous:
        for d, split in inputs["previous"].items():
            existing[d], origin[d] = split, "previous"
    if respect_existing:
        for d, split in inputs["label_splits"].items():
            existing[d], origin[d] = split, "labels"
    existing = {d: s for d, s in existing.items() if d in records}
    assigned = assign_splits(
        doc_ids, seed=seed, ratios=ratios, content_hashes=hashes, strata=strata, existing=existing
    )
    kept_hashes = {hashes[d] for d in existing if hashes.get(d)}

    def how(doc_id: str) -> str:
        if doc_id in existing:
            return origin[doc_id]
        if hashes.get(doc_id) in kept_hashes:
            return "content"  # joined the split of an existing document with the same content
        return "stratified" if strata is not None else "hash"

    rows = [
        {
            "doc_id": d,
            "split": s,
            "assigned_by": how(d),
            "document_id": ((documents or {}).get(d) or {}).get("document_id"),
        }
        for d, s in assigned.items()
    ]
    leaks = find_leaks(assigned, hashes)
    by_stratum: dict[str, Counter[str]] = {}
    if strata is not None:
        for d, s in assigned.items():
            by_stratum.setdefault(json.dumps(strata[d], default=str), Counter())[s] += 1
    summary = {
        "n_labelled": len(records),
        "n_assigned": len(assigned),
        "splits": dict(Counter(assigned.values())),
        "assigned_by": dict(Counter(r["assigned_by"] for r in rows)),
        "label_errors": inputs["label_errors"],
        "labels_without_document": without_document,
        "matched_by": inputs.get("matched_by", {}),
        "leaks": leaks,
        "by_stratum": {k: dict(v) for k, v in by_stratum.items()},
        "seed": seed,
        "ratios": ratios,
        "stratify_by": stratify_by,
    }
    return {"rows": rows, "summary": summary}


def summary_markdown(summary: dict[str, Any], output: str) -> str:
    """The markdown report of a split run."""
    lines = [f"# Splits: {summary['n_assigned']} documents", "", f"Written to `{output}`.", ""]
    lines += ["| split | documents |", "|---|---|"]
    lines += [f"| {name} | {count} |" for name, count in sorted(summary["splits"].items())]
    lines += [
        "",
        f"Seed {summary['seed']}, ratios {summary['ratios']}; assigned by: {summary['assigned_by']}.",
    ]
    if summary["by_stratum"]:
        names = sorted({s for counts in summary["by_stratum"].values() for s in counts})
        lines += [
            "",
            f"## By {summary['stratify_by']}",
            "",
            "| value | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for value, counts in sorted(summary["by_stratum"].items()):
            lines.append(f"| {value[:60]} | " + " | ".join(str(counts.get(n, 0)) for n in names) + " |")
    if summary["leaks"]:
        lines += [
            "",
            f"**{len(summary['leaks'])} content hashes sit in more than one split** (kept as given).",
        ]
    if summary["matched_by"]:
        lines += ["", f"Labels joined to documents by: {summary['matched_by']}."]
    if summary["labels_without_document"]:
        missing = summary["labels_without_document"]
        lines += ["", f"{len(missing)} labels have no document: {', '.join(missing[:10])}"]
    if summary["label_errors"]:
        lines += ["", f"## {len(summary['label_errors'])} bad label rows", ""]
        lines += [
            f"- line {e['line']} ({e['doc_id'] or '?'}): {e['reason']}" for e in summary["label_errors"][:20]
        ]
    return "\n".join(lines) + "\n"


def write_split_rows(rows: list[dict[str, Any]], output: str) -> None:
    schema = {"doc_id": pl.String, "split": pl.String, "assigned_by": pl.String, "document_id": pl.String}
    storage.write_parquet(pl.DataFrame(rows, schema=schema), output)


load_split_inputs = task(read_inputs, name="load-split-inputs", cache_policy=NO_CACHE)
compute_splits = task(plan_splits, name="compute-splits", cache_policy=NO_CACHE)
write_splits = task(write_split_rows, name="write-splits", cache_policy=NO_CACHE)
