"""Finding one value in an indexed document: strings, numbers and dates, each the way documents
print them. Every finder returns the best `Span` and its method, or None.

Cost per value: strings cost one substring search plus work at the places where the value's own
words occur (the rarest word anchors the comparison); the fuzzy step compares at most
`MAX_WINDOWS` windows of the value's length. Numbers are one dictionary lookup; dates one regular
expression search. Nothing here is quadratic in the document.
"""

from __future__ import annotations

import calendar
import re
from collections import Counter
from datetime import date

from rapidfuzz import fuzz, process

from ieflow.grounding.evidence import Span
from ieflow.grounding.index import DocumentIndex, fold

MAX_WINDOWS = 12
FUZZY_MIN_SCORE = 0.8  # rapidfuzz partial ratio / 100; below it a value is "not_found"
_FUZZY_MIN_CHARS = 4  # shorter values match too much of any text to be fuzzy evidence
_SIMILAR_WORDS = 3  # per value word, how many look-alike words of the document may anchor a window
_WORD = re.compile(r"\w+", re.UNICODE)


def find_text(index: DocumentIndex, value: str) -> tuple[Span, str] | None:
    """`value` as printed (exact), as the same words (normalized), or nearly (fuzzy)."""
    value = value.strip()
    if not value:
        return None
    start = index.text.find(value)
    if start >= 0:
        return Span(start, start + len(value)), "exact"
    words = [fold(w) for w in _WORD.findall(value)]
    if not words:
        return None
    span = _same_words(index, words)
    if span is not None:
        return span, "normalized"
    span = _fuzzy(index, value, words)
    return (span, "fuzzy") if span is not None else None


def _same_words(index: DocumentIndex, words: list[str]) -> Span | None:
    occurrences = [index.positions.get(w, []) for w in words]
    if not all(occurrences):
        return None
    anchor = min(range(len(words)), key=lambda j: len(occurrences[j]))  # the rarest word
    n = len(words)
    for position in occurrences[anchor]:
        first = position - anchor
        if first < 0 or first + n > len(index.words):
            continue
        if all(index.words[first + k][0] == words[k] for k in range(n)):
            return Span(index.words[first][1], index.words[first + n - 1][2])
    return None


def _fuzzy(index: DocumentIndex, value: str, words: list[str]) -> Span | None:
    if len(value) < _FUZZY_MIN_CHARS or not index.words:
        return None
    votes: Counter[int] = Counter()
    for j, word in enumerate(words):
        for similar in _look_alikes(index, word):
            for position in index.positions[similar]:
                votes[position - j] += 1
    best: Span | None = None
    needle = value.lower()
    for first, _ in votes.most_common(MAX_WINDOWS):
        lo = max(0, first - 2)
        hi = min(len(index.words) - 1, max(lo, first + len(words) + 1))
        char_lo, char_hi = index.words[lo][1], index.words[hi][2]
        window = index.text[char_lo:char_hi]
        lowered = window.lower()
        haystack = lowered if len(lowered) == len(window) else window  # offsets must stay valid
        found = fuzz.partial_ratio_alignment(needle, haystack)
        score = found.score / 100
        if score >= FUZZY_MIN_SCORE and (best is None or score > best.score):
            start, end = _whole_words(index.text, char_lo + found.dest_start, char_lo + found.dest_end)
            best = Span(start, end, round(score, 4))
    return best


def _whole_words(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen an alignment that cuts a word so the span shows whole words."""
    while start > 0 and text[start - 1].isalnum() and text[start].isalnum():
        start -= 1
    while end < len(text) and end > 0 and text[end - 1].isalnum() and text[end].isalnum():
        end += 1
    return start, end


def _look_alikes(index: DocumentIndex, word: str) -> list[str]:
    if word in index.positions:
        return [word]
    if len(word) < 3:
        return []
    matches = process.extract(
        word, index.vocabulary, scorer=fuzz.ratio, score_cutoff=80, limit=_SIMILAR_WORDS
    )
    return [m[0] for m in matches]


def find_number(index: DocumentIndex, value: float) -> tuple[Span, str] | None:
    """The number in any notation the document prints it ("1,234.50", "1.234,50", "1234.5")."""
    spans = index.numbers.get(round(value, 6)) or index.numbers.get(round(abs(value), 6))
    if not spans:
        return None
    start, end = spans[0]
    literal = str(int(value)) if float(value).is_integer() else repr(float(value))
    return Span(start, end), "exact" if index.text[start:end] == literal else "normalized"


def find_date(index: DocumentIndex, iso: str, dayfirst: bool | None = None) -> tuple[Span, str] | None:
    """The date `iso` (YYYY-MM-DD) printed in digits or with its month as a word.

    `dayfirst` is the program's date format: True reads 07/01/18 as 7 January, False as July 1,
    None accepts either (the document's own notation is unknown)."""
    try:
        day = date.fromisoformat(iso.strip()[:10])
    except ValueError:
        return None
    found = re.search(date_pattern(day, dayfirst), index.text, re.IGNORECASE)
    if not found:
        return None
    return Span(found.start(), found.end()), "exact" if found.group() == iso.strip() else "normalized"


def date_pattern(day: date, dayfirst: bool | None) -> str:
    """One regular expression for every usual printing of `day`."""
    d = rf"0?{day.day}" if day.day < 10 else str(day.day)
    m = rf"0?{day.month}" if day.month < 10 else str(day.month)
    y = rf"(?:{day.year}|{day.year % 100:02d})"
    sep = r"[/.\-]"
    forms = [rf"{day.year}{sep}{m}{sep}{d}"]
    if dayfirst is not False:
        forms.append(rf"{d}{sep}{m}{sep}{y}")
    if dayfirst is not True:
        forms.append(rf"{m}{sep}{d}{sep}{y}")
    name = calendar.month_name[day.month]
    month = rf"(?:{name}|{name[:3]}\.?)"
    ordinal = rf"{d}(?:st|nd|rd|th)?"
    forms.append(rf"{ordinal}[\s\-]*(?:of\s+)?{month}[\s,\-]*{y}")
    forms.append(rf"{month}[\s\-]*{ordinal}[\s,\-]*{y}")
    return rf"(?<!\w)(?:{'|'.join(forms)})(?!\w)"
