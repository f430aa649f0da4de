"""Parsing and chunking of single documents (no Prefect, no worker processes).

`tests/fixtures/bad_corpus/` holds small committed bad inputs, made once with `make_pdf` below:
corrupt.pdf (catalog and page-tree objects overwritten with junk), truncated.pdf (the first 60% of
a good PDF), junk.pdf (2 KB of random bytes), empty.txt (0 bytes), zero_pages.pdf (a valid PDF
with an empty page tree), latin1.txt (cp1252 text), notes.xyz (unsupported extension),
encrypted.pdf (AES-128, user password "secret"), binary.txt (NUL bytes), broken.docx (not a ZIP),
broken.png (PNG signature, junk after). Big-page-count PDFs are generated at test time.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

import ieflow  # noqa: F401  (offline env defaults first)
from ieflow.documents import chunk_document, count_tokens, parse_file
from ieflow.documents.ocr import tesseract_available
from ieflow.documents.parse import PAGE_SEPARATOR, ParsedDocument

BAD = Path(__file__).parent / "fixtures" / "bad_corpus"
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_tesseract = pytest.mark.skipif(not tesseract_available(), reason="tesseract not installed")


def make_pdf(pages: list[str], *, password: str | None = None, user_password: str = "") -> bytes:
    """A small PDF with a real text layer (Helvetica, one text line per input line)."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        ops = []
        for number, line in enumerate(text.split("\n")):
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"BT /F1 11 Tf 72 {740 - 14 * number} Td ({escaped}) Tj ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    if password is not None:
        writer.encrypt(user_password=user_password, owner_password=password, algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_blank_pdf(n_pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(n_pages):
        writer.add_blank_page(72, 72)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_scan(text: str, fmt: str = "PNG") -> bytes:
    """An image of large black-on-white text: a "scan" without any text layer."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (1400, 300), 255)
    ImageDraw.Draw(image).text((40, 100), text, fill=0, font=ImageFont.load_default(size=64))
    buffer = io.BytesIO()
    image.save(buffer, fmt, resolution=150)
    return buffer.getvalue()


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# --- PDFs ---------------------------------------------------------------------------------------


def test_pdf_pages_text_and_offsets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.pdf",
        make_pdf(["NDA between ACME and Bob.\nSigned 1 March 2020.", "Governed by the laws of Oregon."]),
    )
    doc = parse_file(path)
    assert (doc.status, doc.method, doc.error, doc.n_pages) == ("ok", "text_layer", None, 2)
    assert doc.pages[0].splitlines() == ["NDA between ACME and Bob.", "Signed 1 March 2020."]
    assert doc.text == PAGE_SEPARATOR.join(doc.pages)
    for offset, page in zip(doc.page_offsets, doc.pages, strict=True):
        assert doc.text[offset : offset + len(page)] == page
    assert doc.page_at(doc.text.index("Oregon")) == 2
    assert doc.sha256 is not None and doc.doc_id == doc.sha256[:16]
    assert parse_file(path).to_dict() == doc.to_dict()  # deterministic
    assert ParsedDocument.from_dict(doc.to_dict()) == doc


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("corrupt.pdf", "PDF is corrupt"),
        ("truncated.pdf", "PDF is truncated"),
        ("junk.pdf", "not a PDF"),
        ("empty.txt", "file is empty"),
        ("zero_pages.pdf", "PDF has no pages"),
        ("latin1.txt", "not UTF-8"),
        ("notes.xyz", "unsupported file type '.xyz'"),
        ("encrypted.pdf", "needs a password"),
        ("binary.txt", "binary content"),
        ("broken.docx", "not a readable DOCX"),
        ("broken.png", "not a readable image"),
    ],
)
def test_bad_files_become_error_rows(name: str, reason: str) -> None:
    doc = parse_file(BAD / name)
    assert doc.status == "error"
    assert reason in (doc.error or "")
    assert (doc.text, doc.pages, doc.elements) == ("", [], [])
    assert "0x" not in (doc.error or "").replace("0xe9", "")  # no object addresses in reasons


def test_page_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "long.pdf", make_blank_pdf(3000))
    doc = parse_file(path, max_pages=2000)
    assert doc.status == "error"
    assert "3000 pages" in (doc.error or "") and "limit of 2000" in (doc.error or "")
    assert parse_file(path, max_pages=3000).status == "empty"  # blank pages: no text, no error


def test_encrypted_pdfs(tmp_path: Path) -> None:
    assert parse_file(BAD / "encrypted.pdf", password="secret").text == "Secret salary figures: 100,000"
    wrong = parse_file(BAD / "encrypted.pdf", password="guess")
    assert wrong.status == "error" and "password given is wrong" in (wrong.error or "")
    # Encrypted with an empty user password (permissions only): opens without one.
    path = write(tmp_path, "perm.pdf", make_pdf(["Open to all readers."], password="owner-only"))
    assert parse_file(path).text == "Open to all readers."


def test_missing_file_and_folder(tmp_path: Path) -> None:
    missing = parse_file(tmp_path / "gone.pdf")
    assert missing.status == "error" and "file not found" in (missing.error or "")
    assert "folder" in (parse_file(tmp_path).error or "")


@pytest.mark.parametrize("suffix", [".pdf", ".docx", ".html", ".eml", ".md", ".txt", ".png", ".tiff"])
def test_random_bytes_never_raise(tmp_path: Path, suffix: str) -> None:
    import random

    rng = random.Random(suffix)
    for size in (1, 17, 4096):
        doc = parse_file(write(tmp_path, f"x{size}{suffix}", bytes(rng.randrange(256) for _ in range(size))))
        assert doc.status in ("error", "empty", "ok")
        if doc.status == "error":
            assert doc.error


def test_layout_fallbacks_on_real_forms() -> None:
    """Layout mode loses form-XObject text and rotated pages; the parser falls back to plain mode."""
    folder = DATASETS / "deepform_adbuy" / "documents"
    cases = ["4eedb947-852a-9a8c-55b7-37b95dc1d3f2.pdf", "48310d93-0e1d-5377-b3e1-8bcdfaaa6422.pdf"]
    if not all((folder / name).exists() for name in cases):
        pytest.skip("shared datasets not available")
    for name in cases:
        doc = parse_file(folder / name)
        assert doc.status == "ok"
        assert len("".join(doc.pages[0].split())) > 800, name


# --- text and unstructured formats --------------------------------------------------------------


def test_plain_text_is_kept_verbatim(tmp_path: Path) -> None:
    raw = "SHOP SDN BHD\r\nTOTAL 12.00\r\n\r\nThank you\r\n"
    doc = parse_file(write(tmp_path, "r.txt", raw))
    assert (doc.method, doc.status) == ("plain", "ok")
    assert doc.text == raw.replace("\r\n", "\n")
    assert [e.text for e in doc.elements] == ["SHOP SDN BHD\nTOTAL 12.00", "Thank you"]
    assert all(doc.text[e.char_start : e.char_end] == e.text for e in doc.elements)
    utf16 = parse_file(write(tmp_path, "u.txt", "Grüße\n".encode("utf-16")))
    assert utf16.text == "Grüße\n"
    paged = parse_file(write(tmp_path, "p.txt", "one\fTwo"))
    assert paged.pages == ["one", "Two"] and paged.page_at(paged.text.index("Two")) == 2
    assert parse_file(write(tmp_path, "blank.txt", " \n\n ")).status == "empty"


def _docx(tmp_path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Mutual NDA", 1)
    document.add_paragraph("The parties agree to keep the information confidential.")
    path = tmp_path / "a.docx"
    document.save(str(path))
    return path


@pytest.mark.parametrize("kind", ["html", "md", "docx", "eml"])
def test_unstructured_formats_offline(tmp_path: Path, kind: str) -> None:
    sources = {
        "html": "<html><body><h1>Mutual NDA</h1><p>The parties agree to keep the information "
        "confidential.</p></body></html>",
        "md": "# Mutual NDA\n\nThe parties agree to keep the information confidential.\n",
        "eml": "From: alice@example.com\nTo: bob@example.com\nSubject: Mutual NDA\n"
        "Content-Type: text/plain; charset=utf-8\n\nThe parties agree to keep the "
        "information confidential.\n",
    }
    path = _docx(tmp_path) if kind == "docx" else write(tmp_path, f"a.{kind}", sources[kind])
    doc = parse_file(path)
    assert (doc.status, doc.method, doc.error) == ("ok", "unstructured", None)
    assert "The parties agree to keep the information confidential." in doc.text
    assert all(doc.text[e.char_start : e.char_end] == e.text for e in doc.elements)
    categories = [e.category for e in doc.elements]
    assert "NarrativeText" in categories  # the offline verb tagger at work
    if kind == "eml":
        assert categories[0] == "EmailHeader" and "Subject: Mutual NDA" in doc.elements[0].text
    else:
        assert ("Title", "Mutual NDA") in [(e.category, e.text) for e in doc.elements]


# --- OCR ----------------------------------------------------------------------------------------


@needs_tesseract
def test_ocr_image_and_scanned_pdf(tmp_path: Path) -> None:
    image = parse_file(write(tmp_path, "scan.png", make_scan("INVOICE TOTAL 42")))
    assert (image.status, image.method, image.ocr_pages) == ("ok", "ocr", [1])
    assert "INVOICE" in image.text and "42" in image.text
    from PIL import Image

    pdf = io.BytesIO()
    Image.open(io.BytesIO(make_scan("RECEIPT NUMBER 7"))).save(pdf, "PDF", resolution=150)
    scanned = parse_file(write(tmp_path, "scan.pdf", pdf.getvalue()))
    assert (scanned.status, scanned.method, scanned.ocr_pages) == ("ok", "ocr", [1])
    assert "RECEIPT" in scanned.text
    off = parse_file(tmp_path / "scan.pdf", ocr=False)
    assert off.status == "empty" and "OCR is off" in off.warnings[0]
    assert "OCR" in (parse_file(tmp_path / "scan.png", ocr=False).error or "")


def test_failed_ocr_of_one_page_keeps_the_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from ieflow.documents import ocr

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("tesseract crashed")

    monkeypatch.setattr(ocr, "ocr_pdf_page", broken)
    scan = io.BytesIO()
    Image.open(io.BytesIO(make_scan("PAGE TWO"))).save(scan, "PDF", resolution=150)
    writer = PdfWriter()
    writer.append(io.BytesIO(make_pdf(["Page one has a text layer and enough characters."])))
    writer.append(scan)
    merged = io.BytesIO()
    writer.write(merged)
    doc = parse_file(write(tmp_path, "mixed.pdf", merged.getvalue()))
    assert (doc.status, doc.method, doc.ocr_pages, doc.n_pages) == ("ok", "text_layer", [], 2)
    assert doc.warnings == ["page 2: OCR failed: RuntimeError: tesseract crashed"]


# --- chunking -----------------------------------------------------------------------------------


def test_count_tokens_estimate() -> None:
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("1234567") == 3  # digits in groups of three
    assert count_tokens("") == 0


def _long_pdf_doc(tmp_path: Path) -> ParsedDocument:
    sentence = "The receiving party shall keep all confidential information secret."
    pages = ["\n".join(f"{p}.{i} {sentence}" for i in range(25)) for p in range(1, 6)]
    return parse_file(write(tmp_path, "long.pdf", make_pdf(pages)))


def test_chunks_have_exact_provenance_and_bounded_size(tmp_path: Path) -> None:
    doc = _long_pdf_doc(tmp_path)
    chunks = chunk_document(doc, target_tokens=200, overlap_tokens=30)
    assert len(chunks) > 5
    covered = set()
    for index, chunk in enumerate(chunks):
        assert chunk.index == index and chunk.chunk_id == f"{doc.doc_id}-{index:04d}"
        assert doc.text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.n_tokens == count_tokens(chunk.text) <= 200
        assert chunk.page_start == doc.page_at(chunk.char_start)
        assert chunk.page_end == doc.page_at(chunk.char_end - 1)
        covered.update(range(chunk.char_start, chunk.char_end))
    assert all(i in covered for i, ch in enumerate(doc.text) if not ch.isspace())
    for before, after in itertools.pairwise(chunks):
        assert before.char_start < after.char_start < before.char_end  # overlapping, moving on
        assert count_tokens(doc.text[after.char_start : before.char_end]) <= 30
        assert doc.text[after.char_start - 1] == "\n"  # overlap starts at a line start here
    assert chunk_document(doc, target_tokens=200, overlap_tokens=30) == chunks
    no_overlap = chunk_document(doc, target_tokens=200, overlap_tokens=0)
    assert all(a.char_end <= b.char_start for a, b in itertools.pairwise(no_overlap))


def test_chunks_prefer_page_and_title_boundaries(tmp_path: Path) -> None:
    doc = _long_pdf_doc(tmp_path)  # ~400 tokens a page
    chunks = chunk_document(doc, target_tokens=450, overlap_tokens=0)
    assert [(c.page_start, c.page_end) for c in chunks] == [(p, p) for p in range(1, 6)]
    para = "The parties agree that this clause applies to every disclosure made under it. " * 12
    md = "\n\n".join(f"# Section {n}\n\n{para}" for n in range(1, 5))
    sections = parse_file(write(tmp_path, "s.md", md))
    chunks = chunk_document(sections, target_tokens=300, overlap_tokens=40)
    assert [c.text.split("\n")[0] for c in chunks] == [f"Section {n}" for n in range(1, 5)]


def test_chunking_edge_cases(tmp_path: Path) -> None:
    small = parse_file(write(tmp_path, "s.txt", "\n  Just one line.  \n"))
    [only] = chunk_document(small)
    assert only.text == "Just one line." and (only.page_start, only.page_end) == (1, 1)
    assert chunk_document(parse_file(BAD / "corrupt.pdf")) == []
    assert chunk_document(parse_file(write(tmp_path, "e.txt", "  \n"))) == []
    with pytest.raises(ValueError):
        chunk_document(small, target_tokens=64, overlap_tokens=64)
    # A single "word" longer than the target still gets cut, at token boundaries.
    giant = parse_file(write(tmp_path, "g.txt", "x" * 5000))
    parts = chunk_document(giant, target_tokens=100, overlap_tokens=0)
    assert "".join(c.text for c in parts) == "x" * 5000 and max(c.n_tokens for c in parts) <= 100
