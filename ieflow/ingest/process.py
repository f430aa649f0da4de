"""One file in, one JSON-able result out: parse and chunk under a time limit, or an error row.

A result is {"document": row, "chunks": [...], "seconds", "transient"}; `transient` marks errors
that may not recur (the file was missing, the time limit hit on a busy machine): callers must not
cache those.
"""

from __future__ import annotations

import time
from typing import Any

from ieflow.documents.chunk import chunk_document
from ieflow.documents.markup import warm_up
from ieflow.documents.parse import ParsedDocument, ParseError, parse_file
from ieflow.ingest.files import read_file
from ieflow.ingest.options import IngestOptions
from ieflow.ingest.timelimit import FileTimeout, time_limit


def _read_and_parse(
    uri: str, options: IngestOptions, storage_options: dict[str, Any] | None, root: str | None
) -> ParsedDocument:
    data = read_file(uri, storage_options, options.read_rules(root))
    return parse_file(
        uri,
        password=options.password,
        max_pages=options.max_pages,
        ocr=options.ocr,
        ocr_lang=options.ocr_lang,
        data=data,
    )


def parse_within_limits(
    uri: str,
    options: IngestOptions,
    storage_options: dict[str, Any] | None = None,
    root: str | None = None,
) -> ParsedDocument:
    """Read and parse one file as ingest does (regular files inside `root` only, the size cap, the
    time limit around both), without chunking; never raises for a bad file (`ieflow extract-file`)."""
    if options.file_timeout_s > 0:
        warm_up()  # the limit must never cut a parser's first import
    try:
        with time_limit(options.file_timeout_s):
            return _read_and_parse(uri, options, storage_options, root)
    except (ParseError, FileTimeout) as exc:
        return ParsedDocument(source=uri, status="error", error=str(exc))


def process_file(
    uri: str,
    options: IngestOptions,
    storage_options: dict[str, Any] | None = None,
    root: str | None = None,
) -> dict[str, Any]:
    """Read, parse and chunk one file under the time limit into a JSON-able result: {"document",
    "chunks", "seconds", "transient"}. Only a regular file inside `root` (None: anywhere) within
    the size cap is read. `transient` marks errors that may not recur (the file was missing, the
    time limit hit on a busy machine): callers must not cache those."""
    if options.file_timeout_s > 0:
        warm_up()  # the limit must never cut a parser's first import
    started = time.perf_counter()
    try:
        with time_limit(options.file_timeout_s):
            parsed = _read_and_parse(uri, options, storage_options, root)
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
