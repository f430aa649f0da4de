"""Labelled corpora: documents with gold records, in the shared benchmark layout.

A dataset folder holds `schema.json`, `labels.jsonl` with rows `{"doc_id", "file", "split",
"record"}` and `documents/` (`load_corpus`). Gold records are validated against the schema
(`ieflow.labels`); a bad row becomes a `LabelError` (and a logged warning) and the good rows still
load. A document is read only if it is a regular file inside the dataset folder (links may not lead
out; `ieflow.documents.source`), under the size cap. Its text comes from the parser and is cached on
disk by content hash. `holdout_split` turns the datasets' train/dev into train/val/test with the
deterministic hash assignment of `ieflow.splits`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ieflow import config, storage
from ieflow.documents.parsed import ParseError
from ieflow.documents.source import ReadRules, SourceNotFound, read_source_bytes
from ieflow.labels import LabelError, check_label_row, read_jsonl_rows, warn_label_errors
from ieflow.schema import load_schema
from ieflow.splits.assign import assign_splits, hash_unit

_TEXT_SUFFIXES = (".txt", ".text", ".md")


@dataclass(frozen=True)
class Example:
    doc_id: str
    text: str
    gold: dict[str, Any]
    split: str | None = None
    source: str | None = None  # where the document came from (its path)
    content_hash: str | None = None  # sha256 of the document's bytes
    label_source: str = "gold"  # who wrote `gold`: "gold", "teacher" or "human" (ieflow.labelfree)
    agreement: dict[str, float] | None = None  # teacher labels: per-field share of samples that agreed


@dataclass
class LabelledCorpus:
    name: str
    schema: dict[str, Any]
    examples: list[Example]
    errors: list[LabelError] = field(default_factory=list)

    def by_split(self, name: str) -> list[Example]:
        return [ex for ex in self.examples if ex.split == name]

    def split_sizes(self) -> dict[str, int]:
        return dict(Counter(ex.split or "none" for ex in self.examples))

    def __len__(self) -> int:
        return len(self.examples)


# --- documents ----------------------------------------------------------------------------------


def _parser() -> Any:
    try:
        from ieflow.documents import parse
    except ImportError:  # the parser is optional for plain-text corpora
        return None
    return parse


def text_cache_path(sha256: str, parser_version: str | None) -> Path:
    """Where parsed text is cached: `<home>/text-cache/[v<parser version>/]<sha256>.txt`.

    Keyed by content, and by the parser's PARSER_VERSION so that a parser change re-parses."""
    folder = config.home_dir() / "text-cache"
    return (folder / f"v{parser_version}" if parser_version else folder) / f"{sha256}.txt"


def document_text(path: Path, sha256: str, data: bytes) -> str:
    """The text of one document (its bytes `data`, already read) via
    `ieflow.documents.parse.parse_file`; non-plain-text results are cached on disk (see
    `text_cache_path`). Raises ValueError when the document cannot be parsed."""
    parser = _parser()
    plain = path.suffix.lower() in _TEXT_SUFFIXES
    if parser is None:
        if plain:
            return data.decode("utf-8", errors="replace")
        raise ValueError(f"no parser for {path.suffix} files (ieflow.documents.parse is not importable)")
    cached = None if plain else text_cache_path(sha256, getattr(parser, "PARSER_VERSION", None))
    if cached is not None and cached.exists():
        return cached.read_text(encoding="utf-8")
    parsed = parser.parse_file(path, data=data)
    if getattr(parsed, "status", "ok") == "error" or getattr(parsed, "error", None):
        raise ValueError(f"document could not be parsed: {getattr(parsed, 'error', None) or 'unknown error'}")
    text = parsed.text or ""
    if cached is not None:
        storage.write_bytes_atomic(cached, text.encode("utf-8"))
    return text


