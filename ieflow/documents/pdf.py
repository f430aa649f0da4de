"""PDFs with pypdf: layout-mode text per page, plain mode where layout mode loses text, OCR for
scanned pages without a text layer."""

from __future__ import annotations

import io
import logging
import threading
from typing import Any

from ieflow.documents import ocr as _ocr
from ieflow.documents.parsed import ParsedDocument, ParseError, describe_error, set_pages
from ieflow.documents.text import clean_layout

# A page whose text layer has fewer characters than this (a page number, a stray mark) counts as
# having no text layer, and is OCR'd when it shows a scan-sized image.
MIN_PAGE_CHARS = 20


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


def parse_pdf(
    doc: ParsedDocument, data: bytes, *, password: str | None, max_pages: int, ocr: bool, ocr_lang: str
) -> None:
    """Fill `doc` with the PDF's pages; raises ParseError with a reason a person can act on."""
    if data[:1024].find(b"%PDF-") < 0:
        raise ParseError("not a PDF: no %PDF- header at the start (binary junk or another format named .pdf)")
    truncated = data[-4096:].find(b"%%EOF") < 0
    reader = _open(data, password, truncated)
    n_pages = len(reader.pages)
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
            raise ParseError(
                f"page {index + 1} of {n_pages} cannot be read{hint}: {describe_error(exc)}"
            ) from exc
        if len(text.strip()) < MIN_PAGE_CHARS and _ocr.largest_image_pixels(page) >= _ocr.MIN_SCAN_PIXELS:
            if not ocr:
                no_text_pages.append(index + 1)
            else:
                text = _ocr_page(doc, data, index, page, ocr_lang, password, fallback=text)
        pages.append(text)
    if no_text_pages:
        doc.warnings.append(f"pages {no_text_pages} are scans without a text layer and OCR is off")
    # "ocr" only when most pages came from OCR: one scanned signature page does not make a text PDF
    # an OCR document. `ocr_pages` says exactly which pages were OCR'd.
    set_pages(doc, pages, "ocr" if len(doc.ocr_pages) * 2 > n_pages else "text_layer")


def _open(data: bytes, password: str | None, truncated: bool) -> Any:
    """A pypdf reader, decrypted; an unreadable structure or a wrong password is a ParseError."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

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
        len(reader.pages)  # reading the page tree is where a corrupt file fails
    except ParseError:
        raise
    except Exception as exc:
        hint = "truncated (no %%EOF marker at the end)" if truncated else "corrupt"
        raise ParseError(f"PDF is {hint}: cannot read its structure ({describe_error(exc)})") from exc
    return reader


def _ocr_page(
    doc: ParsedDocument, data: bytes, index: int, page: Any, lang: str, password: str | None, *, fallback: str
) -> str:
    """The page's text by OCR (noted in `doc.ocr_pages`); on failure a warning and `fallback`."""
    try:
        text = clean_layout(_ocr.ocr_pdf_page(data, index, page, lang=lang, password=password))
    except Exception as exc:  # one unreadable scan must not sink the document's text
        doc.warnings.append(f"page {index + 1}: OCR failed: {describe_error(exc)}")
        return fallback
    doc.ocr_pages.append(index + 1)
    return text


def _page_text(page: Any) -> str:
    """Layout-mode text, or plain-mode text where layout mode is known to lose text.

    Measured on the benchmark datasets' PDFs: layout mode skips text drawn inside form XObjects and
    drops rotated text (whole landscape pages came out empty), on ~7% of pages. Those pages get plain
    mode, which reads both; the check for rotation costs a second pass only on such pages.
    """
    if _form_has_fonts(page):
        return clean_layout(page.extract_text())
    _pypdf_warnings.state.rotated = False
    try:
        layout = clean_layout(page.extract_text(extraction_mode="layout"))
    except Exception:  # layout mode is younger and trips on odd fonts where plain mode works
        return clean_layout(page.extract_text())
    kept = _non_space(layout)
    if kept < MIN_PAGE_CHARS or getattr(_pypdf_warnings.state, "rotated", False):
        plain = clean_layout(page.extract_text())
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
