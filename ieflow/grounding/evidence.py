"""Evidence: where in the document one extracted value came from, and how it was found."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

# How a value was found in the text, from most to least certain:
#   exact       the value's own characters are in the text
#   normalized  the same words in the same order (case, spacing, punctuation aside), or the same
#               number or date in another notation ("1,234.50" for 1234.5, "07/01/18" for 2018-01-07)
#   fuzzy       a close match (OCR slips, a dropped word); `score` says how close (0-1)
#   derived     not a copy of the text: the schema marks the field as computed, or a yes/no answer
#   not_found   nowhere in the text: invented, or copied from somewhere else (a demo, another document)
#   skipped     not looked for: the document's grounding budget ran out (counted, never silent)
Method = Literal["exact", "normalized", "fuzzy", "derived", "not_found", "skipped"]
METHODS: tuple[str, ...] = ("exact", "normalized", "fuzzy", "derived", "not_found", "skipped")
GROUNDED: frozenset[str] = frozenset({"exact", "normalized", "fuzzy"})


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of the ingested text: `text[char_start:char_end]`, on 1-based `page`."""

    char_start: int
    char_end: int
    score: float = 1.0


@dataclass(frozen=True, slots=True)
class Evidence:
    """One leaf value of a record and its evidence.

    `path` names the leaf as validation errors do: `total`, `address.city`, `lines[0].amount`,
    `parties[2]`. Offsets index the document text that ingest stored (documents.parquet `text`),
    so `text[char_start:char_end] == matched_text`. Unlocated values have null offsets."""

    path: str
    value: str
    method: Method
    score: float
    char_start: int | None = None
    char_end: int | None = None
    page: int | None = None
    matched_text: str | None = None

    @property
    def grounded(self) -> bool:
        return self.method in GROUNDED

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


EVIDENCE_COLUMNS = {
    "path": "String",
    "value": "String",
    "method": "String",
    "score": "Float64",
    "char_start": "Int64",
    "char_end": "Int64",
    "page": "Int32",
    "matched_text": "String",
}