def read_document(root: Path, file_name: str) -> bytes:
    """The bytes of a row's document, read only if it is a regular file whose real path lies inside
    the dataset folder (a link is followed only while it stays inside) and under the size cap.
    Raises ValueError with the reason."""
    try:
        return read_source_bytes(str(root / file_name), ReadRules(root=str(root), follow_symlinks=True))
    except SourceNotFound as exc:
        raise ValueError(f"document file not found: {file_name}") from exc
    except ParseError as exc:
        raise ValueError(f"document {file_name}: {exc}") from exc
    except OSError as exc:
        raise ValueError(f"document {file_name} could not be read: {exc.strerror or exc}") from exc


def _example(root: Path, row: dict[str, Any], doc_id: str, record: Any, with_text: bool) -> Example:
    """The example of a checked label row; ValueError (the reason) when its document cannot be used."""
    file_name = row.get("file")
    if not isinstance(file_name, str):
        raise ValueError("no 'file' given for the document")
    data = read_document(root, file_name)
    sha = hashlib.sha256(data).hexdigest()
    text = document_text(root / file_name, sha, data) if with_text else ""
    # source and agreement were checked with the row (ieflow.labels.label_origin_problem)
    source, agreement = row.get("source", "gold"), row.get("agreement")
    return Example(doc_id, text, record, row.get("split"), str(root / file_name), sha, source, agreement)


def load_corpus(
    dataset_dir: str | Path, *, limit: int | None = None, with_text: bool = True
) -> LabelledCorpus:
    """Load a dataset in the shared layout (schema.json, labels.jsonl, documents/).

    `limit` keeps the first N label rows (before validation). `with_text=False` skips parsing the
    documents (text ""), for work that needs only the gold records. A row whose document is
    missing, outside the folder, a link leading out, not a regular file, too big or unparseable is
    a `LabelError` (logged too); its document is never read or parsed.
    """
    root = Path(dataset_dir)
    schema = load_schema(root / "schema.json")
    examples: list[Example] = []
    errors: list[LabelError] = []
    seen: dict[str, int] = {}
    for count, (line_no, row) in enumerate(read_jsonl_rows(root / "labels.jsonl")):
        if limit is not None and count >= limit:
            break
        if isinstance(row, str):
            errors.append(LabelError(line_no, None, row))
            continue
        doc_id, record, reason = check_label_row(row, schema, seen)
        if reason is None:
            try:
                example = _example(root, row, doc_id, record, with_text)  # type: ignore[arg-type]
            except ValueError as exc:
                reason = str(exc)
        if reason:
            errors.append(LabelError(line_no, doc_id, reason))
            continue
        seen[doc_id] = line_no  # type: ignore[index]
        examples.append(example)
    warn_label_errors(root / "labels.jsonl", errors)
    return LabelledCorpus(root.name, schema, examples, errors)


# --- the held-out split of the shared datasets ---------------------------------------------


def holdout_split(corpus: LabelledCorpus, seed: int = 0, *, val_fraction: float = 0.5) -> LabelledCorpus:
    """train/val/test from the shared datasets' train/dev: train stays train; each dev document goes
    to val (with probability `val_fraction`) or test by `hash_unit("holdout:<seed>", content hash or
    doc_id)`, so the optimizers select on val and report on a test set they never saw. Examples already
    in val or test keep their split; examples with no split get `assign_splits` with the default ratios.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    unsplit = [ex.doc_id for ex in corpus.examples if not ex.split]
    hashes = {ex.doc_id: ex.content_hash for ex in corpus.examples}
    fresh = assign_splits(unsplit, seed=seed, content_hashes=hashes) if unsplit else {}
    examples = []
    for ex in corpus.examples:
        if ex.split == "dev":
            u = hash_unit(f"holdout:{seed}", ex.content_hash or f"id:{ex.doc_id}")
            examples.append(replace(ex, split="val" if u < val_fraction else "test"))
        elif not ex.split:
            examples.append(replace(ex, split=fresh[ex.doc_id]))
        else:
            examples.append(ex)
    return LabelledCorpus(corpus.name, corpus.schema, examples, list(corpus.errors))
