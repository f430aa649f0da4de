"""Parse one document (PDF, DOCX, HTML, EML, Markdown, text, image) into text with page provenance.

`parse_file` never raises on bad input: a corrupt, truncated, empty, encrypted, oversized or
unsupported file comes back with `status="error"` and a reason a person can act on.

Offsets: `text` is the pages joined by `PAGE_SEPARATOR` ("\\n\\n"), so page `i` (0-based) spans
`text[page_offsets[i] : page_offsets[i] + len(pages[i])]`. Element offsets index the same `text`.

PDF text comes from pypdf's layout mode (columns and indentation kept; trailing spaces and runs of
blank lines trimmed). Plain `.txt` files are read as they are (method "plain") rather than through
unstructured, which would re-flow lines into paragraphs: for receipts and forms the line structure
is the information, and offsets then point into the file's own text.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ieflow.documents import ocr as _ocr

PAGE_SEPARATOR = "\n\n"
DEFAULT_MAX_PAGES = 2000
# Bump when parsing output changes, so caches keyed on (content hash, options) are invalidated.
PARSER_VERSION = "1"
# A page whose text layer has fewer characters than this (a page number, a stray mark) counts as
# having no text layer, and is OCR'd when it shows a scan-sized image.
MIN_PAGE_CHARS = 20

Method = Literal["text_layer", "ocr", "unstructured", "plain"]
Status = Literal["ok", "empty", "error"]

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


class _PypdfWarnings(logging.Handler):
    """Swallows pypdf's warnings (tens per corpus for harmless oddities, burying real problems;
    real failures reach us as exceptions) but notes "rotated text dropped" for `_page_text`."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.state = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if "Rotated text" in record.getMessage():
            self.state.rotated = True


_pypdf_warnings = _PypdfWarnings()
_pypdf_logger = logging.getLogger("pypdf")
_pypdf_logger.addHandler(_pypdf_warnings)
_pypdf_logger.setLevel(logging.WARNING)  # the rotation check needs warnings whatever root's level
_pypdf_logger.propagate = False


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
            _parse_pdf(doc, data, password=password, max_pages=max_pages, ocr=ocr, ocr_lang=ocr_lang)
        elif kind == "text":
            _set_pages(doc, _split_form_feeds(decode_text(data)), "plain")
        elif kind == "image":
            _parse_image(doc, data, max_pages=max_pages, ocr=ocr, ocr_lang=ocr_lang)
        else:
            _parse_unstructured(doc, data, kind)
        if not doc.text.strip():
            doc.status = "empty"
    except ParseError as exc:
        _fail(doc, str(exc))
    except _ocr.OcrUnavailable as exc:
        _fail(doc, str(exc))
    except (MemoryError, RecursionError) as exc:
        _fail(doc, f"document too complex to parse ({type(exc).__name__})")
    except Exception as exc:  # a parser bug or an unforeseen malformation: one row, not a dead run
        _fail(doc, f"could not parse: {_describe(exc)}")
    return doc


def _describe(exc: BaseException) -> str:
    """`Type: message`, short, without object reprs (their memory addresses vary run to run)."""
    message = re.sub(r"\s*<[^<>]* at 0x[0-9a-f]+>", "", str(exc)).strip()
    return f"{type(exc).__name__}: {message}"[:240].rstrip(" :")


def _fail(doc: ParsedDocument, reason: str) -> None:
    doc.status, doc.error = "error", reason
    doc.text, doc.pages, doc.elements, doc.ocr_pages = "", [], [], []


def read_source(source: str) -> bytes:
    try:
        if "://" not in source or source.startswith("file://"):
            return Path(source.removeprefix("file://")).read_bytes()
        import fsspec

        with fsspec.open(source, "rb") as handle:
            return bytes(handle.read())
    except FileNotFoundError as exc:
        raise ParseError("file not found: it was removed or renamed before it could be read") from exc
    except IsADirectoryError as exc:
        raise ParseError("this is a folder, not a file") from exc
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


