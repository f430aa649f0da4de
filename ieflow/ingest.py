"""Corpus ingestion without Prefect: discover, hash, parse in worker processes, write two tables.

`documents.parquet` has one row per distinct content (the same bytes under two names are one
document; `source_uris` lists every name) plus one row per file that could not even be read.
`chunks.parquet` has the chunks of every "ok" document. Columns: `DOCUMENT_COLUMNS`, `CHUNK_COLUMNS`.

Parsing is CPU-bound, so it runs in a process pool (spawned, not forked: the parent may run
Prefect's threads and event loop, which do not survive a fork). A worker that dies (a native crash,
the OOM killer) breaks the whole pool; the files that were in flight are then retried one at a
time in a fresh single-use process, so only the file that really kills its parser gets an error.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ieflow.documents.chunk import chunk_document
from ieflow.documents.parse import (
    DEFAULT_MAX_PAGES,
    PARSER_VERSION,
    ParsedDocument,
    ParseError,
    doc_id_for,
    parse_file,
    read_source,
)

if TYPE_CHECKING:
    import polars as pl

# Column: polars dtype name (polars is imported lazily: worker processes never need it).
DOCUMENT_COLUMNS = {
    "doc_id": "String",
    "sha256": "String",
    "source_uri": "String",
    "source_uris": "List[String]",
    "file_name": "String",
    "size_bytes": "Int64",
    "n_pages": "Int32",
    "n_chars": "Int64",
    "method": "String",
    "status": "String",
    "error": "String",
    "ocr_pages": "List[Int32]",
    "warnings": "List[String]",
    "parse_options": "String",
    "text": "String",
}
CHUNK_COLUMNS = {
    "doc_id": "String",
    "chunk_id": "String",
    "chunk_index": "Int32",
    "page_start": "Int32",
    "page_end": "Int32",
    "char_start": "Int64",
    "char_end": "Int64",
    "n_tokens": "Int32",
    "text": "String",
}


@dataclass(frozen=True)
class IngestOptions:
    """Everything that changes what a file parses to (and so belongs in its cache key)."""

    max_pages: int = DEFAULT_MAX_PAGES
    ocr: bool = True
    ocr_lang: str = "eng"
    target_tokens: int = 512
    overlap_tokens: int = 64
    file_timeout_s: float = 600.0
    password: str | None = field(default=None, repr=False)

    def fingerprint(self) -> str:
        """A short stable hash of the options and parser version. The password enters only as a
        slow salted hash, so cache keys and Parquet files never reveal it."""
        return _fingerprint(self)


@functools.lru_cache(maxsize=16)  # the salted hash is deliberately slow: once per options value
def _fingerprint(options: IngestOptions) -> str:
    values = asdict(options)
    values.pop("file_timeout_s")  # a time limit does not change a successful result
    if options.password is not None:
        values["password"] = hashlib.pbkdf2_hmac(
            "sha256", options.password.encode(), b"ieflow-ingest-cache", 100_000
        ).hex()[:16]
    values["parser_version"] = PARSER_VERSION
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class FileRef:
    uri: str
    size: int | None = None
    sha256: str | None = None
    error: str | None = None  # set when the file could not be read at all

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def doc_id(self) -> str:
        # Unreadable files have no content hash; their id hashes the name so it is still stable.
        return doc_id_for(self.sha256 or hashlib.sha256(b"unreadable:" + self.uri.encode()).hexdigest())


def discover(source: str, *, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Files under a folder (recursive), matching a glob, or one file; local or any fsspec URL.

    Hidden files and folders (".name") below the source are skipped: OS litter, temporary files,
    version control, not documents.
    """
    import fsspec

    fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
    root = path
    if any(ch in path for ch in "*?["):
        root = path[: min(path.find(ch) for ch in "*?[" if ch in path)].rsplit("/", 1)[0]
        paths = [p for p in fs.glob(path) if fs.isfile(p)]
    elif fs.isdir(path):
        paths = fs.find(path)
    elif fs.isfile(path):
        root, paths = path.rsplit("/", 1)[0], [path]
    else:
        raise FileNotFoundError(f"ingest source not found: {source}")
    paths = [p for p in paths if not any(part.startswith(".") for part in p[len(root) :].split("/"))]
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    return sorted(p if local else fs.unstrip_protocol(p) for p in paths)


