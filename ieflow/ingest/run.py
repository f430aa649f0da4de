"""The whole ingest in plain Python, without Prefect (the `ieflow ingest` command runs it)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ieflow.ingest.files import corpus_root, discover, group_by_content, hash_files, largest_first
from ieflow.ingest.options import IngestOptions
from ieflow.ingest.pool import ParserPool
from ieflow.ingest.summary import IngestSummary, summarize
from ieflow.ingest.tables import assemble, load_previous, to_frames, write_tables


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
        root = corpus_root(source, storage_options)
        uris = discover(source, storage_options=storage_options)
        refs = hash_files(uris, storage_options, rules=options.read_rules(root))
        groups, unreadable = group_by_content(refs)
        results = load_previous(out, options.fingerprint()) if reuse_previous else {}
        results = {sha: results[sha] for sha in groups if sha in results}
        todo = largest_first(groups, [sha for sha in groups if sha not in results])
        jobs = {
            sha: threads.submit(pool.run, groups[sha][0].uri, options, storage_options, root) for sha in todo
        }
        for sha, job in jobs.items():
            results[sha] = job.result()
            seconds[groups[sha][0].uri] = results[sha]["seconds"]
            if on_result:
                on_result(groups[sha][0].uri, results[sha])
    documents, chunks = assemble(groups, results, unreadable)
    outputs = write_tables(*to_frames(documents, chunks), out)
    return summarize(len(refs), documents, chunks, seconds, len(todo), time.perf_counter() - started, outputs)
