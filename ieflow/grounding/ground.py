"""Grounding a record: one `Evidence` per leaf value, found through the leaf's type.

Strings go exact -> normalized -> fuzzy (`match.find_text`); numbers through the notations a
document prints them in (`match.find_number`); dates through digits or month words, under the
program's date format where it has one (`match.find_date`). A field whose schema says
`"x-ieflow-derived": true` (a computed total, a normalized code), every yes/no answer and an
`enum` code that the text does not print as such are `derived`: they are judgements on the text,
not copies of it. Nulls are not values and get no row.

The cost of one document is bounded twice: at most `GroundingLimits.max_values` leaves, and at
most `max_seconds` of work; what is left is `skipped`, counted like any other method.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ieflow.formats import DateFormat, get_format
from ieflow.grounding.evidence import Evidence, Span
from ieflow.grounding.index import DocumentIndex
from ieflow.grounding.match import find_date, find_number, find_text
from ieflow.schema import resolve, types_of
from ieflow.scoring.numbers import parse_number
from ieflow.scoring.text import is_null_word

DERIVED_KEY = "x-ieflow-derived"
_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class GroundingLimits:
    """The most one document may cost: leaves looked for, and seconds spent."""

    max_values: int = 2000
    max_seconds: float = 5.0


def ground_record(
    record: Any,
    index: DocumentIndex,
    schema: dict[str, Any],
    formats: dict[str, str] | None = None,
    limits: GroundingLimits | None = None,
) -> list[Evidence]:
    """Evidence for every non-null leaf of `record` in the document `index` holds."""
    limits = limits or GroundingLimits()
    deadline = time.monotonic() + limits.max_seconds
    out: list[Evidence] = []
    for n, (path, node, value) in enumerate(leaf_values(record, schema)):
        if n >= limits.max_values or time.monotonic() > deadline:
            out.append(Evidence(path, value_text(value), "skipped", 0.0))
            continue
        out.append(ground_value(path, node, value, index, formats or {}))
    return out


def leaf_values(record: Any, schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(path, resolved schema node, value) for each non-null leaf, nested objects and arrays included."""
    yield from _walk(record, schema, schema, "")


def _walk(
    value: Any, schema: dict[str, Any], node: Any, path: str
) -> Iterator[tuple[str, dict[str, Any], Any]]:
    node = resolve(schema, node) if isinstance(node, dict) else {}
    if isinstance(value, dict):
        properties = node.get("properties") or {}
        for key, sub in value.items():
            yield from _walk(sub, schema, properties.get(key, {}), f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        items = node.get("items")
        for i, sub in enumerate(value):
            yield from _walk(sub, schema, items if isinstance(items, dict) else {}, f"{path}[{i}]")
    elif value is not None and not (isinstance(value, str) and (not value.strip() or is_null_word(value))):
        yield path, node, value


def schema_path(path: str) -> str:
    """`lines[0].amount` -> `lines[].amount`, `parties[2]` -> `parties`: the program's field names."""
    return re.sub(r"\[\]$", "", _INDEX.sub("[]", path))


def ground_value(
    path: str, node: dict[str, Any], value: Any, index: DocumentIndex, formats: dict[str, str]
) -> Evidence:
    """The evidence for one leaf value."""
    text = value_text(value)
    if node.get(DERIVED_KEY) is True or isinstance(value, bool):
        return Evidence(path, text, "derived", 1.0)
    found = _find(path, node, value, index, formats)
    if found is None and node.get("enum"):
        # A code from the schema's list (`bank_transfer` for "Payment by wire") is a reading of
        # the text, not a copy: when it is not printed as such it is derived, not invented.
        return Evidence(path, text, "derived", 1.0)
    if found is None:
        return Evidence(path, text, "not_found", 0.0)
    span, method = found
    return _located(path, text, method, span, index)


def _find(
    path: str, node: dict[str, Any], value: Any, index: DocumentIndex, formats: dict[str, str]
) -> tuple[Span, str] | None:
    if isinstance(value, int | float):
        return find_number(index, float(value)) or find_text(index, value_text(value))
    if not isinstance(value, str):
        return find_text(index, value_text(value))
    is_date, dayfirst = _date_reading(node, formats.get(schema_path(path)))
    if is_date and (found := find_date(index, value, dayfirst)) is not None:
        return found
    found = find_text(index, value)
    if found is None and {"number", "integer"} & set(types_of(node)):
        number = parse_number(value)
        found = find_number(index, number) if number is not None else None
    return found


def _date_reading(node: dict[str, Any], format_name: str | None) -> tuple[bool, bool | None]:
    """Whether the field holds a date, and whether the program reads it day-first (None: unknown)."""
    if format_name:
        try:
            fmt = get_format(format_name)
        except (KeyError, ValueError):
            fmt = None
        if isinstance(fmt, DateFormat):
            return True, fmt.dayfirst
    return node.get("format") == "date", None


def _located(path: str, text: str, method: str, span: Span, index: DocumentIndex) -> Evidence:
    return Evidence(
        path,
        text,
        method,  # type: ignore[arg-type]
        span.score,
        span.char_start,
        span.char_end,
        index.page_at(span.char_start),
        index.text[span.char_start : span.char_end],
    )


def value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
