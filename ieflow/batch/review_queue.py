"""The review queue: valid records that a person should look at, and why.

A record is valid (it passed the schema and the expectations) yet doubtful when a value it must
have appears nowhere in the document, or the model gave a value a low confidence. Such a record
stays in `records/` (with `needs_review` true: consumers that want only checked data filter on
it, everyone else keeps every valid record) and is also listed in `review/` with its reasons.
Invalid records never reach review: they are in `quarantine/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from ieflow.batch.outcome import Outcome
from ieflow.schema import resolve

# What a review row's `reasons` can hold (the review page filters on these)
REVIEW_REASONS = ("not_found", "low_confidence", "grounding_failed")
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class ReviewPolicy:
    """When a valid record goes to review.

    `when_not_found`: which values that appear nowhere in the document send it there: `required`
    (values of fields the schema requires, the default), `any` value, or `never`.
    `below_confidence`: a value whose model confidence is below this bound sends it there
    (None: confidence is not used; values without a confidence never count)."""

    when_not_found: Literal["required", "any", "never"] = "required"
    below_confidence: float | None = None

    def __post_init__(self) -> None:
        if self.when_not_found not in ("required", "any", "never"):
            raise ValueError(
                f"review when_not_found must be required, any or never, not {self.when_not_found!r}"
            )
        if self.below_confidence is not None and not 0.0 <= self.below_confidence <= 1.0:
            raise ValueError(f"review below_confidence must be within 0-1, not {self.below_confidence}")


@dataclass(frozen=True)
class ReviewIssue:
    """One reason a record is in review: its kind, the leaf it concerns ("" for the whole record)
    and the reason in words."""

    reason: str
    path: str
    detail: str


@dataclass(frozen=True)
class ReviewItem:
    """One record in the review queue and every reason it is there."""

    outcome: Outcome
    issues: tuple[ReviewIssue, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.reason for i in self.issues))

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.path for i in self.issues if i.path))


def review_item(outcome: Outcome, schema: dict[str, Any], policy: ReviewPolicy) -> ReviewItem | None:
    """The record's review entry under `policy`, or None when nothing about it is doubtful."""
    issues: list[ReviewIssue] = []
    if outcome.grounding_error:
        issues.append(ReviewIssue("grounding_failed", "", f"grounding failed: {outcome.grounding_error}"))
    for evidence in outcome.evidence:
        if evidence.method == "not_found" and _counts_when_missing(schema, evidence.path, policy):
            sentence = f"{evidence.path}: {evidence.value!r} appears nowhere in the document"
            issues.append(ReviewIssue("not_found", evidence.path, sentence))
        confidence = outcome.field_confidence.get(evidence.path)
        bound = policy.below_confidence
        if bound is not None and confidence is not None and confidence < bound:
            sentence = f"{evidence.path}: confidence {confidence:.2f} below {bound:.2f}"
            issues.append(ReviewIssue("low_confidence", evidence.path, sentence))
    return ReviewItem(outcome, tuple(issues)) if issues else None


def _counts_when_missing(schema: dict[str, Any], path: str, policy: ReviewPolicy) -> bool:
    if policy.when_not_found == "never":
        return False
    return policy.when_not_found == "any" or is_required(schema, path)


def is_required(schema: dict[str, Any], path: str) -> bool:
    """Whether every key on the leaf's path is required by its object (`lines[0].amount`: `lines`
    required by the record and `amount` by a line); an array's items count as their array."""
    node = resolve(schema, schema)
    for key, index in _SEGMENT.findall(path):
        if index:
            items = node.get("items")
            node = resolve(schema, items) if isinstance(items, dict) else {}
            continue
        if key not in (node.get("required") or []):
            return False
        sub = (node.get("properties") or {}).get(key)
        node = resolve(schema, sub) if isinstance(sub, dict) else {}
    return True
