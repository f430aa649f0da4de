"""Comparators for one non-null predicted value against one non-null gold value.

Each comparator returns an `Outcome(score, kind, hint)`: `kind` is None when correct, else an error
kind, and `hint` is a short clause saying what is wrong and how to fix it (feedback.py turns it into a
sentence). Null handling, sets and arrays of objects live in scorer.py. A right value written in the
wrong notation (a date not in ISO form, a number as "$1,800.00") is a "format" error and earns
`spec.format_credit` (0.5 by default): the information was found, but the record does not validate.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

from dateutil import parser as date_parser
from rapidfuzz import fuzz

from ieflow.schema import SchemaError, kind_of, resolve, types_of

# Error kinds. The optimizers and the reflection prompts key on these names: keep them stable.
MISSING = "missing"  # gold has a value, the prediction has none
EXTRA = "extra"  # gold is null (absent from the document), the prediction has a value
FORMAT = "format"  # right value, wrong notation or JSON type
WRONG_VALUE = "wrong_value"  # a different number / date / item
WRONG_ENTITY = "wrong_entity"  # a string naming something else than the expected one
PARTIAL = "partial"  # the prediction is only part of the expected text
NEAR_MISS = "near_miss"  # almost the expected text: a typo or extra words around it
WRONG_COUNT = "wrong_count"  # a list with too many or too few items
INVALID = "invalid"  # not a value of the field's type at all (unparseable, not an allowed enum value)
ERROR_KINDS = (MISSING, EXTRA, FORMAT, WRONG_VALUE, WRONG_ENTITY, PARTIAL, NEAR_MISS, WRONG_COUNT, INVALID)

# Strings small models write instead of JSON null.
NULL_WORDS = frozenset(
    {
        "null",
        "none",
        "n/a",
        "na",
        "nil",
        "-",
        "--",
        "unknown",
        "not found",
        "not available",
        "not specified",
        "not stated",
        "not provided",
        "not applicable",
        "not mentioned",
    }
)


class Outcome(NamedTuple):
    score: float
    kind: str | None = None
    hint: str | None = None


CORRECT = Outcome(1.0)


@dataclass(slots=True)
class FieldSpec:
    """How one field is compared; built once per schema by `build_spec` (scorer.py)."""

    path: str
    kind: str  # "scalar" | "scalar_array" | "object" | "object_array"
    match: str = "exact"  # comparator name for scalars (and for the items of a scalar array)
    types: tuple[str, ...] = ()
    enum: tuple[Any, ...] | None = None
    format: str | None = None
    threshold: float = 0.85  # fuzzy similarity needed for a match
    abs_tol: float = 0.005  # numbers: |pred - gold| <= max(abs_tol, rel_tol * |gold|)
    rel_tol: float = 1e-9
    format_credit: float = 0.5
    children: dict[str, FieldSpec] = field(default_factory=dict)  # object / object_array properties


# --- normalization ------------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_EDGE_CHARS = string.punctuation + string.whitespace + "\u00a0\u2018\u2019\u201c\u201d\u2013\u2014\u2026«»"
_NON_ALNUM = re.compile(r"[\W_]+")


def normalize_text(value: Any) -> str:
    """NFKC, case-folded, whitespace collapsed, punctuation stripped from both ends."""
    text = value if isinstance(value, str) else str(value)
    text = unicodedata.normalize("NFKC", text).casefold()
    return _WS.sub(" ", text).strip(_EDGE_CHARS)


def is_null_word(value: Any) -> bool:
    return isinstance(value, str) and normalize_text(value) in NULL_WORDS | {""}


# --- numbers ------------------------------------------------------------------------------------

_CURRENCY = "$€£¥₹₩¢₽₺₪฿"
_NUMBER = re.compile(
    rf"^\(?\s*(?:[A-Za-z]{{1,3}}\.?|[{_CURRENCY}])?\s*(?P<sign>[-+−])?\s*[{_CURRENCY}]?\s*"
    rf"(?P<num>\d[\d,.\s'\u00a0\u202f]*)\s*(?:[A-Za-z]{{1,3}}|[{_CURRENCY}])?\s*(?P<trail>-)?\)?$"
)


def parse_number(value: Any) -> float | None:
    """A float from a number or a string such as '$1,800.00', '1.234,56 EUR', '(12.50)', 'RM 9.30'."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = _NUMBER.match(text)
    if not match:
        return None
    digits = re.sub(r"[\s'\u00a0\u202f]", "", match["num"])
    if "," in digits and "." in digits:
        # Whichever separator comes last is the decimal one: 1,234.56 and 1.234,56.
        thousands = "," if digits.rfind(",") < digits.rfind(".") else "."
        digits = digits.replace(thousands, "").replace(",", ".")
    elif digits.count(",") == 1 and len(digits.split(",")[1]) != 3:
        digits = digits.replace(",", ".")  # 12,5 or 1,80: a decimal comma
    elif digits.count(",") >= 1:
        digits = digits.replace(",", "")  # 1,800 or 1,234,567: thousands
    elif digits.count(".") > 1:
        digits = digits.replace(".", "")  # 1.234.567: thousands
    try:
        number = float(digits)
    except ValueError:
        return None
    negative = (
        match["sign"] in ("-", "−") or match["trail"] == "-" or (text.startswith("(") and text.endswith(")"))
    )
    return -number if negative else number


