"""The documents a label run drafts: texts from the ingest flow's documents.parquet, minus those
already labelled or waiting for review."""

from __future__ import annotations

from pathlib import Path

from ieflow.datasets import Example
from ieflow.errors import ConfigError


def unlabelled_examples(documents_path: str | Path, exclude: set[str], limit: int | None) -> list[Example]:
    """Parsed documents (status ok) by doc_id order, skipping `exclude`, at most `limit` of them.
    Examples have no gold: the teacher drafts it."""
    import polars as pl

    path = Path(documents_path)
    if not path.is_file():
        raise ConfigError(f"documents table not found: {path} (run the ingest flow first)")
    table = pl.read_parquet(path)
    missing = {"doc_id", "text"} - set(table.columns)
    if missing:
        raise ConfigError(
            f"{path.name} has no {', '.join(sorted(missing))} column; is it ingest's documents.parquet?"
        )
    if "status" in table.columns:
        table = table.filter(pl.col("status") == "ok")
    table = table.filter(~pl.col("doc_id").is_in(sorted(exclude))).sort("doc_id")
    if limit is not None:
        table = table.head(limit)
    source = "source_uri" if "source_uri" in table.columns else "doc_id"
    hashes = table["sha256"] if "sha256" in table.columns else [None] * table.height
    return [
        Example(doc_id=d, text=t or "", gold={}, source=s, content_hash=h)
        for d, t, s, h in zip(table["doc_id"], table["text"], table[source], hashes, strict=True)
    ]
