"""Labelled corpora (documents with gold records) and deterministic train/val/test splits.

Two label formats load here:
- the shared benchmark layout: `<dir>/schema.json`, `<dir>/labels.jsonl` with rows
  `{"doc_id", "file", "split", "record"}` and `<dir>/documents/` (`load_corpus`);
- a plain JSONL or CSV of `doc_id` plus a gold record, next to any ingested corpus (`load_labels`).
Gold records are validated against the schema; a bad row becomes a `LabelError` (line number and
reason) and the good rows still load.

Splits are a pure function of `hash(seed, content hash or doc_id)`, so a document never changes split
when others are added, and documents with the same content always share a split (no leakage).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ieflow import config, storage
from ieflow.schema import load_schema, resolve, top_level_fields, types_of, validate_record

DEFAULT_RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}
_META_KEYS = ("doc_id", "file", "split", "source")
_TEXT_SUFFIXES = (".txt", ".text", ".md")


@dataclass(frozen=True)
class Example:
    doc_id: str
    text: str
    gold: dict[str, Any]
    split: str | None = None
    source: str | None = None  # where the document came from (its path)
    content_hash: str | None = None  # sha256 of the document's bytes


@dataclass(frozen=True)
class LabelError:
    line: int
    doc_id: str | None
    reason: str

    def __str__(self) -> str:
        who = f" ({self.doc_id})" if self.doc_id else ""
        return f"line {self.line}{who}: {self.reason}"


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


# --- reading label rows -------------------------------------------------------------------------


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row) per non-blank line; a string instead of a row is the reason it is bad."""
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield line_no, f"invalid JSON: {exc.msg} at column {exc.colno}"
                continue
            yield (
                line_no,
                row if isinstance(row, dict) else f"a row must be a JSON object, got {type(row).__name__}",
            )


def _coerce_cell(text: str, node: dict[str, Any]) -> Any:
    """A CSV cell as the JSON value its schema node asks for; raises ValueError with the reason."""
    kinds = types_of(node)
    stripped = text.strip()
    if stripped == "":
        return [] if kinds == ["array"] else None
    if "array" in kinds or "object" in kinds:
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            if "array" in kinds:  # a plain list written as a;b;c
                return [part.strip() for part in stripped.split(";") if part.strip()]
            raise ValueError(f"expected a JSON object, got {stripped[:40]!r}") from None
    if "integer" in kinds or "number" in kinds:
        try:
            number = float(stripped)
            return int(number) if "integer" in kinds and number.is_integer() else number
        except ValueError:
            if "string" not in kinds:
                raise ValueError(f"expected a number, got {stripped[:40]!r}") from None
    if "boolean" in kinds and stripped.lower() in ("true", "false", "yes", "no", "1", "0"):
        return stripped.lower() in ("true", "yes", "1")
    return text


