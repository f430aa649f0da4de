"""The summary of an ingest run, and its markdown (the flow's `ingest-summary` artifact)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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
