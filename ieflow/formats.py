"""Output formats: the model copies a value as printed, and code converts it to the schema's form.

Small students copy far more reliably than they convert. Asked for an ISO date while the receipt
prints "14/03/2018", the 0.5B student writes "1403-03-20": the grammar forces the ISO shape and the
model pours the printed digits into it (measured on sroie, see docs/benchmarks.md). A format on a
field changes two things: the field is asked for "as printed" (the grammar no longer forces a
shape, demos show the printed form), and the answer is converted in code (`dateutil`, with the
day/month order the program states). Formats are part of the program and of its hash, so
optimizers can propose one and compare it on validation like any other change.

An answer a format cannot convert is kept as the model wrote it: validation then quarantines the
record with the reason, nothing is dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from dateutil import parser as date_parser

_DEFAULT = datetime(2000, 1, 1)
_NUMERIC_DATE = r"^[0-9]{1,2}[/.-][0-9]{1,2}[/.-]([0-9]{4}|[0-9]{2})$"
_NUMERIC_DATE_IN_TEXT = re.compile(r"(?<![\d/.-])\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})(?![\d/.-])")
_MAX_CHOICES = 20
_AMOUNT_IN_TEXT = re.compile(
    r"(?<![\d.,])\d{1,3}(?:,\d{3})*\.\d{2}(?![\d.,])|(?<![\d.,])\d+\.\d{2}(?![\d.,])"
)
_MAX_AMOUNTS = 40


@dataclass(frozen=True)
class DateFormat:
    """A date copied as printed, converted to YYYY-MM-DD with a known day/month order."""

    name: str
    dayfirst: bool
    shape: str  # how the prompt names the expected shape

    @property
    def label(self) -> str:
        return f"date copied as printed, {self.shape}"

    def grammar(self, node: dict[str, Any], text: str | None = None) -> dict[str, Any]:
        """The field's decoding constraint: one of the numeric dates printed in `text`.

        Measured on sroie receipts with the 0.5B student: left free, it still "converts" (and
        swaps day and month, or writes junk); forced into a DD/MM/YYYY pattern, it often starts
        with "20" whatever the receipt says. Choosing among the dates the document prints, it
        copies. Without a document (or with no numeric date in it) the pattern is the constraint.
        """
        out = {k: v for k, v in node.items() if k not in ("format", "pattern")}
        printed = list(dict.fromkeys(_NUMERIC_DATE_IN_TEXT.findall(text or "")))[:_MAX_CHOICES]
        if printed:
            return out | {"enum": printed}
        return out | {"pattern": _NUMERIC_DATE}

    def convert(self, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            return value
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            return value.strip()  # already ISO: year-first is never ambiguous
        try:
            parsed = date_parser.parse(value, dayfirst=self.dayfirst, fuzzy=True, default=_DEFAULT)
        except (ValueError, OverflowError):
            return value
        return parsed.date().isoformat()

    def render(self, value: Any, text: str) -> Any:
        """The gold value as the document prints it (for demos), else in this format's shape."""
        if not isinstance(value, str):
            return value
        try:
            day = date.fromisoformat(value[:10])
        except ValueError:
            return value
        printed = find_printed_date(text, day)
        if printed:
            return printed
        return day.strftime("%d/%m/%Y" if self.dayfirst else "%m/%d/%Y")