def _read_csv(path: Path, schema: dict[str, Any] | None) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """CSV rows as {doc_id, split?, record}: a `record` JSON column, or one column per field.
    Without a schema only doc_id and split are read."""
    props = resolve(schema, schema).get("properties", {}) if schema else {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        if "doc_id" not in header:
            yield 1, f"CSV header has no doc_id column (columns: {', '.join(header)})"
            return
        start = 2
        for row in reader:
            line_no, start = start, reader.line_num + 1
            out: dict[str, Any] = {"doc_id": row.get("doc_id")}
            out.update({k: row[k] for k in ("split", "file") if row.get(k)})
            if schema is None:
                yield line_no, out
                continue
            try:
                if "record" in header:
                    out["record"] = json.loads(row.get("record") or "null")
                else:
                    out["record"] = {
                        name: _coerce_cell(row.get(name) or "", resolve(schema, props[name]))
                        for name in top_level_fields(schema)
                        if name in header
                    }
            except (ValueError, json.JSONDecodeError) as exc:
                yield line_no, f"bad cell: {exc}"
                continue
            yield line_no, out


def _rows(path: Path, schema: dict[str, Any] | None) -> Iterator[tuple[int, dict[str, Any] | str]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl(path)
    if suffix in (".csv",):
        return _read_csv(path, schema)
    raise ValueError(f"labels must be .jsonl or .csv, got {path.name}")


def _fill_absent(schema: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Absent top-level fields that may be null become explicit nulls: in the shared datasets an
    absent value means "not in the document", exactly as null does (invoice2data leaves keys out)."""
    props = resolve(schema, schema).get("properties", {})
    missing = [
        name for name in props if name not in record and "null" in types_of(resolve(schema, props[name]))
    ]
    return {**record, **dict.fromkeys(missing)} if missing else record


def _check_row(
    row: dict[str, Any], schema: dict[str, Any], seen: dict[str, int]
) -> tuple[str | None, Any, str | None]:
    """(doc_id, record, reason-it-is-bad-or-None) for one parsed row."""
    doc_id = row.get("doc_id")
    if not isinstance(doc_id, str | int) or isinstance(doc_id, bool) or str(doc_id).strip() == "":
        return None, None, "missing or empty doc_id"
    doc_id = str(doc_id)
    if doc_id in seen:
        return doc_id, None, f"duplicate doc_id (first on line {seen[doc_id]})"
    record = row["record"] if "record" in row else {k: v for k, v in row.items() if k not in _META_KEYS}
    if not isinstance(record, dict):
        return doc_id, None, f"the gold record must be a JSON object, got {type(record).__name__}"
    record = _fill_absent(schema, record)
    problems = validate_record(schema, record)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        return doc_id, None, f"gold record does not match the schema: {shown}"
    split = row.get("split")
    if split is not None and not isinstance(split, str):
        return doc_id, None, f"split must be a string, got {split!r}"
    return doc_id, record, None


def load_labels(
    path: str | Path, schema: dict[str, Any] | str | Path
) -> tuple[dict[str, dict[str, Any]], list[LabelError]]:
    """Gold records by doc_id from a JSONL or CSV file, and the rows that could not be used."""
    schema = load_schema(schema)
    records: dict[str, dict[str, Any]] = {}
    errors: list[LabelError] = []
    seen: dict[str, int] = {}
    for line_no, row in _rows(Path(path), schema):
        if isinstance(row, str):
            errors.append(LabelError(line_no, None, row))
            continue
        doc_id, record, reason = _check_row(row, schema, seen)
        if reason:
            errors.append(LabelError(line_no, doc_id, reason))
            continue
        seen[doc_id] = line_no  # type: ignore[index]
        records[doc_id] = record  # type: ignore[index]
    return records, errors


def read_label_column(path: str | Path, column: str) -> dict[str, str]:
    """A text column of a labels file (e.g. `split`, `file`) by doc_id, for rows that give one."""
    values: dict[str, str] = {}
    for _, row in _rows(Path(path), None):
        if not isinstance(row, dict) or row.get("doc_id") is None:
            continue
        value = row.get(column)
        if isinstance(value, str) and value.strip():
            values[str(row["doc_id"])] = value.strip()
    return values


def read_label_splits(path: str | Path) -> dict[str, str]:
    """The `split` column of a labels file, where rows give one (for `assign_splits(existing=...)`)."""
    return read_label_column(path, "split")


# --- documents ----------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


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


def document_text(path: Path, sha256: str) -> str:
    """The text of one document via `ieflow.documents.parse.parse_file`; non-plain-text results are
    cached on disk (see `text_cache_path`). Raises ValueError when the document cannot be parsed."""
    parser = _parser()
    plain = path.suffix.lower() in _TEXT_SUFFIXES
    if parser is None:
        if plain:
            return path.read_text(encoding="utf-8", errors="replace")
        raise ValueError(f"no parser for {path.suffix} files (ieflow.documents.parse is not importable)")
    cached = None if plain else text_cache_path(sha256, getattr(parser, "PARSER_VERSION", None))
    if cached is not None and cached.exists():
        return cached.read_text(encoding="utf-8")
    parsed = parser.parse_file(path)
    if getattr(parsed, "status", "ok") == "error" or getattr(parsed, "error", None):
        raise ValueError(f"document could not be parsed: {getattr(parsed, 'error', None) or 'unknown error'}")
    text = parsed.text or ""
    if cached is not None:
        storage.write_bytes_atomic(cached, text.encode("utf-8"))
    return text


def load_corpus(
    dataset_dir: str | Path, *, limit: int | None = None, with_text: bool = True
) -> LabelledCorpus:
    """Load a dataset in the shared layout (schema.json, labels.jsonl, documents/).

    `limit` keeps the first N label rows (before validation). `with_text=False` skips reading the
    documents (text ""), for work that needs only the gold records.
    """
    root = Path(dataset_dir)
    schema = load_schema(root / "schema.json")
    examples: list[Example] = []
    errors: list[LabelError] = []
    seen: dict[str, int] = {}
    for count, (line_no, row) in enumerate(_read_jsonl(root / "labels.jsonl")):
        if limit is not None and count >= limit:
            break
        if isinstance(row, str):
            errors.append(LabelError(line_no, None, row))
            continue
        doc_id, record, reason = _check_row(row, schema, seen)
        file_name = row.get("file")
        if reason is None and not isinstance(file_name, str):
            reason = "no 'file' given for the document"
        doc_path = root / file_name if isinstance(file_name, str) else None
        if reason is None and doc_path is not None and not doc_path.is_file():
            reason = f"document file not found: {file_name}"
        text, sha = "", None
        if reason is None and doc_path is not None:
            sha = file_sha256(doc_path)
            try:
                text = document_text(doc_path, sha) if with_text else ""
            except (ValueError, OSError) as exc:
                reason = str(exc)
        if reason:
            errors.append(LabelError(line_no, doc_id, reason))
            continue
        seen[doc_id] = line_no  # type: ignore[index]
        examples.append(Example(doc_id, text, record, row.get("split"), str(doc_path), sha))  # type: ignore[arg-type]
    return LabelledCorpus(root.name, schema, examples, errors)


# --- splits -------------------------------------------------------------------------------------


def hash_unit(seed: int | str, key: str) -> float:
    """A uniform number in [0, 1) from (seed, key): the same on every machine and Python version."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _normalize_ratios(ratios: Mapping[str, float] | None) -> dict[str, float]:
    ratios = dict(DEFAULT_RATIOS if ratios is None else ratios)
    if not ratios or any(not isinstance(v, int | float) or v < 0 for v in ratios.values()):
        raise ValueError(f"split ratios must be non-negative numbers, got {ratios}")
    total = sum(ratios.values())
    if total <= 0:
        raise ValueError(f"split ratios must not all be zero, got {ratios}")
    return {name: value / total for name, value in ratios.items()}


def _bucket(u: float, ratios: dict[str, float]) -> str:
    cumulative = 0.0
    for name, ratio in ratios.items():
        cumulative += ratio
        if u < cumulative:
            return name
    return next(name for name, ratio in reversed(ratios.items()) if ratio > 0)


def assign_splits(
    doc_ids: Sequence[str],
    *,
    seed: int = 0,
    ratios: Mapping[str, float] | None = None,
    content_hashes: Mapping[str, str | None] | None = None,
    strata: Mapping[str, Any] | None = None,
    existing: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """Assign each document to a split; returns {doc_id: split} in input order.

    - A document is keyed by its content hash when known, else its doc_id; documents sharing a key
      share a split. A non-empty `existing` split is kept, and new documents with the same content as
      an existing one join that split.
    - Without `strata`, a key's split is `bucket(hash_unit(seed, key))`: independent of every other
      document, so adding documents never moves one.
    - With `strata` ({doc_id: value}), each stratum is filled in hash order towards the exact ratios
      (counting existing assignments). That balance depends on the other documents, so the stratified
      mode is stable only for documents passed in `existing`: the split flow passes its previous output.
    """
    weights = _normalize_ratios(ratios)
    content_hashes, existing = content_hashes or {}, existing or {}
    groups: dict[str, list[str]] = {}
    for doc_id in doc_ids:
        groups.setdefault(content_hashes.get(doc_id) or f"id:{doc_id}", []).append(doc_id)
    result: dict[str, str] = {}
    pending: list[tuple[str, list[str]]] = []
    for key, members in groups.items():
        kept = [existing[d] for d in members if existing.get(d)]
        if kept:
            for doc_id in members:
                result[doc_id] = existing.get(doc_id) or kept[0]  # type: ignore[assignment]
        else:
            pending.append((key, members))
    if strata is None:
        for key, members in pending:
            split = _bucket(hash_unit(seed, key), weights)
            result.update(dict.fromkeys(members, split))
    else:
        _assign_stratified(pending, weights, seed, strata, result)
    return {doc_id: result[doc_id] for doc_id in doc_ids}


def _assign_stratified(
    pending: list[tuple[str, list[str]]],
    weights: dict[str, float],
    seed: int,
    strata: Mapping[str, Any],
    result: dict[str, str],
) -> None:
    def stratum(doc_id: str) -> str:
        value = strata.get(doc_id)
        return "<none>" if value is None else json.dumps(value, sort_keys=True, default=str)

    counts: dict[str, dict[str, int]] = {}
    for doc_id, split in result.items():
        counts.setdefault(stratum(doc_id), {}).setdefault(split, 0)
        counts[stratum(doc_id)][split] += 1
    by_stratum: dict[str, list[tuple[str, list[str]]]] = {}
    for key, members in pending:
        by_stratum.setdefault(stratum(members[0]), []).append((key, members))
    for name, items in by_stratum.items():
        have = counts.setdefault(name, {})
        done = sum(have.values())
        for key, members in sorted(items, key=lambda item: (hash_unit(seed, item[0]), item[0])):
            done += len(members)
            # The split furthest below its share of the documents placed so far; ties broken by hash,
            # not by ratio order, which would favour val over test in every small stratum.
            split = max(
                weights,
                key=lambda s: (
                    round(weights[s] * done - have.get(s, 0), 9),
                    hash_unit(seed, f"{key}\x00{s}"),
                ),
            )
            have[split] = have.get(split, 0) + len(members)
            result.update(dict.fromkeys(members, split))


def find_leaks(
    assignments: Mapping[str, str], content_hashes: Mapping[str, str | None]
) -> dict[str, dict[str, list[str]]]:
    """Content hashes whose documents sit in more than one split: {hash: {split: [doc_id, ...]}}."""
    by_hash: dict[str, dict[str, list[str]]] = {}
    for doc_id, split in assignments.items():
        digest = content_hashes.get(doc_id)
        if digest:
            by_hash.setdefault(digest, {}).setdefault(split, []).append(doc_id)
    return {digest: splits for digest, splits in by_hash.items() if len(splits) > 1}


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