def decode_text(data: bytes) -> str:
    """UTF-8 (a BOM allowed) or BOM-marked UTF-16, newlines normalized. Anything else is an error:
    guessing a legacy encoding silently garbles names and amounts, which is worse than asking."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ParseError(
                f"text is not UTF-8 (invalid byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                "re-save it as UTF-8"
            ) from exc
    if "\x00" in text:
        raise ParseError("binary content, not text (it contains NUL bytes)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _split_form_feeds(text: str) -> list[str]:
    return text.split("\f") if "\f" in text else [text]


def _set_pages(doc: ParsedDocument, pages: list[str], method: Method) -> None:
    """Set pages and text; for plain text, one "Paragraph" element per blank-line block."""
    doc.pages, doc.method = pages, method
    doc.text = PAGE_SEPARATOR.join(pages)
    if method != "plain":
        return
    for page_no, offset in enumerate(doc.page_offsets, start=1):
        for match in re.finditer(r"\S(?:.*\S)?(?:\n[ \t]*\S.*)*", doc.pages[page_no - 1]):
            start, end = offset + match.start(), offset + match.end()
            doc.elements.append(Element("Paragraph", doc.text[start:end], start, end, page_no))


_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACES = re.compile(r"[ \t]+$", re.MULTILINE)


def _clean_layout(text: str) -> str:
    """Keep layout mode's columns and indentation, drop its trailing padding and blank-line runs."""
    text = _TRAILING_SPACES.sub("", text.replace("\r\n", "\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


def _parse_pdf(
    doc: ParsedDocument, data: bytes, *, password: str | None, max_pages: int, ocr: bool, ocr_lang: str
) -> None:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    if data[:1024].find(b"%PDF-") < 0:
        raise ParseError("not a PDF: no %PDF- header at the start (binary junk or another format named .pdf)")
    truncated = data[-4096:].find(b"%%EOF") < 0
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt(password if password is not None else "")
            except DependencyError as exc:
                raise ParseError(f"encrypted PDF needs an extra package: {exc}") from exc
            if not ok:
                raise ParseError(
                    "PDF is encrypted and the password given is wrong"
                    if password
                    else "PDF is encrypted and needs a password (none given)"
                )
        n_pages = len(reader.pages)
    except ParseError:
        raise
    except Exception as exc:
        hint = "truncated (no %%EOF marker at the end)" if truncated else "corrupt"
        raise ParseError(f"PDF is {hint}: cannot read its structure ({_describe(exc)})") from exc
    if n_pages == 0:
        raise ParseError("PDF has no pages")
    if n_pages > max_pages:
        raise ParseError(
            f"PDF has {n_pages} pages, over the page limit of {max_pages} (raise max_pages to parse it)"
        )
    if truncated:
        doc.warnings.append("no %%EOF marker at the end: the file may be truncated")
    pages: list[str] = []
    no_text_pages: list[int] = []
    for index, page in enumerate(reader.pages):
        try:
            text = _page_text(page)
        except Exception as exc:
            hint = " (the file looks truncated)" if truncated else ""
            raise ParseError(f"page {index + 1} of {n_pages} cannot be read{hint}: {_describe(exc)}") from exc
        if len(text.strip()) < MIN_PAGE_CHARS and _ocr.largest_image_pixels(page) >= _ocr.MIN_SCAN_PIXELS:
            if not ocr:
                no_text_pages.append(index + 1)
            else:
                try:
                    text = _clean_layout(
                        _ocr.ocr_pdf_page(data, index, page, lang=ocr_lang, password=password)
                    )
                    doc.ocr_pages.append(index + 1)
                except Exception as exc:  # one unreadable scan must not sink the document's text
                    doc.warnings.append(f"page {index + 1}: OCR failed: {_describe(exc)}")
        pages.append(text)
    if no_text_pages:
        doc.warnings.append(f"pages {no_text_pages} are scans without a text layer and OCR is off")
    # "ocr" only when most pages came from OCR: one scanned signature page does not make a text PDF
    # an OCR document. `ocr_pages` says exactly which pages were OCR'd.
    _set_pages(doc, pages, "ocr" if len(doc.ocr_pages) * 2 > n_pages else "text_layer")


def _page_text(page: Any) -> str:
    """Layout-mode text, or plain-mode text where layout mode is known to lose text.

    Measured on the PDFs of the benchmark datasets (DeepForm ad buys, CUAD and Kleister NDA
    contracts, invoice2data): layout mode skips text drawn inside form XObjects and drops
    rotated text (whole landscape pages came out empty), on ~7% of pages. Those pages get plain
    mode, which reads both; the check for rotation costs a second pass only on such pages.
    """
    if _form_has_fonts(page):
        return _clean_layout(page.extract_text())
    _pypdf_warnings.state.rotated = False
    try:
        layout = _clean_layout(page.extract_text(extraction_mode="layout"))
    except Exception:  # layout mode is younger and trips on odd fonts where plain mode works
        return _clean_layout(page.extract_text())
    kept = _non_space(layout)
    if kept < MIN_PAGE_CHARS or getattr(_pypdf_warnings.state, "rotated", False):
        plain = _clean_layout(page.extract_text())
        if _non_space(plain) > 1.2 * kept + MIN_PAGE_CHARS:
            return plain
    return layout


def _non_space(text: str) -> int:
    return len(text) - sum(text.count(ch) for ch in " \n\t")


def _form_has_fonts(page: Any) -> bool:
    """Whether the page draws a form XObject that carries its own fonts (so: text)."""
    try:
        resources = page.get("/Resources")
        xobjects = resources.get_object().get("/XObject") if resources is not None else None
        if xobjects is None:
            return False
        for ref in xobjects.get_object().values():
            form = ref.get_object()
            if form.get("/Subtype") == "/Form":
                form_resources = form.get("/Resources")
                if form_resources is not None and form_resources.get_object().get("/Font"):
                    return True
    except Exception:  # malformed resources: let the extraction itself decide
        return False
    return False


def _parse_image(doc: ParsedDocument, data: bytes, *, max_pages: int, ocr: bool, ocr_lang: str) -> None:
    if not ocr:
        raise ParseError("image files need OCR, which is turned off (ocr=False)")
    try:
        n_frames = _ocr.count_frames(data)
    except Exception as exc:
        raise ParseError(f"not a readable image: {_describe(exc)}") from exc
    if n_frames > max_pages:
        raise ParseError(f"image has {n_frames} pages, over the page limit of {max_pages}")
    pages = [
        _clean_layout(_ocr.ocr_image(frame, lang=ocr_lang))
        for frame in _ocr.image_frames(data, max_frames=max_pages)
    ]
    doc.ocr_pages = list(range(1, len(pages) + 1))
    _set_pages(doc, pages, "ocr")


def _parse_unstructured(doc: ParsedDocument, data: bytes, kind: str) -> None:
    from ieflow.documents import _unstructured_offline

    _unstructured_offline.apply()
    handle = io.BytesIO(data)
    try:
        if kind == "docx":
            from unstructured.partition.docx import partition_docx

            elements = partition_docx(file=handle)
        elif kind == "html":
            from unstructured.partition.html import partition_html

            elements = partition_html(text=decode_text(data))
        elif kind == "md":
            from unstructured.partition.md import partition_md

            elements = partition_md(text=decode_text(data))
        else:
            from unstructured.partition.email import partition_email

            elements = partition_email(file=handle)
    except ParseError:
        raise
    except Exception as exc:
        raise ParseError(f"not a readable {kind.upper()} file: {_describe(exc)}") from exc
    items: list[tuple[str, str, int]] = []  # (category, text, page)
    if kind == "eml" and elements:
        items.append(("EmailHeader", _email_header(elements[0].metadata), 1))
    for element in elements:
        text = (element.text or "").strip()
        if text and element.category != "PageBreak":
            items.append((element.category, text, element.metadata.page_number or 1))
    _set_elements(doc, [item for item in items if item[1]])


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
    _set_pages(doc, [PAGE_SEPARATOR.join(text for _, text in group) for group in page_items], "unstructured")
    for page_no, (offset, group) in enumerate(zip(doc.page_offsets, page_items, strict=True), start=1):
        for category, text in group:
            doc.elements.append(Element(category, text, offset, offset + len(text), page_no))
            offset += len(text) + len(PAGE_SEPARATOR)
