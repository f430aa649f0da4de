"""Typed records of the label-free path, shared by teacher drafting, review and the optimizers.

A label row in `labels.jsonl` may carry where its record came from and how sure the teacher was:

    {"doc_id": "r1", "file": "documents/r1.pdf", "record": {...},
     "source": "teacher", "agreement": {"total": 1.0, "date": 0.67}}

`source` is one of LABEL_SOURCES (absent means "gold": a file written by a person before ieflow).
`agreement` (teacher rows only) is, per top-level field, the share of teacher samples whose value
agreed with the record's; optimizers may weight a field's score by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

LabelSource = Literal["gold", "teacher", "human"]
LABEL_SOURCES: tuple[str, ...] = ("gold", "teacher", "human")


@dataclass(frozen=True)
class DraftRecord:
    """A teacher's draft of one document's record, with what the checks found.

    `problems` maps a top-level field (or "" for the whole record) to why a person must look at
    it: not schema-valid, a value not found in the document, teacher samples that disagree. A draft
    with no problems can become a label as it is (source "teacher")."""

    doc_id: str
    record: dict[str, Any]
    agreement: dict[str, float] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    file: str | None = None  # the document, relative to the dataset folder, when known

    @property
    def needs_review(self) -> bool:
        return bool(self.problems)


@dataclass(frozen=True)
class LabelRow:
    """One row of a labels file, as written by the label-free path."""

    doc_id: str
    record: dict[str, Any]
    source: LabelSource = "gold"
    agreement: dict[str, float] | None = None
    file: str | None = None
    split: str | None = None

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"doc_id": self.doc_id}
        if self.file is not None:
            row["file"] = self.file
        if self.split is not None:
            row["split"] = self.split
        row["record"] = self.record
        row["source"] = self.source
        if self.agreement is not None:
            row["agreement"] = self.agreement
        return row


def teacher_row(draft: DraftRecord) -> LabelRow:
    """The label row of a draft accepted as it is."""
    return LabelRow(draft.doc_id, draft.record, "teacher", dict(draft.agreement), draft.file)


def human_row(draft: DraftRecord, corrected: dict[str, Any]) -> LabelRow:
    """The label row of a draft a person accepted or corrected: the person's record wins."""
    return LabelRow(draft.doc_id, corrected, "human", None, draft.file)
