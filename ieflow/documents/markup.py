"""DOCX, HTML, Markdown and e-mail through unstructured's partitioners, laid out page by page."""

from __future__ import annotations

import contextlib
import io
import threading
from typing import Any

from ieflow.documents.parsed import (
    PAGE_SEPARATOR,
    Element,
    ParsedDocument,
    ParseError,
    describe_error,
    set_pages,
)
from ieflow.documents.text import decode_text

_WARM_LOCK = threading.Lock()
_warmed = False


def warm_up() -> None:
    """Run every unstructured parser once on a tiny document, once per process.

    The per-file time limit raises between bytecodes; landing inside a parser's first import it
    leaves a half-initialised module behind, and every later file of that format then fails with
    `KeyError: '__reduce_cython__'`. Warmed first, the limit only ever interrupts parsing."""
    global _warmed
    with _WARM_LOCK:
        if _warmed:
            return
        import docx

        buffer = io.BytesIO()
        docx.Document().save(buffer)
        samples = {
            "docx": buffer.getvalue(),
            "html": b"<p>x</p>",
            "md": b"# x",
            "eml": b"Subject: x\nFrom: a@b.c\n\nx\n",
        }
        for kind, data in samples.items():
            # A parser that cannot run fails the same way on real files, with the reason.
            with contextlib.suppress(ParseError):
                parse_with_unstructured(ParsedDocument(source=f"warm-up.{kind}"), data, kind)
        _warmed = True


def parse_with_unstructured(doc: ParsedDocument, data: bytes, kind: str) -> None:
    from ieflow.documents import _unstructured_offline

    _unstructured_offline.apply()
    handle = io.BytesIO(data)
    try:
        if kind == "docx":
            from unstructured.partition.docx import partition_docx

            elements = partition_docx(file=handle)
        elif kind == "html":
            from unstructured.partition.html import partition_html

            text = decode_text(data)
            check_html_limits(text)
            elements = partition_html(text=text)
        elif kind == "md":
            from unstructured.partition.md import partition_md

            elements = partition_md(text=decode_text(data))
        else:
            from unstructured.partition.email import partition_email

            elements = partition_email(file=handle)
    except ParseError:
        raise
    except Exception as exc:
        raise ParseError(f"not a readable {kind.upper()} file: {describe_error(exc)}") from exc
    items: list[tuple[str, str, int]] = []  # (category, text, page)
    if kind == "eml" and elements:
        items.append(("EmailHeader", _email_header(elements[0].metadata), 1))
    for element in elements:
        text = (element.text or "").strip()
        if text and element.category != "PageBreak":
            items.append((element.category, text, element.metadata.page_number or 1))
    _set_elements(doc, [item for item in items if item[1]])


def check_html_limits(text: str) -> None:
    """A ParseError when libxml2 (under unstructured's lxml) stops at one of its resource limits,
    such as nesting deeper than 256 elements: it then returns a cut tree and the text comes back
    empty or partial with no word of why."""
    from lxml import etree

    parser = etree.HTMLParser(remove_comments=True, remove_pis=True)
    try:
        etree.fromstring(text.encode("utf-8"), parser)
    except etree.LxmlError:  # malformed beyond recovery: unstructured's own parse gives the reason
        return
    for entry in parser.error_log:
        if entry.type_name == "ERR_RESOURCE_LIMIT":
            limit = entry.message.split(",")[0].strip()  # drop libxml2's "use XML_PARSE_HUGE" advice
            raise ParseError(
                f"HTML beyond the parser's limits ({limit}): its text cannot be extracted in full; not parsed"
            )


def _email_header(metadata: Any) -> str:
    lines = []
    for label, attr in (
        ("From", "sent_from"),
        ("To", "sent_to"),
        ("Subject", "subject"),
        ("Date", "last_modified"),
    ):
        value = getattr(metadata, attr, None)
        if value:
            lines.append(f"{label}: {', '.join(value) if isinstance(value, list) else value}")
    return "\n".join(lines)


def _set_elements(doc: ParsedDocument, items: list[tuple[str, str, int]]) -> None:
    """Lay elements out page by page, separated like pages, recording each one's offsets."""
    page_numbers = sorted({page for _, _, page in items}) or [1]
    renumber = {page: index for index, page in enumerate(page_numbers, start=1)}
    page_items: list[list[tuple[str, str]]] = [[] for _ in page_numbers]
    for category, text, page in items:
        page_items[renumber[page] - 1].append((category, text))
    set_pages(doc, [PAGE_SEPARATOR.join(text for _, text in group) for group in page_items], "unstructured")
    for page_no, (offset, group) in enumerate(zip(doc.page_offsets, page_items, strict=True), start=1):
        for category, text in group:
            doc.elements.append(Element(category, text, offset, offset + len(text), page_no))
            offset += len(text) + len(PAGE_SEPARATOR)
