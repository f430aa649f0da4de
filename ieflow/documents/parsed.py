"""A parsed document: its text with page provenance and structural elements, or the reason it failed.

Offsets: `text` is the pages joined by `PAGE_SEPARATOR` ("\\n\\n"), so page `i` (0-based) spans
`text[page_offsets[i] : page_offsets[i] + len(pages[i])]`. Element offsets index the same `text`.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

PAGE_SEPARATOR = "\n\n"

Method = Literal["text_layer", "ocr", "unstructured", "plain"]
Status = Literal["ok", "empty", "error"]


class ParseError(Exception):
    """A document we cannot read; the message is shown to people as the reason."""


@dataclass
class Element:
    """A structural element (unstructured category, or "Paragraph" for plain text)."""

    category: str
    text: str
    char_start: int
    char_end: int
    page: int  # 1-based


@dataclass
class ParsedDocument:
    source: str
    text: str = ""
    pages: list[str] = field(default_factory=list)
    method: Method | None = None
    status: Status = "ok"
    error: str | None = None
    elements: list[Element] = field(default_factory=list)
    ocr_pages: list[int] = field(default_factory=list)  # 1-based pages whose text came from OCR
    warnings: list[str] = field(default_factory=list)
    sha256: str | None = None
    size_bytes: int | None = None

    @property
    def n_pages(self) -> int:
        return len(self.pages)

    @property
    def doc_id(self) -> str | None:
        return doc_id_for(self.sha256) if self.sha256 else None

    @property
    def page_offsets(self) -> list[int]:
        """Start offset of each page in `text`."""
        offsets, position = [], 0
        for page in self.pages:
            offsets.append(position)
            position += len(page) + len(PAGE_SEPARATOR)
        return offsets

    def page_at(self, offset: int) -> int:
        """1-based page holding character `offset` of `text` (1 for a document without pages)."""
        return max(1, bisect_right(self.page_offsets, offset))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParsedDocument:
        values = dict(data)
        values["elements"] = [Element(**e) for e in values.get("elements", [])]
        return cls(**values)


def doc_id_for(sha256_hex: str) -> str:
    """The document id: the first 16 hex digits (64 bits) of the content's SHA-256."""
    return sha256_hex[:16]


def describe_error(exc: BaseException) -> str:
    """`Type: message`, short, without object reprs (their memory addresses vary run to run)."""
    message = re.sub(r"\s*<[^<>]* at 0x[0-9a-f]+>", "", str(exc)).strip()
    return f"{type(exc).__name__}: {message}"[:240].rstrip(" :")


def set_pages(doc: ParsedDocument, pages: list[str], method: Method) -> None:
    """Set pages and text; for plain text, one "Paragraph" element per blank-line block."""
    doc.pages, doc.method = pages, method
    doc.text = PAGE_SEPARATOR.join(pages)
    if method != "plain":
        return
    for page_no, offset in enumerate(doc.page_offsets, start=1):
        for match in re.finditer(r"\S(?:.*\S)?(?:\n[ \t]*\S.*)*", doc.pages[page_no - 1]):
            start, end = offset + match.start(), offset + match.end()
            doc.elements.append(Element("Paragraph", doc.text[start:end], start, end, page_no))
