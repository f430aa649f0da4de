"""Plan a split run: which labelled documents go to train/val/test, why, and the run's summary.

Kept assignments come first (a previous splits.parquet, then the labels' own `split` column, which
wins); every other document is placed by `assign_splits` (hash, or stratified on `stratify_by`).
Each row records how it was placed (`assigned_by`): labels, previous, content (joined a kept
document with the same content), stratified or hash.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from ieflow import storage
from ieflow.labels import LabelError
from ieflow.splits.assign import assign_splits, find_leaks
from ieflow.splits.inputs import MatchedDocument, SplitInputs

SPLIT_COLUMNS = {"doc_id": pl.String, "split": pl.String, "assigned_by": pl.String, "document_id": pl.String}


@dataclass(frozen=True)
class SplitRow:
    """One row of splits.parquet."""

    doc_id: str
    split: str
    assigned_by: str  # labels | previous | content | stratified | hash
    document_id: str | None  # the ingested document's doc_id (None without documents.parquet)


@dataclass(frozen=True)
class SplitSummary:
    """What a split run did; `to_dict()` is the flow's return value."""

    n_labelled: int
    n_assigned: int
    splits: dict[str, int]  # documents per split
    assigned_by: dict[str, int]  # documents per way of placing them
    label_errors: list[LabelError]
    labels_without_document: list[str]
    matched_by: dict[str, int]
    leaks: dict[str, dict[str, list[str]]]  # content hash -> {split: doc_ids}, for hashes in 2+ splits
    by_stratum: dict[str, dict[str, int]]  # stratum value (JSON) -> documents per split
    seed: int
    ratios: dict[str, float]
    stratify_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SplitPlan:
    rows: list[SplitRow]
    summary: SplitSummary


def plan_splits(
    inputs: SplitInputs,
    *,
    seed: int,
    ratios: dict[str, float],
    stratify_by: str | None,
    respect_existing: bool,
    keep_previous: bool,
) -> SplitPlan:
    """Assign splits to the labelled documents (those with a document, when documents are given)."""
    records, documents = inputs.records, inputs.documents
    doc_ids = [d for d in records if documents is None or d in documents]
    hashes = {d: _document_hash(documents, d) for d in doc_ids}
    strata = _strata(inputs, doc_ids, stratify_by) if stratify_by else None
    existing, origin = _kept_assignments(
        inputs, respect_existing=respect_existing, keep_previous=keep_previous
    )
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

    rows = [SplitRow(d, s, how(d), _document_id(documents, d)) for d, s in assigned.items()]
    summary = SplitSummary(
        n_labelled=len(records),
        n_assigned=len(assigned),
        splits=dict(Counter(assigned.values())),
        assigned_by=dict(Counter(r.assigned_by for r in rows)),
        label_errors=inputs.label_errors,
        labels_without_document=[d for d in records if documents is not None and d not in documents],
        matched_by=inputs.matched_by,
        leaks=find_leaks(assigned, hashes),
        by_stratum=_counts_by_stratum(assigned, strata),
        seed=seed,
        ratios=ratios,
        stratify_by=stratify_by,
    )
    return SplitPlan(rows, summary)


def _document_hash(documents: dict[str, MatchedDocument] | None, doc_id: str) -> str | None:
    document = (documents or {}).get(doc_id)
    return document.sha256 if document else None


def _document_id(documents: dict[str, MatchedDocument] | None, doc_id: str) -> str | None:
    document = (documents or {}).get(doc_id)
    return document.document_id if document else None


def _strata(inputs: SplitInputs, doc_ids: list[str], stratify_by: str) -> dict[str, Any]:
    """{doc_id: its value of `stratify_by`}: a record field, else a documents column."""
    if stratify_by not in set(inputs.schema_fields) | set(inputs.document_columns):
        raise ValueError(f"stratify_by={stratify_by!r} is neither a record field nor a documents column")
    documents = inputs.documents or {}
    return {d: _stratum_value(stratify_by, inputs.records[d], documents.get(d)) for d in doc_ids}


def _stratum_value(key: str, record: dict[str, Any], document: MatchedDocument | None) -> Any:
    if key in record:
        value = record[key]
        return sorted(map(str, value)) if isinstance(value, list) else value
    return document.column(key) if document is not None else None


def _kept_assignments(
    inputs: SplitInputs, *, respect_existing: bool, keep_previous: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """({doc_id: split} to keep, {doc_id: "previous" | "labels"}); the labels' own split wins."""
    existing: dict[str, str] = {}
    origin: dict[str, str] = {}
    if keep_previous:
        for d, split in inputs.previous.items():
            existing[d], origin[d] = split, "previous"
    if respect_existing:
        for d, split in inputs.label_splits.items():
            existing[d], origin[d] = split, "labels"
    return {d: s for d, s in existing.items() if d in inputs.records}, origin


def _counts_by_stratum(assigned: dict[str, str], strata: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    if strata is None:
        return {}
    by_stratum: dict[str, Counter[str]] = {}
    for d, s in assigned.items():
        by_stratum.setdefault(json.dumps(strata[d], default=str), Counter())[s] += 1
    return {k: dict(v) for k, v in by_stratum.items()}


def write_split_rows(rows: list[SplitRow], output: str) -> None:
    """splits.parquet: doc_id, split, assigned_by, document_id (all strings)."""
    storage.write_parquet(pl.DataFrame([asdict(r) for r in rows], schema=SPLIT_COLUMNS), output)