def compare_number(pred: Any, gold: Any, spec: FieldSpec) -> Outcome:
    gold_num = parse_number(gold)
    if gold_num is None:  # gold is not numeric after all: fall back to text comparison
        return compare_exact(pred, gold, spec)
    pred_num = parse_number(pred)
    if pred_num is None:
        return Outcome(0.0, INVALID, "not a number; write a plain JSON number such as 1800.0")
    if abs(pred_num - gold_num) <= max(spec.abs_tol, spec.rel_tol * abs(gold_num)):
        wrong_type = isinstance(pred, str) and "string" not in spec.types
        wrong_type = wrong_type or (
            isinstance(pred, float) and not pred.is_integer() and spec.types == ("integer",)
        )
        if wrong_type:
            return Outcome(
                spec.format_credit,
                FORMAT,
                "write numbers as plain JSON numbers, without currency symbols or thousands separators",
            )
        return CORRECT
    hint = None
    if gold_num and pred_num:
        ratio = pred_num / gold_num
        for factor in (10, 100, 1000):
            if math.isclose(ratio, factor, rel_tol=1e-6) or math.isclose(ratio, 1 / factor, rel_tol=1e-6):
                hint = f"off by a factor of {factor}; check the decimal separator"
        if math.isclose(pred_num, -gold_num):
            hint = "wrong sign"
    return Outcome(0.0, WRONG_VALUE, hint)


# --- dates --------------------------------------------------------------------------------------

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DEFAULT_A = datetime(1904, 1, 1)
_DEFAULT_B = datetime(1908, 2, 2)


def parse_date_readings(value: Any, with_time: bool = False) -> tuple[list[Any], bool]:
    """All plausible readings of a date string, and whether it is written in strict ISO form.

    '03/01/2018' reads as 2018-03-01 (month first) and 2018-01-03 (day first): both are returned,
    so that a right date in another notation is recognised as a format error, not a wrong value.
    Readings missing a component (e.g. 'March 2018') are rejected: the default would invent a day.
    """
    if not isinstance(value, str):
        return [], False
    text = value.strip()
    if _ISO_DATE.match(text):
        try:
            parsed = date.fromisoformat(text)
            return [datetime(parsed.year, parsed.month, parsed.day) if with_time else parsed], not with_time
        except ValueError:
            return [], False
    if with_time:
        try:
            return [datetime.fromisoformat(text.replace("Z", "+00:00"))], "T" in text
        except ValueError:
            pass
    readings: list[Any] = []
    for dayfirst in (False, True):
        try:
            a = date_parser.parse(text, dayfirst=dayfirst, default=_DEFAULT_A)
            b = date_parser.parse(text, dayfirst=dayfirst, default=_DEFAULT_B)
        except (ValueError, OverflowError, TypeError):
            continue
        if a.date() != b.date():  # a component came from the default, not from the text
            continue
        reading = a if with_time else a.date()
        if reading not in readings:
            readings.append(reading)
    return readings, False


