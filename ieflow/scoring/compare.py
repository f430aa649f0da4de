"""Comparators for one non-null predicted value against one non-null gold value, by name.

Each comparator returns an `Outcome(score, kind, hint)`: `kind` is None when correct, else an error
kind, and `hint` is a short clause saying what is wrong and how to fix it (feedback.py turns it into
a sentence). The comparators live by type in `text`, `numbers` and `dates`; `outcome` holds the
error kinds, `Outcome` and `FieldSpec`; this module names them (`COMPARATORS`), picks a field's
comparator from its schema (`build_spec`) and re-exports the rest. Null handling, sets and arrays
of objects live in scorer.py. A right value written in the wrong notation (a date not in ISO form, a
number as "$1,800.00") is a "format" error and earns `spec.format_credit` (0.5 by default): the
information was found, but the record does not validate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ieflow.schema import SchemaError, kind_of, resolve, types_of
from ieflow.scoring.dates import compare_date, parse_date_readings
from ieflow.scoring.numbers import compare_number, parse_number
from ieflow.scoring.outcome import (
    CORRECT,
    ERROR_KINDS,
    EXTRA,
    FORMAT,
    INVALID,
    MISSING,
    NEAR_MISS,
    PARTIAL,
    WRONG_COUNT,
    WRONG_ENTITY,
    WRONG_VALUE,
    FieldSpec,
    Outcome,
)
from ieflow.scoring.text import (
    NULL_WORDS,
    compare_bool,
    compare_enum,
    compare_exact,
    compare_fuzzy,
    is_null_word,
    normalize_text,
    similarity,
)

__all__ = [
    "COMPARATORS",
    "CORRECT",
    "ERROR_KINDS",
    "EXTRA",
    "FORMAT",
    "INVALID",
    "MISSING",
    "NEAR_MISS",
    "NULL_WORDS",
    "PARTIAL",
    "WRONG_COUNT",
    "WRONG_ENTITY",
    "WRONG_VALUE",
    "Comparator",
    "FieldSpec",
    "Outcome",
    "build_spec",
    "compare_bool",
    "compare_date",
    "compare_enum",
    "compare_exact",
    "compare_fuzzy",
    "compare_number",
    "compare_scalar",
    "is_null_word",
    "item_key",
    "normalize_text",
    "parse_date_readings",
    "parse_number",
    "register_comparator",
    "similarity",
]

Comparator = Callable[[Any, Any, FieldSpec], Outcome]

COMPARATORS: dict[str, Comparator] = {
    "exact": compare_exact,
    "fuzzy": compare_fuzzy,
    "number": compare_number,
    "date": compare_date,
    "enum": compare_enum,
    "bool": compare_bool,
}


def register_comparator(name: str, comparator: Comparator) -> None:
    """Make `"x-ieflow-match": name` available in schemas."""
    COMPARATORS[name] = comparator


def compare_scalar(pred: Any, gold: Any, spec: FieldSpec) -> Outcome:
    """Compare two non-null scalars with the field's comparator."""
    try:
        comparator = COMPARATORS[spec.match]
    except KeyError:
        raise ValueError(
            f"{spec.path}: unknown comparator {spec.match!r}; known: {sorted(COMPARATORS)}"
        ) from None
    return comparator(pred, gold, spec)


def item_key(value: Any, spec: FieldSpec) -> Any:
    """A canonical key for set comparison: equal keys always mean a correct match."""
    if spec.match == "number":
        number = parse_number(value)
        if number is not None and isinstance(value, int | float) and not isinstance(value, bool):
            return ("n", round(number, 6))
    elif spec.match == "date":
        readings, is_iso = parse_date_readings(value, spec.format == "date-time")
        if is_iso:
            return ("d", readings[0])
    elif spec.match in ("exact", "fuzzy", "enum") and isinstance(value, str):
        return ("s", normalize_text(value) if spec.match != "enum" else value)
    return ("r", repr(value))


# --- choosing the comparator of a field ------------------------------------------------------


def _default_match(node: dict[str, Any]) -> str:
    types = types_of(node)
    if isinstance(node.get("enum"), list):
        return "enum"
    if node.get("format") in ("date", "date-time"):
        return "date"
    if "number" in types or "integer" in types:
        return "number"
    if "boolean" in types and "string" not in types:
        return "bool"
    return "exact"


def build_spec(
    schema: dict[str, Any], node: dict[str, Any], path: str, format_credit: float = 0.5
) -> FieldSpec:
    """Compile how a field is compared, from its schema type/format and any `x-ieflow-*` keys."""
    node = resolve(schema, node)
    kind = kind_of(schema, node)
    spec = FieldSpec(path=path, kind=kind, format_credit=format_credit)
    if kind in ("object", "object_array"):
        inner = resolve(schema, node["items"]) if kind == "object_array" else node
        sep = "[]." if kind == "object_array" else "."
        spec.children = {
            name: build_spec(schema, sub, f"{path}{sep}{name}", format_credit)
            for name, sub in inner["properties"].items()
        }
        return spec
    scalar = node
    if kind == "scalar_array":
        items = node.get("items")
        scalar = resolve(schema, items) if isinstance(items, dict) else {}
    match = scalar.get("x-ieflow-match") or node.get("x-ieflow-match")
    spec.match = _default_match(scalar) if match in (None, "set") else match
    if spec.match not in COMPARATORS:
        raise SchemaError(f"{path}: unknown x-ieflow-match {spec.match!r}; known: {sorted(COMPARATORS)}")
    spec.types = tuple(types_of(scalar))
    spec.format = scalar.get("format")
    spec.enum = tuple(scalar["enum"]) if isinstance(scalar.get("enum"), list) else None
    knobs = {
        "x-ieflow-threshold": "threshold",
        "x-ieflow-tolerance": "abs_tol",
        "x-ieflow-rel-tolerance": "rel_tol",
    }
    for key, attr in knobs.items():
        value = scalar.get(key, node.get(key))
        if value is not None:
            setattr(spec, attr, float(value))
    return spec
