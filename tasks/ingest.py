"""Prefect tasks of the ingest flow, thin wrappers over `ieflow.ingest`.

One task per distinct document is the unit that makes ingestion incremental: its cache key is the
document's content hash plus the parse options (`ContentHashPolicy`), so a re-run loads every
result from the cache and a new file costs one parse. Prefect's overhead (a few ms per task) is
small next to parsing a document (tens of ms per page). The task body only hands the file to a
shared `ParserPool` of worker processes and waits: the tasks run on threads (cheap to block), the
parsing on processes (CPU-bound). Results are stored as JSON, never pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.context import TaskRunContext

from ieflow.ingest import (
    FileRef,
    IngestOptions,
    ParserPool,
    corpus_root,
    discover,
    hash_files,
    process_file,
    write_tables,
)


@dataclass
class ContentHashPolicy(CachePolicy):
    """Cache key = the file's SHA-256 + the options fingerprint (which includes PARSER_VERSION).

    Deliberately not the file name or the task's code: the same bytes under a new name, or a run
    after an unrelated code edit, reuse the parse. Bump `PARSER_VERSION` when output changes.
    """

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        sha256, fingerprint = inputs.get("sha256"), inputs.get("fingerprint")
        if not sha256 or not fingerprint:
            return None  # nothing stable to key on: do not cache
        return f"ieflow-ingest-{sha256}-{fingerprint}"


@task(name="discover-files", cache_policy=NO_CACHE)
def discover_files(
    source: str, storage_options: dict[str, Any] | None = None, options: IngestOptions | None = None
) -> list[FileRef]:
    """List the source and hash every file (hashing is what makes the parse cache content-keyed),
    reading only regular files inside the source, within the size cap and the time limit."""
    rules = (options or IngestOptions()).read_rules(corpus_root(source, storage_options))
    return hash_files(discover(source, storage_options=storage_options), storage_options, rules=rules)


@task(
    name="parse-document",
    cache_policy=ContentHashPolicy(),
    result_serializer="json",
    persist_result=True,
    task_run_name="parse-{sha256:.12}",
)
def parse_document(
    uri: str,
    sha256: str,
    fingerprint: str,
    options: IngestOptions,
    pool: ParserPool | None = None,
    storage_options: dict[str, Any] | None = None,
    run_token: str = "",
    root: str | None = None,
) -> dict[str, Any]:
    """Parse and chunk one document in a worker process; `run_token` marks fresh (uncached) results.
    The file is read only if its real path lies inside `root` (the corpus folder).

    `fingerprint` must be `options.fingerprint()`; it is a parameter so the cache key can be
    computed without re-deriving it (a slow salted hash when a password is set).
    """
    if pool:
        result = pool.run(uri, options, storage_options, root)
    else:
        result = process_file(uri, options, storage_options, root)
    if result.get("transient"):
        # Raising keeps a possibly passing error (a vanished file, a time limit on a busy machine)
        # out of the cache; the flow turns it into an error row.
        raise TransientParseError(result["document"]["error"])
    return {**result, "run_token": run_token}


class TransientParseError(Exception):
    """A parse error that may not recur; its message is the reason shown to people."""


@task(name="write-tables", cache_policy=NO_CACHE)
def write_ingest_tables(
    documents: list[dict[str, Any]], chunks: list[dict[str, Any]], out: str
) -> dict[str, str]:
    from ieflow.ingest import to_frames

    return write_tables(*to_frames(documents, chunks), out)
