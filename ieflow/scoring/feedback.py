"""Feedback sentences: one per wrong field, written for a small LM that has to fix its prompt.

Every sentence names the field, shows the predicted and the expected value (truncated), says the
kind of error and, where the comparator could tell, the fix:
`date: predicted '03/01/2018' but expected '2018-03-01' (format: dates must be ISO YYYY-MM-DD).`
"""

from __future__ import annotations

import json
import math
from typing import Any

from ieflow.scoring.compare import EXTRA, MISSING

MAX_VALUE_CHARS = 80

# What to say when the comparator had nothing more specific.
DEFAULT_HINTS = {
    MISSING: "the value is given in the document; extract it",
    EXTRA: "the document does not give this field; answer null when it is absent",
}


def show(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """A value as the model would write it in JSON-ish form, cut to about `limit` characters."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value):
        text = repr(value)
    elif isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, str):
        flat = " ".join(value.split()) if "\n" in value or "\t" in value else value
        body = flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
        return f"'{body}'"
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
        text = text.replace('"', "'")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def kind_label(kind: str) -> str:
    return kind.replace("_", " ")


def sentence(path: str, predicted: Any, expected: Any, kind: str, hint: str | None = None) -> str:
    """One feedback sentence for a wrong field."""
    hint = hint or DEFAULT_HINTS.get(kind)
    detail = f"{kind_label(kind)}: {hint}" if hint else kind_label(kind)
    return f"{path}: predicted {show(predicted)} but expected {show(expected)} ({detail.rstrip('.')})."


def no_output_sentence(path: str, expected: Any, reason: str) -> str:
    return f"{path}: no record was produced ({reason}), so nothing was extracted; expected {show(expected)}."


def join_clauses(clauses: list[str], limit: int = 3) -> str:
    """Join sub-field clauses into one sentence body, keeping the first `limit`."""
    clauses = [c.rstrip(".") for c in clauses if c]
    shown = "; ".join(clauses[:limit])
    if len(clauses) > limit:
        shown += f"; and {len(clauses) - limit} more"
    return shown


def set_hint(
    missed: list[Any], extra: list[Any], partial: list[tuple[str, str | None]], wrapped: bool
) -> str | None:
    """What is wrong with a list compared as a set: items missed, items not expected, items mis-written."""
    clauses = []
    if missed:
        clauses.append(f"{len(missed)} expected item(s) not found: {show(missed, 60)}")
    if extra:
        clauses.append(f"{len(extra)} item(s) not expected: {show(extra, 60)}")
    if partial:
        kind, hint = partial[0]
        clauses.append(f"{len(partial)} matched item(s) with a {kind_label(kind)} error ({hint})")
    if wrapped:
        clauses.append("the value must be a JSON list")
    return join_clauses(clauses, limit=4) or None


def object_sentence(path: str, wrong_feedback: list[str], n_children: int) -> str:
    return f"{path}: {len(wrong_feedback)} of {n_children} sub-fields wrong: {join_clauses(wrong_feedback)}."


def leaf_sentence(
    path: str, bad: list[tuple[int, Any]], n_matched: int, n_unmatched_gold: int, n_unmatched_pred: int
) -> str:
    """A sub-field of an array of objects, over the matched items; `bad` holds (gold index, FieldScore)."""
    parts = []
    if bad:
        index, first = bad[0]
        detail = (first.feedback or "").removeprefix(f"{path}: ").rstrip(".")
        parts.append(
            f"{len(bad)} of {n_matched} matched items wrong, e.g. expected item {index + 1}: {detail}"
        )
    else:
        parts.append(f"right in all {n_matched} matched items")
    if n_unmatched_gold > 0:
        parts.append(f"{n_unmatched_gold} expected item(s) were not extracted")
    if n_unmatched_pred > 0:
        parts.append(f"{n_unmatched_pred} predicted item(s) match no expected item")
    return f"{path}: {'; '.join(parts)}."


def array_sentence(
    path: str,
    n_pred: int,
    n_gold: int,
    missed: list[Any],
    n_non_objects: int,
    leaf_wrong: dict[str, int],
    kind: str,
) -> str:
    """An array of objects: item counts, a missed item, and which sub-fields were wrong how often."""
    clauses = []
    if n_pred != n_gold:
        clauses.append(f"predicted {n_pred} items but expected {n_gold}")
    if missed:
        clauses.append(f"{len(missed)} expected item(s) not found, e.g. {show(missed[0], 60)}")
    if n_non_objects:
        clauses.append(f"{n_non_objects} item(s) are not JSON objects")
    wrong = sorted(((n, p) for p, n in leaf_wrong.items() if n), reverse=True)[:4]
    if wrong:
        clauses.append("wrong sub-fields in matched items: " + ", ".join(f"{p} ({n})" for n, p in wrong))
    return f"{path}: {join_clauses(clauses, limit=4)} ({kind_label(kind)})."
