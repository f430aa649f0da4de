"""OCR with Tesseract: image files and PDF pages that have no text layer.

Tesseract runs as a subprocess (through pytesseract). We pin it to one thread (`OMP_THREAD_LIMIT=1`)
because ingestion already runs one parser process per core; Tesseract's own OpenMP threads would
only oversubscribe the cores and make every worker slower.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

# A page rendered at 300 dpi is what Tesseract is tuned for; less loses small print.
DEFAULT_DPI = 300
# A scan shows up as one large image; smaller images on a blank page are logos, icons or signatures,
# not worth seconds of OCR each.
MIN_SCAN_PIXELS = 400_000
OCR_TIMEOUT_S = 120


class OcrUnavailable(RuntimeError):
    """The tesseract binary (or its language data) is missing."""


@lru_cache(maxsize=1)
def tesseract_path() -> str | None:
    return shutil.which("tesseract")


def tesseract_available() -> bool:
    return tesseract_path() is not None


def ocr_image(image: Image.Image, *, lang: str = "eng", timeout_s: float = OCR_TIMEOUT_S) -> str:
    """Text of one image. Raises `OcrUnavailable` when Tesseract is not installed."""
    if not tesseract_available():
        raise OcrUnavailable(
            "OCR needs the tesseract binary: install it (Debian: apt-get install tesseract-ocr "
            "tesseract-ocr-eng)"
        )
    import pytesseract

    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    try:
        return str(pytesseract.image_to_string(image, lang=lang, timeout=timeout_s))
    except pytesseract.TesseractError as exc:
        if "Failed loading language" in str(exc):
            raise OcrUnavailable(
                f"Tesseract has no data for language {lang!r} (Debian: apt-get install tesseract-ocr-{lang})"
            ) from exc
        raise


def image_frames(data: bytes, *, max_frames: int) -> Iterator[Image.Image]:
    """The frames of an image file (several for a multi-page TIFF), at most `max_frames`."""
    from PIL import Image, ImageSequence

    with Image.open(io.BytesIO(data)) as image:
        for index, frame in enumerate(ImageSequence.Iterator(image)):
            if index >= max_frames:
                break
            yield frame.copy()


def count_frames(data: bytes) -> int:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.verify()  # catches truncated and corrupt files before we OCR them
    with Image.open(io.BytesIO(data)) as image:
        return int(getattr(image, "n_frames", 1))


def largest_image_pixels(page: Any) -> int:
    """Pixel count of the largest image drawn on a pypdf page (looking one form level deep).

    Reads only the image dictionaries, never decodes the image data, so it is cheap enough to ask
    for every page without text.
    """

    def images_in(resources: Any, depth: int) -> Iterator[int]:
        try:
            xobjects = resources.get("/XObject") if resources is not None else None
            if xobjects is None:
                return
            xobjects = xobjects.get_object()
            for name in xobjects:
                obj = xobjects[name].get_object()
                subtype = obj.get("/Subtype")
                if subtype == "/Image":
                    yield int(obj.get("/Width", 0)) * int(obj.get("/Height", 0))
                elif subtype == "/Form" and depth < 2:
                    yield from images_in(obj.get("/Resources"), depth + 1)
        except Exception:  # a malformed resource dictionary just means "no usable image"
            return

    resources = page.get("/Resources")
    return max(images_in(resources.get_object() if resources is not None else None, 0), default=0)


def render_pdf_page(
    pdf_bytes: bytes, page_index: int, *, dpi: int = DEFAULT_DPI, password: str | None = None
) -> Image.Image:
    """Render one PDF page to an image with pdfium (it handles JBIG2/CCITT scans pypdf cannot)."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(pdf_bytes, password=password)
    try:
        page = document[page_index]
        try:
            bitmap = page.render(scale=dpi / 72, grayscale=True)
            return bitmap.to_pil()
        finally:
            page.close()
    finally:
        document.close()


def ocr_pdf_page(
    pdf_bytes: bytes, page_index: int, pypdf_page: Any, *, lang: str = "eng", password: str | None = None
) -> str:
    """OCR one PDF page: rendered with pdfium when installed, else its largest embedded image."""
    try:
        image = render_pdf_page(pdf_bytes, page_index, password=password)
    except ImportError:
        images = sorted(pypdf_page.images, key=lambda im: im.image.width * im.image.height)
        if not images:
            return ""
        image = images[-1].image
    return ocr_image(image, lang=lang)
