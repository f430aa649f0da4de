"""`ieflow ingest`: a corpus -> documents.parquet + chunks.parquet (wired into `ieflow_cli.main`).

By default it runs the plain-Python pipeline (no Prefect server to start; earlier outputs in `out`
with the same options are reused, so re-runs parse only new files). `--flow` runs the Prefect flow
instead: task cache, run history and the summary artifact.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import TYPE_CHECKING

import typer

from ieflow.documents.parse import DEFAULT_MAX_PAGES
from ieflow.documents.source import DEFAULT_MAX_FILE_MB

if TYPE_CHECKING:
    from rich.console import Console

    from ieflow.ingest import IngestOptions, IngestSummary


def ingest_command(
    source: str = typer.Argument(..., help="Folder, glob or fsspec URL of the documents."),
    out: str = typer.Option(..., "--out", "-o", help="Folder or URL for the two Parquet tables."),
    workers: int = typer.Option(os.cpu_count() or 1, min=0, help="Parser processes (0: in-process)."),
    max_pages: int = typer.Option(DEFAULT_MAX_PAGES, min=1, help="Longer documents become errors."),
    ocr: bool = typer.Option(True, "--ocr/--no-ocr", help="OCR images and scanned PDF pages."),
    ocr_lang: str = typer.Option("eng", help="Tesseract language(s), e.g. eng+deu."),
    target_tokens: int = typer.Option(512, min=16, help="Chunk size target (estimated tokens)."),
    overlap_tokens: int = typer.Option(64, min=0, help="Tokens shared by neighbouring chunks."),
    file_timeout: float = typer.Option(600.0, min=0, help="Per-file time limit in seconds (0: none)."),
    max_file_mb: float = typer.Option(DEFAULT_MAX_FILE_MB, min=0.001, help="Size cap: bigger files unread."),
    follow_symlinks: bool = typer.Option(
        False, "--follow-symlinks", help="Read links whose real path stays inside the source."
    ),
    password: str | None = typer.Option(
        None, envvar="IEFLOW_PDF_PASSWORD", help="Password for encrypted PDFs (or $IEFLOW_PDF_PASSWORD)."
    ),
    reparse: bool = typer.Option(False, help="Parse everything again, ignoring earlier outputs."),
    flow: bool = typer.Option(False, "--flow", help="Run as the Prefect flow (task cache, artifact)."),
    fail_on_error: bool = typer.Option(False, help="Exit with status 1 when any file is an error."),
) -> None:
    """Parse documents into documents.parquet and chunks.parquet; print a summary."""
    from rich.console import Console
    from rich.markdown import Markdown

    from ieflow.ingest import IngestOptions, summary_markdown

    if overlap_tokens >= target_tokens:
        raise typer.BadParameter("--overlap-tokens must be smaller than --target-tokens")
    console = Console(stderr=True)
    options = IngestOptions(
        max_pages=max_pages,
        ocr=ocr,
        ocr_lang=ocr_lang,
        target_tokens=target_tokens,
        overlap_tokens=overlap_tokens,
        file_timeout_s=file_timeout,
        password=password,
        max_file_mb=max_file_mb,
        follow_symlinks=follow_symlinks,
    )
    if flow:
        summary = _run_flow(source, out, workers, options)
    else:
        summary = _run_plain(source, out, workers, options, reparse, console)
    console.print(Markdown(summary_markdown(summary)))
    if fail_on_error and summary.status_counts.get("error", 0):
        raise typer.Exit(1)


def _run_flow(source: str, out: str, workers: int, options: IngestOptions) -> IngestSummary:
    from ieflow.ingest import IngestSummary
    from ieflow_flows.ingest import IngestParams
    from ieflow_flows.ingest import ingest as ingest_flow

    # The flow's parameters are the options' fields, the password under its own name.
    fields = {name: value for name, value in asdict(options).items() if name != "password"}
    params = IngestParams(source=source, out=out, workers=workers, pdf_password=options.password, **fields)
    return IngestSummary(**ingest_flow(params))


def _run_plain(
    source: str, out: str, workers: int, options: IngestOptions, reparse: bool, console: Console
) -> IngestSummary:
    from ieflow.ingest import run_ingest

    with console.status("parsing…") as status:
        done = [0]

        def progress(uri: str, result: dict[str, object]) -> None:
            done[0] += 1
            status.update(f"parsed {done[0]} files (last: {uri.rsplit('/', 1)[-1]})")

        return run_ingest(
            source, out, options=options, workers=workers, reuse_previous=not reparse, on_result=progress
        )
