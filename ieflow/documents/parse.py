"""Parse one document (PDF, DOCX, HTML, EML, Markdown, text, image) into text with page provenance.

`parse_file` never raises on bad input: a corrupt, truncated, empty, encrypted, oversized or
unsupported file comes back with `status="error"` and a reason a person can act on.

The result type is `ieflow.documents.parsed.ParsedDocument` (offsets, pages, elements); each format
has its module: `pdf`, `image`, `markup` (DOCX, HTML, Markdown, e-mail via unstructured), and plain
text here.

PDF text comes from pypdf's layout mode (columns and indentation kept; trailing spaces and runs of
blank lines trimmed). Plain `.txt` files are read as they are (method "plain") rather than through
unstructured, which would re-flow lines into paragraphs: for receipts and forms the line structure
is the information, and offsets then point into the file's own text.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ieflow.documents import ocr as _ocr
from ieflow.documents.image import parse_image
from ieflow.documents.markup import parse_with_unstructured
from ieflow.documents.parsed import (
    PAGE_SEPARATOR,
    Element,
    Method,
    ParsedDocument,
    ParseError,
    Status,
    describe_error,
    doc_id_for,
    set_pages,
)
from ieflow.documents.pdf import MIN_PAGE_CHARS, parse_pdf
from ieflow.documents.source import ReadRules, read_source_bytes
from ieflow.documents.text import decode_text, split_form_feeds

__all__ = [
    "DEFAULT_MAX_PAGES",
    "FORMATS",
    "MIN_PAGE_CHARS",
    "PAGE_SEPARATOR",
    "PARSER_VERSION",
    "Element",
    "Method",
    "ParseError",
    "ParsedDocument",
    "ReadRules",
    "Status",
    "decode_text",
    "detect_format",
    "doc_id_for",
    "parse_file",
    "read_source",
]

DEFAULT_MAX_PAGES = 2000
# Bump when parsing output changes, so caches keyed on (content hash, options) are invalidated.
PARSER_VERSION = "1"

FORMATS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".eml": "eml",
    ".md": "md",
    ".markdown": "md",
    ".txt": "text",
    ".text": "text",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".tif": "image",
    ".tiff": "image",
}


def parse_file(
    path_or_url: str | Path,
    *,
    password: str | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
    ocr: bool = True,
    ocr_lang: str = "eng",
    data: bytes | None = None,
) -> ParsedDocument:
    """Parse a local path or fsspec URL. Never raises on bad input (see the module docstring).

    `data` lets a caller that already holds the bytes skip the read. `max_pages` bounds PDFs and
    multi-page TIFFs: a longer document becomes an error row rather than hours of work.
    """
    source = str(path_or_url)
    doc = ParsedDocument(source=source)
    try:
        if data is None:
            data = read_source(source)
        doc.size_bytes = len(data)
        doc.sha256 = hashlib.sha256(data).hexdigest()
        if not data:
            raise ParseError("file is empty (0 bytes)")
        kind = detect_format(source, data)
        if kind == "pdf":
            parse_pdf(doc, data, password=password, max_pages=max_pages, ocr=ocr, ocr_lang=ocr_lang)
        elif kind == "text":
            set_pages(doc, split_form_feeds(decode_text(data)), "plain")
        elif kind == "image":
            parse_image(doc, data, max_pages=max_pages, ocr=ocr, ocr_lang=ocr_lang)
        else:
            parse_with_unstructured(doc, data, kind)
        if not doc.text.strip():
            doc.status = "empty"
    except ParseError as exc:
        _fail(doc, str(exc))
    except _ocr.OcrUnavailable as exc:
        _fail(doc, str(exc))
    except (MemoryError, RecursionError) as exc:
        _fail(doc, f"document too complex to parse ({type(exc).__name__})")
    except Exception as exc:  # a parser bug or an unforeseen malformation: one row, not a dead run
        _fail(doc, f"could not parse: {describe_error(exc)}")
    return doc


def _fail(doc: ParsedDocument, reason: str) -> None:
    doc.status, doc.error = "error", reason
    doc.text, doc.pages, doc.elements, doc.ocr_pages = "", [], [], []


def read_source(source: str, rules: ReadRules | None = None) -> bytes:
    """The bytes of a local path or URL, under `rules` (default: a file a person named: links are
    followed, but only to a regular file, within the size cap); a ParseError says why not."""
    try:
        return read_source_bytes(source, rules or ReadRules(follow_symlinks=True))
    except PermissionError as exc:
        raise ParseError("permission denied when reading the file") from exc


def detect_format(source: str, data: bytes) -> str:
    """Format by extension; by magic bytes when the name has no known extension."""
    suffix = Path(source.split("?")[0]).suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    head = data[:8]
    if data[:1024].find(b"%PDF-") >= 0:
        return "pdf"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")):
        return "image"
    supported = ", ".join(sorted(FORMATS))
    raise ParseError(f"unsupported file type {suffix or '(no extension)'!r}; supported: {supported}")
