"""Unlabelled documents for the label-free path: an ingested documents.parquet, or a folder.

A folder is read the way ingest reads it (`ieflow.ingest.discover`, `parse_within_limits`: regular
files inside the folder, the size cap, the time limit); a file that cannot be parsed is skipped
with its reason, never dropped silently. Documents get ingest's doc_id (from the content hash), so
labels written for them join the extract flow's records. `sample` keeps a deterministic sample:
the documents ordered by `hash_unit` of their content hash, so a larger sample extends a smaller.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ieflow.datasets import Example
from ieflow.errors import UserError
from ieflow.splits.assign import hash_unit


class NoDocumentsError(UserError):
    """The source holds no document that could be read."""


@dataclass(frozen=True)
class SkippedDocument:
    source: str
    reason: str


@dataclass
class DocumentSample:
    """The documents read (as examples without gold) and the files skipped, with why."""

    examples: list[Example]
    skipped: list[SkippedDocument] = field(default_factory=list)


def load_documents(source: str | Path, sample: int | None = None) -> DocumentSample:
    """The documents of `source` (documents.parquet, a folder holding one, or a folder of files)."""
    path = Path(source)
    if path.suffix == ".parquet":
        loaded = _from_parquet(path)
    elif (path / "documents.parquet").is_file():
        loaded = _from_parquet(path / "documents.parquet")
    elif path.is_dir():
        loaded = _from_folder(path, sample)
    else:
        raise NoDocumentsError(f"documents not found: {source} is neither a folder nor a .parquet file")
    loaded.examples = _sampled(loaded.examples, sample)
    if not loaded.examples:
        reasons = "; ".join(f"{s.source}: {s.reason}" for s in loaded.skipped[:3])
        raise NoDocumentsError(f"no readable documents in {source}" + (f" ({reasons})" if reasons else ""))
    return loaded


def _sampled(examples: list[Example], sample: int | None) -> list[Example]:
    ordered = sorted(examples, key=lambda ex: hash_unit("labelfree", ex.content_hash or ex.doc_id))
    return ordered if sample is None else ordered[:sample]


def _from_parquet(path: Path) -> DocumentSample:
    import polars as pl

    if not path.is_file():
        raise NoDocumentsError(f"documents table not found: {path}")
    frame = pl.read_parquet(path, columns=["doc_id", "sha256", "file_name", "status", "error", "text"])
    examples, skipped = [], []
    for row in frame.iter_rows(named=True):
        if row["status"] != "ok" or not (row["text"] or "").strip():
            skipped.append(SkippedDocument(row["file_name"] or row["doc_id"], row["error"] or "no text"))
            continue
        examples.append(Example(row["doc_id"], row["text"], {}, None, row["file_name"], row["sha256"]))
    return DocumentSample(examples, skipped)


def _from_folder(folder: Path, sample: int | None) -> DocumentSample:
    from ieflow.documents import doc_id_for
    from ieflow.ingest import IngestOptions, discover, parse_within_limits

    files = discover(str(folder))
    # Parse only what the sample needs (plus spares for unreadable files): ordered by the file's
    # name first, as the content hash is not known before the file is read.
    files.sort(key=lambda f: hash_unit("labelfree-file", os.path.relpath(f, folder)))
    options = IngestOptions(follow_symlinks=True)
    examples, skipped = [], []
    for uri in files:
        if sample is not None and len(examples) >= sample:
            break
        relative = os.path.relpath(uri, folder)
        parsed = parse_within_limits(uri, options, root=str(folder))
        if parsed.status == "error" or not parsed.text.strip() or not parsed.sha256:
            skipped.append(SkippedDocument(relative, parsed.error or "no text"))
            continue
        example = Example(doc_id_for(parsed.sha256), parsed.text, {}, None, relative, parsed.sha256)
        examples.append(example)
    return DocumentSample(examples, skipped)
