"""A run's review page (`review.html` beside its datasets): the review queue first, then the other
records, each document's text with its evidence (rendered by `ieflow.review_page`)."""

from __future__ import annotations

from typing import Any

import polars as pl

from ieflow import storage
from ieflow.batch.plan import MANIFEST, read_dataset, read_documents
from ieflow.review_page import ShownDocument, ShownValue, render_review_page

REVIEW_PAGE = "review.html"
MAX_DOCUMENTS = 200  # documents on one page: the review queue first; a page must stay openable


def write_review_page(output_dir: str, max_documents: int = MAX_DOCUMENTS) -> str | None:
    """Write the run's review page; returns its URL, or None when the run has no records yet."""
    manifest = storage.read_json(storage.join(output_dir, MANIFEST))
    records = read_dataset(output_dir, "records", ["doc_id", "file_name"])
    if records.is_empty():
        return None
    review = read_dataset(output_dir, "review")
    queued = sorted(review["doc_id"].to_list()) if not review.is_empty() else []
    others = sorted(set(records["doc_id"].to_list()) - set(queued))
    shown = (queued + others)[:max_documents]
    texts = _texts(manifest["documents"], shown)
    values = _values(read_dataset(output_dir, "evidence", doc_ids=shown), shown)
    reasons = {row["doc_id"]: row for row in review.iter_rows(named=True)} if queued else {}
    names = dict(zip(records["doc_id"].to_list(), records["file_name"].to_list(), strict=True))
    documents = [
        _shown(doc_id, texts.get(doc_id, ""), names.get(doc_id), values.get(doc_id, []), reasons.get(doc_id))
        for doc_id in shown
    ]
    title = f"Review: run {manifest['run_id']} (program {manifest['program_hash']})"
    url = storage.join(output_dir, REVIEW_PAGE)
    page = render_review_page(documents, title, len(records))
    storage.write_bytes_atomic(url, page.encode("utf-8"))
    return url


def _texts(documents: str, doc_ids: list[str]) -> dict[str, str]:
    try:
        rows = read_documents(documents, doc_ids)
    except (FileNotFoundError, OSError, ValueError):  # moved since the run: values without text
        return {}
    return {row["doc_id"]: row.get("text") or "" for row in rows.iter_rows(named=True)}


def _values(evidence: pl.DataFrame, doc_ids: list[str]) -> dict[str, list[ShownValue]]:
    if evidence.is_empty():
        return {}
    out: dict[str, list[ShownValue]] = {}
    for row in evidence.filter(pl.col("doc_id").is_in(doc_ids)).iter_rows(named=True):
        out.setdefault(row["doc_id"], []).append(
            ShownValue(
                row["field"],
                row["path"],
                row["value"],
                row["method"],
                row["score"],
                row["char_start"],
                row["char_end"],
                row["page"],
                row["confidence"],
            )
        )
    return out


def _shown(
    doc_id: str, text: str, file_name: str | None, values: list[ShownValue], review: dict[str, Any] | None
) -> ShownDocument:
    if review is None:
        return ShownDocument(doc_id, text, file_name, values)
    issues = [(i["reason"], i["path"]) for i in review["issues"]]
    details = [i["detail"] for i in review["issues"]]
    return ShownDocument(doc_id, text, file_name, values, review["reasons"], issues, details)