def hash_files(
    uris: list[str], storage_options: dict[str, Any] | None = None, threads: int = 8
) -> list[FileRef]:
    """Content hashes. Threads suffice: hashlib and file reads release the GIL."""

    def one(uri: str) -> FileRef:
        try:
            data = _read(uri, storage_options)
        except ParseError as exc:
            return FileRef(uri, error=str(exc))
        return FileRef(uri, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, uris))


def _read(uri: str, storage_options: dict[str, Any] | None) -> bytes:
    if not storage_options:
        return read_source(uri)
    import fsspec

    try:
        with fsspec.open(uri, "rb", **storage_options) as handle:
            return bytes(handle.read())
    except FileNotFoundError as exc:
        raise ParseError("file not found: it was removed or renamed before it could be read") from exc


def group_by_content(refs: list[FileRef]) -> tuple[dict[str, list[FileRef]], list[FileRef]]:
    """(sha256 -> the files with those bytes, in name order; files that could not be read)."""
    groups: dict[str, list[FileRef]] = {}
    for ref in sorted(refs, key=lambda r: r.uri):
        if ref.sha256:
            groups.setdefault(ref.sha256, []).append(ref)
    return groups, [ref for ref in refs if not ref.sha256]


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
            data = _read(uri, storage_options)
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
    }


def _init_worker() -> None:
    # Ctrl-C is the parent's to handle; workers printing KeyboardInterrupt tracebacks is noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")