def compare_date(pred: Any, gold: Any, spec: FieldSpec) -> Outcome:
    with_time = spec.format == "date-time"
    gold_readings, _ = parse_date_readings(gold, with_time)
    if not gold_readings:
        return compare_exact(pred, gold, spec)
    target = gold_readings[0]
    iso_rule = "write dates as ISO 8601 date-times" if with_time else "dates must be ISO YYYY-MM-DD"
    readings, is_iso = parse_date_readings(pred, with_time)
    if not readings:
        return Outcome(0.0, INVALID, f"not a recognizable date; {iso_rule}")
    if target in readings:
        return CORRECT if is_iso else Outcome(spec.format_credit, FORMAT, iso_rule)
    hint = None
    first = readings[0]
    if not with_time:
        try:
            if date(first.year, first.day, first.month) == target:
                hint = "day and month are swapped; check whether the document writes dates day-first"
        except ValueError:
            pass
        if hint is None and (first.month, first.day) == (target.month, target.day):
            hint = "right day and month but wrong year"
    if not is_iso:
        hint = f"{hint}; also {iso_rule}" if hint else iso_rule
    return Outcome(0.0, WRONG_VALUE, hint)


# --- strings, enums, booleans -------------------------------------------------------------------


def similarity(a: str, b: str) -> float:
    """Normalized Levenshtein similarity of two already-normalized strings, in [0, 1]."""
    return fuzz.ratio(a, b) / 100.0


def _string_miss(pred_n: str, gold_n: str) -> Outcome:
    """Classify two different normalized strings; score 0 (callers give credit where due)."""
    if pred_n and pred_n in gold_n:
        return Outcome(0.0, PARTIAL, "only part of the expected value; give the full value as printed")
    if gold_n and gold_n in pred_n:
        return Outcome(0.0, NEAR_MISS, "contains extra text around the expected value; give only the value")
    sim = similarity(pred_n, gold_n)
    if sim >= 0.8:
        return Outcome(0.0, NEAR_MISS, f"close but not the same text (similarity {sim:.2f}); copy it exactly")
    return Outcome(0.0, WRONG_ENTITY, "a different entity than the one expected")


def _text_outcome(pred: Any, gold: Any, spec: FieldSpec, fuzzy: bool) -> Outcome:
    if isinstance(pred, dict | list):
        return Outcome(0.0, INVALID, "a single value is expected, not an object or a list")
    pred_n, gold_n = normalize_text(pred), normalize_text(gold)
    if pred_n == gold_n or (fuzzy and similarity(pred_n, gold_n) >= spec.threshold):
        if not isinstance(pred, str) and "string" in spec.types and not _json_types(pred) & set(spec.types):
            return Outcome(spec.format_credit, FORMAT, "write this value as a JSON string")
        return CORRECT
    if _NON_ALNUM.sub("", pred_n) == _NON_ALNUM.sub("", gold_n):
        return Outcome(
            spec.format_credit, FORMAT, "same text but spacing or punctuation differ; copy it as printed"
        )
    return _string_miss(pred_n, gold_n)


def _json_types(value: Any) -> set[str]:
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int):
        return {"integer", "number"}
    if isinstance(value, float):
        return {"number"}
    return {"string"} if isinstance(value, str) else set()


def compare_exact(pred: Any, gold: Any, spec: FieldSpec) -> Outcome:
    return _text_outcome(pred, gold, spec, fuzzy=False)


def compare_fuzzy(pred: Any, gold: Any, spec: FieldSpec) -> Outcome:
    return _text_outcome(pred, gold, spec, fuzzy=True)


def compare_enum(pred: Any, gold: Any, spec: FieldSpec) -> Outcome:
    allowed = spec.enum or ()
    if pred == gold:
        return CORRECT
    pred_n = normalize_text(pred)
    if pred_n == normalize_text(gold):
        return Outcome(spec.format_credit, FORMAT, f"use the exact allowed value {gold!r}")
    if allowed and pred not in allowed and pred_n not in {normalize_text(v) for v in allowed}:
        shown = ", ".join(repr(v) for v in allowed[:12])
        return Outcome(0.0, INVALID, f"not an allowed value; choose one of {shown}")
    return Outcome(0.0, WRONG_VALUE, None)


_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


def compare_bool(pred: Any, gold: Any, spec: FieldSpec) -> Outcome:
    def as_bool(v: Any) -> bool | None:
        if isinstance(v, bool):
            return v
        text = normalize_text(v)
        return True if text in _TRUE else False if text in _FALSE else None

    pred_b, gold_b = as_bool(pred), as_bool(gold)
    if pred_b is None:
        return Outcome(0.0, INVALID, "not a boolean; answer true or false")
    if pred_b != gold_b:
        return Outcome(0.0, WRONG_VALUE, None)
    if not isinstance(pred, bool):
        return Outcome(spec.format_credit, FORMAT, "write a JSON boolean (true or false)")
    return CORRECT


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
