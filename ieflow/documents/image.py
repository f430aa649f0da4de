"""Images (PNG, JPEG, multi-page TIFF): every frame through OCR."""

from __future__ import annotations

from ieflow.documents import ocr as _ocr
from ieflow.documents.parsed import ParsedDocument, ParseError, describe_error, set_pages
from ieflow.documents.text import clean_layout


def parse_image(doc: ParsedDocument, data: bytes, *, max_pages: int, ocr: bool, ocr_lang: str) -> None:
    if not ocr:
        raise ParseError("image files need OCR, which is turned off (ocr=False)")
    try:
        n_frames = _ocr.count_frames(data)
    except Exception as exc:
        raise ParseError(f"not a readable image: {describe_error(exc)}") from exc
    if n_frames > max_pages:
        raise ParseError(f"image has {n_frames} pages, over the page limit of {max_pages}")
    pages = [
        clean_layout(_ocr.ocr_image(frame, lang=ocr_lang))
        for frame in _ocr.image_frames(data, max_frames=max_pages)
    ]
    doc.ocr_pages = list(range(1, len(pages) + 1))
    set_pages(doc, pages, "ocr")