class ParserPool:
    """A process pool for `process_file`, callable from many threads (Prefect tasks or ours)."""

    def __init__(self, workers: int, max_tasks_per_child: int | None = 200) -> None:
        self.workers = max(0, workers)
        self._max_tasks = max_tasks_per_child
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _new_executor(self, workers: int, max_tasks: int | None) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            max_tasks_per_child=max_tasks,
        )

    def _start(self, workers: int, max_tasks: int | None) -> ProcessPoolExecutor:
        """A new pool, checked: workers that cannot even start are a setup problem to raise, not
        a reason to mark every file as an error."""
        executor = self._new_executor(workers, max_tasks)
        try:
            executor.submit(os.getpid).result(timeout=300)
        except BrokenProcessPool as exc:
            executor.shutdown(wait=False)
            raise RuntimeError(
                "parser worker processes could not start (see their traceback "
                "above); run with workers=0 to parse in-process"
            ) from exc
        return executor

    def _ensure(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = self._start(self.workers, self._max_tasks)
            return self._executor

    def run(
        self, uri: str, options: IngestOptions, storage_options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Process one file, blocking; never raises for a bad file."""
        if self.workers == 0:  # in-process: for debugging and tiny corpora
            return process_file(uri, options, storage_options)
        executor = self._ensure()
        try:
            return executor.submit(process_file, uri, options, storage_options).result()
        except BrokenProcessPool:
            with self._lock:
                if self._executor is executor:
                    self._executor = None
            executor.shutdown(wait=False, cancel_futures=True)
        # Alone in its own process, only a file that itself kills the parser fails.
        solo = self._new_executor(1, None)
        try:
            return solo.submit(process_file, uri, options, storage_options).result()
        except BrokenProcessPool:
            return error_result(
                uri,
                "the parser process died on this file (out of memory, or a crash in a native library)",
                options,
            )
        finally:
            solo.shutdown(wait=True)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __getstate__(self) -> dict[str, Any]:
        # Sent to another process (a Dask worker, say), a pool becomes "parse in-process there".
        return {"workers": 0}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["workers"])  # type: ignore[misc]

    def __enter__(self) -> ParserPool:
        if self.workers:  # start the workers (seconds: spawn + imports) while the caller lists files
            threading.Thread(target=self._ensure, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def assemble(
    groups: dict[str, list[FileRef]], results: dict[str, dict[str, Any]], unreadable: list[FileRef]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Document and chunk rows from per-content results (sha256 -> process_file result)."""
    documents, chunks = [], []
    for sha, refs in sorted(groups.items(), key=lambda item: item[1][0].uri):
        result, first = results[sha], refs[0]
        doc_id = first.doc_id
        documents.append(
            {
                **result["document"],
                "doc_id": doc_id,
                "sha256": sha,
                "size_bytes": first.size,
                "source_uri": first.uri,
                "source_uris": [r.uri for r in refs],
                "file_name": first.name,
            }
        )
        for chunk in result["chunks"]:
            chunks.append(
                {
                    **chunk,
                    "doc_id": doc_id,
                    "chunk_index": chunk["index"],
                    "chunk_id": f"{doc_id}-{chunk['index']:04d}",
                }
            )
    for ref in unreadable:
        documents.append(
            {
                "doc_id": ref.doc_id,
                "sha256": None,
                "source_uri": ref.uri,
                "source_uris": [ref.uri],
                "file_name": ref.name,
                "size_bytes": None,
                "n_pages": 0,
                "n_chars": 0,
                "method": None,
                "status": "error",
                "error": ref.error,
                "ocr_pages": [],
                "warnings": [],
                "parse_options": None,
                "text": "",
            }
        )
    return documents, chunks


def to_frames(
    documents: list[dict[str, Any]], chunks: list[dict[str, Any]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    import polars as pl

    def schema(columns: dict[str, str]) -> dict[str, Any]:
        return {
            name: pl.List(getattr(pl, kind[5:-1])) if kind.startswith("List[") else getattr(pl, kind)
            for name, kind in columns.items()
        }

    def frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pl.DataFrame:
        return pl.DataFrame([{k: row[k] for k in columns} for row in rows], schema=schema(columns))

    return frame(documents, DOCUMENT_COLUMNS), frame(chunks, CHUNK_COLUMNS)


def write_tables(documents: pl.DataFrame, chunks: pl.DataFrame, out: str) -> dict[str, str]:
    """Write both tables atomically (each file appears whole or not at all)."""
    from ieflow import storage

    paths = {
        "documents": storage.join(out, "documents.parquet"),
        "chunks": storage.join(out, "chunks.parquet"),
    }
    storage.write_parquet(chunks, paths["chunks"])
    storage.write_parquet(documents, paths["documents"])  # last: its presence marks a full run
    return paths


@dataclass
class IngestSummary:
    n_files: int
    n_documents: int
    n_pages: int
    n_chunks: int
    status_counts: dict[str, int]
    n_parsed: int  # parsed in this run (the rest came from a cache or earlier outputs)
    seconds: float
    slowest: list[dict[str, Any]]  # {"uri", "seconds", "pages"}
    errors: list[dict[str, str]]  # {"uri", "error"}
    outputs: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    n_files: int,
    documents: list[dict[str, Any]],
    chunks: list[dict[str, Any]],
    seconds_by_uri: dict[str, float],
    n_parsed: int,
    seconds: float,
    outputs: dict[str, str],
    top: int = 10,
) -> IngestSummary:
    counts = {status: 0 for status in ("ok", "empty", "error")}
    for row in documents:
        counts[row["status"]] += 1
    pages = {row["source_uri"]: row["n_pages"] for row in documents}
    slowest = sorted(seconds_by_uri.items(), key=lambda item: -item[1])[:top]
    return IngestSummary(
        n_files=n_files,
        n_documents=len(documents),
        n_pages=sum(pages.values()),
        n_chunks=len(chunks),
        status_counts=counts,
        n_parsed=n_parsed,
        seconds=round(seconds, 2),
        slowest=[{"uri": uri, "seconds": round(s, 3), "pages": pages.get(uri, 0)} for uri, s in slowest],
        errors=[
            {"uri": row["source_uri"], "error": row["error"] or ""}
            for row in documents
            if row["status"] == "error"
        ],
        outputs=outputs,
    )


def summary_markdown(summary: IngestSummary, max_errors: int = 50) -> str:
    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    counts = summary.status_counts
    lines = [
        "# Ingest summary",
        "",
        "| files | documents | pages | chunks | ok | empty | error | parsed now | seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {summary.n_files} | {summary.n_documents} | {summary.n_pages} | {summary.n_chunks} | "
        f"{counts.get('ok', 0)} | {counts.get('empty', 0)} | {counts.get('error', 0)} | "
        f"{summary.n_parsed} | {summary.seconds} |",
        "",
        "## Slowest files",
        "",
        "| file | seconds | pages |",
        "|---|---:|---:|",
        *(f"| {cell(s['uri'])} | {s['seconds']} | {s['pages']} |" for s in summary.slowest),
        "",
        f"## Errors ({len(summary.errors)})",
        "",
    ]
    if summary.errors:
        lines += ["| file | reason |", "|---|---|"]
        lines += [f"| {cell(e['uri'])} | {cell(e['error'])} |" for e in summary.errors[:max_errors]]
        if len(summary.errors) > max_errors:
            lines.append(f"\n…and {len(summary.errors) - max_errors} more (see documents.parquet)")
    else:
        lines.append("None.")
    lines += ["", "Outputs: " + ", ".join(f"`{v}`" for v in summary.outputs.values())]
    return "\n".join(lines) + "\n"


def load_previous(out: str, fingerprint: str) -> dict[str, dict[str, Any]]:
    """Results of an earlier run into `out` with the same options, by sha256 (to skip re-parsing)."""
    from ieflow import storage

    docs_url = storage.join(out, "documents.parquet")
    if not storage.exists(docs_url):
        return {}
    try:
        docs = storage.read_parquet(docs_url)
        chunks = storage.read_parquet(storage.join(out, "chunks.parquet"))
    except Exception:  # an unreadable old output is only a lost shortcut, never a failure
        return {}
    # Errors are parsed again: they are quick, and some (a vanished file) may not recur.
    docs = docs.filter((docs["parse_options"] == fingerprint) & (docs["status"] != "error"))
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for row in chunks.sort("doc_id", "chunk_index").iter_rows(named=True):
        row["index"] = row["chunk_index"]
        by_doc.setdefault(row["doc_id"], []).append(row)
    return {
        row["sha256"]: {
            "document": row,
            "chunks": by_doc.get(row["doc_id"], []),
            "seconds": 0.0,
            "transient": False,
        }
        for row in docs.iter_rows(named=True)
    }


def run_ingest(
    source: str,
    out: str,
    *,
    options: IngestOptions | None = None,
    workers: int | None = None,
    storage_options: dict[str, Any] | None = None,
    reuse_previous: bool = True,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
) -> IngestSummary:
    """The whole ingest in plain Python (the Prefect flow composes the same pieces)."""
    started = time.perf_counter()
    options = options or IngestOptions()
    workers = os.cpu_count() or 1 if workers is None else workers
    seconds: dict[str, float] = {}
    with ParserPool(workers) as pool, ThreadPoolExecutor(max(1, workers * 2)) as threads:
        refs = hash_files(discover(source, storage_options=storage_options), storage_options)
        groups, unreadable = group_by_content(refs)
        results = load_previous(out, options.fingerprint()) if reuse_previous else {}
        results = {sha: results[sha] for sha in groups if sha in results}
        todo = [sha for sha in groups if sha not in results]
        # Biggest first: a large file started last would leave the other workers idle at the end.
        todo.sort(key=lambda sha: -(groups[sha][0].size or 0))
        jobs = {sha: threads.submit(pool.run, groups[sha][0].uri, options, storage_options) for sha in todo}
        for sha, job in jobs.items():
            results[sha] = job.result()
            seconds[groups[sha][0].uri] = results[sha]["seconds"]
            if on_result:
                on_result(groups[sha][0].uri, results[sha])
    documents, chunks = assemble(groups, results, unreadable)
    outputs = write_tables(*to_frames(documents, chunks), out)
    return summarize(len(refs), documents, chunks, seconds, len(todo), time.perf_counter() - started, outputs)
