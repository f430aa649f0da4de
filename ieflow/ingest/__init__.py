"""Corpus ingestion without Prefect: discover, hash, parse in worker processes, write two tables.

`documents.parquet` has one row per distinct content (the same bytes under two names are one
document; `source_uris` lists every name) plus one row per file that could not even be read.
`chunks.parquet` has the chunks of every "ok" document. Columns: `DOCUMENT_COLUMNS`, `CHUNK_COLUMNS`.

The modules follow the run: `files` (discover, hash, group equal contents), `options` (what a
parse depends on: the cache key), `process` (one file -> one result), `pool` (parser worker
processes), `tables` (the two Parquet tables), `summary` (the run's report) and `run` (all of it in
plain Python; the Prefect flow composes the same pieces).
"""

from ieflow.ingest.files import FileRef, discover, group_by_content, hash_files, largest_first
from ieflow.ingest.options import IngestOptions
from ieflow.ingest.pool import ParserPool
from ieflow.ingest.process import FileTimeout, error_result, process_file
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

__all__ = [
    "CHUNK_COLUMNS",
    "DOCUMENT_COLUMNS",
    "FileRef",
    "FileTimeout",
    "IngestOptions",
    "IngestSummary",
    "ParserPool",
    "assemble",
    "discover",
    "error_result",
    "group_by_content",
    "hash_files",
    "largest_first",
    "load_previous",
    "process_file",
    "run_ingest",
    "summarize",
    "summary_markdown",
    "to_frames",
    "write_tables",
]
