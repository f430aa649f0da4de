"""Numbers: reading '$1,800.00', '1.234,56 EUR' or '(12.50)' as floats, and the number comparator."""

from __future__ import annotations

import math
import re
from typing import Any

from ieflow.scoring.outcome import CORRECT, FORMAT, INVALID, WRONG_VALUE, FieldSpec, Outcome
from ieflow.scoring.text import compare_exact

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
