"""One pass over a document's text, so that each value is then found in time that does not grow
with the document: word positions, number mentions and page starts.

Built once per document (linear in its length); every lookup afterwards touches only the places
where the value's own words or numbers occur.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from ieflow.scoring.numbers import parse_number

_WORD = re.compile(r"\w+", re.UNICODE)
# A number as documents print it: digits with thousands or decimal separators, no spaces (a space
# would join neighbouring numbers of a table row into one).
_NUMBER = re.compile(r"(?<![\w.,])\d(?:[.,'\u00a0]?\d)*(?![\w])")


def fold(word: str) -> str:
    """How two words are compared: NFKC, case-folded."""
    return unicodedata.normalize("NFKC", word).casefold()


@dataclass
class DocumentIndex:
    """The text of one document and what lookups need of it.

    `page_offsets` are the start offsets of each page in `text` (from ingest); an empty list means
    one page, None that the pages are unknown (a documents table from before ingest kept them)."""

    text: str
    page_offsets: list[int] | None = field(default_factory=list)

    @cached_property
    def words(self) -> list[tuple[str, int, int]]:
        """(folded word, start, end) for every word of the text, in order."""
        return [(fold(m.group()), m.start(), m.end()) for m in _WORD.finditer(self.text)]

    @cached_property
    def positions(self) -> dict[str, list[int]]:
        """Folded word -> indexes into `words` where it occurs."""
        out: dict[str, list[int]] = defaultdict(list)
        for i, (word, _, _) in enumerate(self.words):
            out[word].append(i)
        return dict(out)

    @cached_property
    def vocabulary(self) -> list[str]:
        """Every distinct folded word (for look-alike search)."""
        return list(self.positions)

    @cached_property
    def numbers(self) -> dict[float, list[tuple[int, int]]]:
        """Number value (rounded to 6 places) -> the spans that print it."""
        out: dict[float, list[tuple[int, int]]] = defaultdict(list)
        for m in _NUMBER.finditer(self.text):
            value = parse_number(m.group())
            if value is not None:
                out[round(value, 6)].append((m.start(), m.end()))
        return dict(out)

    def page_at(self, offset: int) -> int | None:
        """1-based page holding `offset`; None for an empty document or unknown pages."""
        if not self.text or self.page_offsets is None:
            return None
        return max(1, bisect_right(self.page_offsets, offset)) if self.page_offsets else 1
