"""Drafting labels for a folder of documents, resumably: `ieflow label`'s work without a person.

    summary = label_documents(examples, schema, TeacherConfig(), "labels/")

writes, one document at a time, so an interrupted run loses at most the document in flight:
- `labels.jsonl`: a teacher row (`LabelRow.to_json`, source "teacher") per draft without problems,
- `review.jsonl`: per draft that needs a person, {doc_id, file, record, agreement, problems},
- `drafted.jsonl`: the content hash of every document drafted; a re-run skips those (and any
  doc_id already in one of the two files), and model answers come from the cache anyway.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ieflow.datasets import Example
from ieflow.labelfree.drafts import DraftRecord, teacher_row
from ieflow.labelfree.teacher import TeacherConfig, draft_labels
from ieflow.lm import LMClient

LABELS_FILE, REVIEW_FILE, DRAFTED_FILE = "labels.jsonl", "review.jsonl", "drafted.jsonl"


@dataclass(frozen=True)
class LabelRunSummary:
    accepted: int  # drafted now, written to labels.jsonl
    to_review: int  # drafted now, written to review.jsonl
    skipped: int  # drafted by an earlier run
    out_dir: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "to_review": self.to_review,
            "already_drafted": self.skipped,
            "labels": str(Path(self.out_dir) / LABELS_FILE),
            "review": str(Path(self.out_dir) / REVIEW_FILE),
        }


def review_row(draft: DraftRecord) -> dict[str, Any]:
    """A review.jsonl row: what a person needs to accept or correct the draft."""
    return {
        "doc_id": draft.doc_id,
        "file": draft.file,
        "record": draft.record,
        "agreement": draft.agreement,
        "problems": draft.problems,
    }


def _done(out: Path) -> tuple[set[str], set[str]]:
    """(content hashes, doc_ids) an earlier run drafted."""
    hashes: set[str] = set()
    doc_ids: set[str] = set()
    for name in (LABELS_FILE, REVIEW_FILE, DRAFTED_FILE):
        path = out / name
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interrupted write: that document is drafted again
            if isinstance(row, dict):
                hashes.add(str(row.get("sha256") or ""))
                doc_ids.add(str(row.get("doc_id") or ""))
    return hashes - {""}, doc_ids - {""}


def _append(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def label_documents(
    examples: Sequence[Example],
    schema: dict[str, Any],
    config: TeacherConfig,
    out_dir: str | Path,
    lm: LMClient | None = None,
) -> LabelRunSummary:
    """Draft every example not drafted before and write its row (see the module's docstring)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hashes, doc_ids = _done(out)
    todo = [ex for ex in examples if ex.content_hash not in hashes and ex.doc_id not in doc_ids]
    accepted = to_review = 0
    for example in todo:
        (draft,) = draft_labels([example], schema, config, lm)
        if draft.needs_review:
            _append(out / REVIEW_FILE, review_row(draft))
            to_review += 1
        else:
            _append(out / LABELS_FILE, teacher_row(draft).to_json())
            accepted += 1
        _append(out / DRAFTED_FILE, {"doc_id": draft.doc_id, "sha256": example.content_hash})
    return LabelRunSummary(accepted, to_review, len(examples) - len(todo), str(out))
