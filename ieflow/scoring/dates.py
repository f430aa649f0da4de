"""Dates: every plausible reading of a date string, and the date comparator."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from dateutil import parser as date_parser

from ieflow.scoring.outcome import CORRECT, FORMAT, INVALID, WRONG_VALUE, FieldSpec, Outcome
from ieflow.scoring.text import compare_exact

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
