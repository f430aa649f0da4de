"""The `ingest` flow: a corpus (folder, glob or fsspec URL) -> documents.parquet + chunks.parquet.

Reads top to bottom as the pipeline runs: list and hash the files; parse each distinct document
(cached on its content hash, parsed in worker processes); write the two tables atomically; publish
a markdown summary artifact. A bad file becomes an error row; the flow itself fails only when the
source cannot be listed or the outputs cannot be written.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field, SecretStr, model_validator

from ieflow.documents.parse import DEFAULT_MAX_PAGES
from ieflow.documents.source import DEFAULT_MAX_FILE_MB
from ieflow.ingest import (
    FileRef,
    IngestOptions,
    ParserPool,
    assemble,
    corpus_root,
    error_result,
    group_by_content,
    largest_first,
    summarize,
    summary_markdown,
)
from ieflow_tasks.ingest import TransientParseError, discover_files, parse_document, write_ingest_tables


class IngestParams(BaseModel):
    source: str = Field(description="Folder, glob or fsspec URL of the documents (file://, s3://, …).")
    out: str = Field(description="Folder or fsspec URL for documents.parquet and chunks.parquet.")
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=0,
        description="Parser processes (0: parse in the flow's own process).",
    )
    max_pages: int = Field(DEFAULT_MAX_PAGES, ge=1, description="Longer PDFs/TIFFs become error rows.")
    ocr: bool = Field(True, description="OCR images and PDF pages without a text layer (Tesseract).")
    ocr_lang: str = Field("eng", description="Tesseract language(s), e.g. 'eng+deu'.")
    target_tokens: int = Field(512, ge=16, description="Chunk size target (estimated tokens).")
    overlap_tokens: int = Field(64, ge=0, description="Tokens repeated between neighbouring chunks.")
    file_timeout_s: float = Field(600.0, ge=0, description="Per-file read+parse time limit (0: none).")
    max_file_mb: float = Field(
        DEFAULT_MAX_FILE_MB, gt=0, description="Size cap: bigger files are error rows, never read."
    )
    follow_symlinks: bool = Field(
        False, description="Read links whose real path stays inside the source (others never)."
    )
    pdf_password: SecretStr | None = Field(
        None, description="Password for encrypted PDFs (runs started here; stored parameters are masked)."
    )
    pdf_password_secret: str | None = Field(
        None, description="Name of a Prefect Secret block holding the PDF password (for deployments)."
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for a remote source (credentials are better left to the "
        "environment or fsspec config, which work with no options here).",
    )
    cache_dir: str | None = Field(
        None, description="Local folder for cached parse results (default: Prefect's result storage)."
    )

    @model_validator(mode="after")
    def _overlap_below_target(self) -> IngestParams:
        if self.overlap_tokens >= self.target_tokens:
            raise ValueError("overlap_tokens must be smaller than target_tokens")
        return self

    def options(self) -> IngestOptions:
        password = self.pdf_password.get_secret_value() if self.pdf_password else None
        if self.pdf_password_secret:
            from ieflow_tasks.secrets import secret_value

            password = secret_value(self.pdf_password_secret)
        return IngestOptions(
            max_pages=self.max_pages,
            ocr=self.ocr,
            ocr_lang=self.ocr_lang,
            target_tokens=self.target_tokens,
            overlap_tokens=self.overlap_tokens,
            file_timeout_s=self.file_timeout_s,
            password=password,
            max_file_mb=self.max_file_mb,
            follow_symlinks=self.follow_symlinks,
        )


# Task threads only wait on the parser processes, so there can be more of them than cores; they
# keep every worker process fed while others persist results.
@flow(name="ingest", task_runner=ThreadPoolTaskRunner(max_workers=max(8, 2 * (os.cpu_count() or 1))))
def ingest(params: IngestParams) -> dict[str, Any]:
    """Parse a corpus into documents.parquet and chunks.parquet; returns the run summary."""
    logger = get_run_logger()
    started = time.perf_counter()
    options, storage_options = params.options(), params.storage_options or None
    run_token = uuid.uuid4().hex  # marks the results parsed by this run (the rest came from the cache)
    with ParserPool(params.workers) as pool:  # workers start while the files are listed
        refs = discover_files(params.source, storage_options, options)
        groups, unreadable = group_by_content(refs)
        logger.info("%d files, %d distinct documents, %d unreadable", len(refs), len(groups), len(unreadable))
        root = corpus_root(params.source, storage_options)  # parsing re-checks what hashing checked
        results = parse_documents(groups, options, pool, run_token, storage_options, params.cache_dir, root)
    fresh = {sha for sha, result in results.items() if result.get("run_token") == run_token}
    documents, chunks = assemble(groups, results, unreadable)
    outputs = write_ingest_tables(documents, chunks, params.out)
    seconds = {groups[sha][0].uri: results[sha]["seconds"] for sha in fresh}
    summary = summarize(
        len(refs), documents, chunks, seconds, len(fresh), time.perf_counter() - started, outputs
    )
    create_markdown_artifact(
        markdown=summary_markdown(summary),
        key="ingest-summary",
        description=f"{summary.n_files} files: {summary.status_counts}",
    )
    logger.info(
        "ingest done: %s (%d parsed now, %d from cache) -> %s",
        summary.status_counts,
        len(fresh),
        len(results) - len(fresh),
        params.out,
    )
    return summary.to_dict()


def parse_documents(
    groups: dict[str, list[FileRef]],
    options: IngestOptions,
    pool: ParserPool,
    run_token: str,
    storage_options: dict[str, Any] | None,
    cache_dir: str | None,
    root: str | None = None,
) -> dict[str, dict[str, Any]]:
    """One `parse-document` task per distinct content, biggest first; {sha256: result}. A task
    that fails (a transient parse error, result storage) becomes an error row, not a failed run."""
    parse = parse_document
    if cache_dir:
        parse = parse_document.with_options(result_storage=Path(cache_dir).expanduser())
    shas = largest_first(groups)
    uris = [groups[sha][0].uri for sha in shas]
    futures = parse.map(
        uris,
        shas,
        fingerprint=unmapped(options.fingerprint()),
        options=unmapped(options),
        pool=unmapped(pool),
        storage_options=unmapped(storage_options),
        run_token=unmapped(run_token),
        root=unmapped(root),
    )
    results = {}
    for sha, uri, future in zip(shas, uris, futures, strict=True):
        try:
            results[sha] = future.result()
        except TransientParseError as exc:
            results[sha] = {**error_result(uri, str(exc), options), "run_token": run_token}
        except Exception as exc:  # a Prefect-level failure (e.g. result storage): one row
            reason = f"ingest task failed: {exc}"
            results[sha] = {**error_result(uri, reason, options), "run_token": run_token}
    return results


if __name__ == "__main__":
    import sys

    print(ingest(IngestParams.model_validate_json(sys.argv[1])))
