"""Text comparators (exact, fuzzy), enums and booleans, and the text normalization they share."""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Any

from rapidfuzz import fuzz

from ieflow.scoring.outcome import (
    CORRECT,
    FORMAT,
    INVALID,
    NEAR_MISS,
    PARTIAL,
    WRONG_ENTITY,
    WRONG_VALUE,
    FieldSpec,
    Outcome,
)

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