@dataclass(frozen=True)
class AmountFormat:
    """A money amount copied as printed ("1,234.50"), converted to a number.

    The student picks one of the amounts the document prints instead of composing digits (it
    writes 160000143 or 4.6800000000000004 when free).
    """

    name: str = "amount:printed"
    label: str = "amount copied as printed, e.g. 12.50"

    def grammar(self, node: dict[str, Any], text: str | None = None) -> dict[str, Any]:
        out = {k: v for k, v in node.items() if k not in ("minimum", "maximum", "multipleOf")}
        kinds = out.get("type")
        out["type"] = ["string", "null"] if isinstance(kinds, list) and "null" in kinds else "string"
        printed = list(dict.fromkeys(_AMOUNT_IN_TEXT.findall(text or "")))[:_MAX_AMOUNTS]
        return out | ({"enum": printed} if printed else {"pattern": r"^-?[0-9][0-9,]*(\.[0-9]+)?$"})

    def convert(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return float(value.replace(",", "").strip())
        except ValueError:
            return value

    def render(self, value: Any, text: str) -> Any:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return value
        for printed in (f"{value:,.2f}", f"{value:.2f}"):
            if printed in text:
                return printed
        return f"{value:.2f}"


FORMATS: dict[str, DateFormat | AmountFormat] = {
    "date:day-first": DateFormat("date:day-first", dayfirst=True, shape="DD/MM/YYYY"),
    "date:month-first": DateFormat("date:month-first", dayfirst=False, shape="MM/DD/YYYY"),
    "amount:printed": AmountFormat(),
}


def get_format(name: str) -> DateFormat | AmountFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown output format {name!r} (known: {', '.join(FORMATS)})") from None


# -- finding how a document prints a date ------------------------------------------------------------

DAY_FIRST, MONTH_FIRST, ISO, MONTH_WORD = (
    "day-first (DD/MM/YYYY)",
    "month-first (MM/DD/YYYY)",
    "ISO (YYYY-MM-DD)",
    "with the month as a word",
)


def _date_patterns(day: date) -> list[tuple[str, str]]:
    year = f"(?:{day.year}|{day.year % 100:02d})"
    days, months = sorted({f"{day.day:02d}", str(day.day)}), sorted({f"{day.month:02d}", str(day.month)})
    out = []
    for sep in ("/", "-", "."):
        s = re.escape(sep)
        for dd in days:
            for mm in months:
                out.append((ISO, rf"(?<!\d){day.year}{s}{mm}{s}{dd}(?!\d)"))
                if day.day != day.month:
                    out.append((DAY_FIRST, rf"(?<!\d){dd}{s}{mm}{s}{year}(?!\d)"))
                    out.append((MONTH_FIRST, rf"(?<!\d){mm}{s}{dd}{s}{year}(?!\d)"))
    return out


def date_notation(text: str, iso: str) -> str | None:
    """How the document prints the date `iso`: day-first, month-first, ISO, month name, or None
    (None too when day and month are equal and nothing else tells them apart)."""
    try:
        day = date.fromisoformat(iso[:10])
    except ValueError:
        return None
    for name, pattern in _date_patterns(day):
        if re.search(pattern, text):
            return name
    month = date(2000, day.month, 1).strftime("%b").lower()
    return MONTH_WORD if month in text.lower() else None


def find_printed_date(text: str, day: date) -> str | None:
    """The substring of `text` that prints `day` in digits, or None."""
    for _, pattern in _date_patterns(day):
        found = re.search(pattern, text)
        if found:
            return found.group(0)
    return None


def amount_printed(text: str, value: Any) -> bool:
    """Whether the number `value` is printed in `text` as a two-decimal amount."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return any(p in _AMOUNT_IN_TEXT.findall(text) for p in (f"{value:,.2f}", f"{value:.2f}"))


def suggest_date_format(notations: dict[str, int]) -> str | None:
    """The format to propose from counts of date notations in training documents: day-first or
    month-first when that notation is printed in most documents whose notation is known."""
    known = sum(notations.values())
    for notation, name in ((DAY_FIRST, "date:day-first"), (MONTH_FIRST, "date:month-first")):
        if known and notations.get(notation, 0) * 2 > known:
            return name
    return None


# -- applying formats to records -----------------------------------------------------------------------


def map_at(record: Any, path: str, fn: Any) -> Any:
    """`record` with `fn` applied to every value at `path` (`lines[].date` maps over the list)."""
    head, _, rest = path.partition(".")
    many = head.endswith("[]")
    key = head[:-2] if many else head
    if not isinstance(record, dict) or key not in record:
        return record
    out = dict(record)
    value = out[key]
    if many:
        if isinstance(value, list):
            out[key] = [map_at(item, rest, fn) if rest else fn(item) for item in value]
        return out
    out[key] = map_at(value, rest, fn) if rest else fn(value)
    return out


def convert_record(record: Any, formats: dict[str, str]) -> Any:
    """The model's answer with every formatted field converted to the schema's form."""
    for path, name in formats.items():
        record = map_at(record, path, get_format(name).convert)
    return record


def render_record(record: Any, formats: dict[str, str], text: str) -> Any:
    """A gold record as the model is asked to write it for `text` (demos use this)."""
    for path, name in formats.items():
        fmt = get_format(name)
        record = map_at(record, path, lambda value, fmt=fmt: fmt.render(value, text))
    return record


__all__ = [
    "FORMATS",
    "AmountFormat",
    "DateFormat",
    "amount_printed",
    "convert_record",
    "date_notation",
    "find_printed_date",
    "get_format",
    "map_at",
    "render_record",
    "suggest_date_format",
]
