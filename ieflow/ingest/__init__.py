"""Corpus ingestion without Prefect: discover, hash, parse in worker processes, write two tables.

`documents.parquet` has one row per distinct content (the same bytes under two names are one
document; `source_uris` lists every name) plus one row per file that could not even be read.
`chunks.parquet` has the chunks of every "ok" document. Columns: `DOCUMENT_COLUMNS`, `CHUNK_COLUMNS`.

The modules follow the run: `files` (discover, hash under the read rules, group equal contents),
`options` (what a parse depends on: the cache key; and the read limits), `process` (one file -> one
result), `timelimit` (the per-file limit in any thread), `pool` (parser worker processes), `tables`
(the two Parquet tables), `summary` (the run's report) and `run` (all of it in plain Python; the
Prefect flow composes the same pieces). What may be read at all: `ieflow.documents.source`.
"""

from ieflow.ingest.files import (
    FileRef,
    corpus_root,
    discover,
    group_by_content,
    hash_files,
    largest_first,
)
from ieflow.ingest.options import IngestOptions
from ieflow.ingest.pool import ParserPool
from ieflow.ingest.process import error_result, parse_within_limits, process_file
from ieflow.ingest.run import run_ingest
from ieflow.ingest.summary import IngestSummary, summarize, summary_markdown
from ieflow.ingest.tables import (
    CHUNK_COLUMNS,
    DOCUMENT_COLUMNS,
    assemble,
    load_previous,
    to_frames,
    write_tables,
)
from ieflow.ingest.timelimit import FileTimeout, time_limit

__all__ = [
    "CHUNK_COLUMNS",
    "DOCUMENT_COLUMNS",
    "FileRef",
    "FileTimeout",
    "IngestOptions",
    "IngestSummary",
    "ParserPool",
    "assemble",
    "corpus_root",
    "discover",
    "error_result",
    "group_by_content",
    "hash_files",
    "largest_first",
    "load_previous",
    "parse_within_limits",
    "process_file",
    "run_ingest",
    "summarize",
    "summary_markdown",
    "time_limit",
    "to_frames",
    "write_tables",
]
