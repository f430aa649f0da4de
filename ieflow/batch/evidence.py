"""Evidence in a batch: grounding each ok record in its shard, and the `evidence` and `review`
datasets a shard commits with its records.

Evidence is its own dataset, one row per (doc_id, leaf path), rather than struct columns beside
each field in records: a field of any depth (`lines[3].amount`) is one row with the same columns,
so "share of grounded values per field" is a plain column check (great-expectations, SQL, polars)
and a reviewer's filter is a plain filter; records keep the schema's shape and stay small.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from ieflow.batch.outcome import Outcome, OutcomeKind
from ieflow.batch.review_queue import ReviewItem
from ieflow.grounding import DocumentIndex, GroundingLimits, ground_record, schema_path
from ieflow.program import ExtractionProgram

log = logging.getLogger(__name__)

EVIDENCE_FRAME_COLUMNS = {
    "doc_id": pl.String,
    "program_hash": pl.String,
    "field": pl.String,  # the program's field name: `lines[].amount` for `lines[3].amount`
    "path": pl.String,
    "value": pl.String,
    "method": pl.String,
    "score": pl.Float64,
    "char_start": pl.Int64,
    "char_end": pl.Int64,
    "page": pl.Int32,
    "matched_text": pl.String,
    "confidence": pl.Float64,
    "confidence_note": pl.String,
}
REVIEW_FRAME_COLUMNS = {
    "doc_id": pl.String,
    "program_hash": pl.String,
    "source_uri": pl.String,
    "file_name": pl.String,
    "reasons": pl.List(pl.String),  # kinds: not_found, low_confidence, grounding_failed
    "fields": pl.List(pl.String),  # the leaf paths concerned
    # every reason: its kind, its leaf ("" for the whole record) and the reason in words
    "issues": pl.List(pl.Struct({"reason": pl.String, "path": pl.String, "detail": pl.String})),
}


@dataclass(frozen=True)
class PendingDocument:
    """A shard's document still to extract: its text and where it came from."""

    doc_id: str
    text: str
    page_offsets: list[int] | None = None  # None: a documents table from before pages were kept
    source_uri: str | None = None
    file_name: str | None = None


def ground_outcome(
    outcome: Outcome, document: PendingDocument, program: ExtractionProgram, limits: GroundingLimits
) -> Outcome:
    """The outcome with its record's evidence (ok outcomes only). A grounding failure keeps the
    record: it has no evidence, and the reason sends it to review."""
    if outcome.kind is not OutcomeKind.OK:
        return outcome
    try:
        index = DocumentIndex(document.text, document.page_offsets)
        found = ground_record(outcome.value, index, program.schema, program.formats, limits)
    except Exception as exc:  # a grounding bug must not lose a valid record
        log.warning("grounding %s failed: %s: %s", outcome.doc_id, type(exc).__name__, exc)
        return replace(outcome, grounding_error=f"{type(exc).__name__}: {exc}")
    return replace(outcome, evidence=tuple(found))


def evidence_frame(records: list[Outcome], program: ExtractionProgram) -> pl.DataFrame:
    """One row per leaf value of each record: its evidence and the model's confidence in it."""
    data = [
        {
            "doc_id": o.doc_id,
            "program_hash": program.hash,
            "field": schema_path(e.path),
            **e.to_row(),
            "confidence": o.field_confidence.get(e.path),
            "confidence_note": o.confidence_note,
        }
        for o in records
        for e in o.evidence
    ]
    return pl.DataFrame(data, schema=EVIDENCE_FRAME_COLUMNS, orient="row" if not data else None)


def review_frame(items: list[ReviewItem], program: ExtractionProgram) -> pl.DataFrame:
    data = [
        {
            "doc_id": item.outcome.doc_id,
            "program_hash": program.hash,
            "source_uri": item.outcome.source_uri,
            "file_name": item.outcome.file_name,
            "reasons": list(item.reasons),
            "fields": list(item.fields),
            "issues": [{"reason": i.reason, "path": i.path, "detail": i.detail} for i in item.issues],
        }
        for item in items
    ]
    return pl.DataFrame(data, schema=REVIEW_FRAME_COLUMNS, orient="row" if not data else None)


def pending_document(row: dict[str, Any]) -> PendingDocument:
    """A documents.parquet row as a `PendingDocument` (columns an old table lacks are None)."""
    return PendingDocument(
        row["doc_id"], row["text"], row.get("page_offsets"), row.get("source_uri"), row.get("file_name")
    )
