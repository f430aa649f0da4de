"""One file in, one JSON-able result out: parse and chunk under a time limit, or an error row.

A result is {"document": row, "chunks": [...], "seconds", "transient"}; `transient` marks errors
that may not recur (the file was missing, the time limit hit on a busy machine): callers must not
cache those.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ieflow.documents.chunk import chunk_document
from ieflow.documents.parse import ParsedDocument, ParseError, parse_file
from ieflow.ingest.files import read_file
from ieflow.ingest.options import IngestOptions


class FileTimeout(BaseException):
    """Raised by the time limit. A BaseException so that no `except Exception` in a parsing
    library (pypdf has several) can swallow it and carry on."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """SIGALRM-based limit; only in a main thread (worker processes run jobs in theirs)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise FileTimeout(f"parsing took longer than {seconds:g} s (file_timeout_s); skipped")

    previous = signal.signal(signal.SIGALRM, expire)
    # Re-fire every second: a library that swallows the first exception gets another one.
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def process_file(
    uri: str, options: IngestOptions, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Parse and chunk one file into a JSON-able result: {"document", "chunks", "seconds",
    "transient"}. `transient` marks errors that may not recur (the file was missing, the time limit
    hit on a busy machine): callers must not cache those."""
    started = time.perf_counter()
    try:
        with _time_limit(options.file_timeout_s):
            data = read_file(uri, storage_options)
            parsed = parse_file(
                uri,
                password=options.password,
                max_pages=options.max_pages,
                ocr=options.ocr,
                ocr_lang=options.ocr_lang,
                data=data,
            )
            chunks = chunk_document(
                parsed, target_tokens=options.target_tokens, overlap_tokens=options.overlap_tokens
            )
    except (ParseError, FileTimeout) as exc:
        return error_result(uri, str(exc), options, seconds=time.perf_counter() - started)
    return {
        "document": _document_row(parsed, options),
        "chunks": [c.to_dict() for c in chunks],
        "seconds": round(time.perf_counter() - started, 4),
        "transient": False,
    }


def error_result(
    uri: str, reason: str, options: IngestOptions, *, transient: bool = True, seconds: float = 0.0
) -> dict[str, Any]:
    parsed = ParsedDocument(source=uri, status="error", error=reason)
    return {
        "document": _document_row(parsed, options),
        "chunks": [],
        "seconds": round(seconds, 4),
        "transient": transient,
    }


def _document_row(parsed: ParsedDocument, options: IngestOptions) -> dict[str, Any]:
    return {
        "sha256": parsed.sha256,
        "size_bytes": parsed.size_bytes,
        "n_pages": parsed.n_pages,
        "n_chars": len(parsed.text),
        "method": parsed.method,
        "status": parsed.status,
        "error": parsed.error,
        "ocr_pages": parsed.ocr_pages,
        "warnings": parsed.warnings,
        "parse_options": options.fingerprint(),
        "text": parsed.text,
        "page_offsets": parsed.page_offsets,
    }
