"""Label files: gold records by doc_id from JSONL or CSV, validated against the record schema.

Two shapes of row load: `{"doc_id", "record", "split"?, "file"?}`, or the record's fields at the
top level beside `doc_id`. A CSV has a `record` JSON column or one column per top-level field (cells
coerced to the schema's types). A bad row becomes a `LabelError` (line number and reason, and a
logged warning) and the good rows still load; a `file` that is absolute or climbs out with `..`
is such a row. Absent nullable fields become explicit nulls: in the shared datasets an
absent value means "not in the document", exactly as null does.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

from ieflow.labelfree.drafts import LABEL_SOURCES
from ieflow.schema import load_schema, resolve, top_level_fields, types_of, validate_record

_META_KEYS = ("doc_id", "file", "split", "source", "agreement")
log = logging.getLogger("ieflow.labels")


@dataclass(frozen=True)
class LabelError:
    line: int
    doc_id: str | None
    reason: str

    def __str__(self) -> str:
        who = f" ({self.doc_id})" if self.doc_id else ""
        return f"line {self.line}{who}: {self.reason}"


# --- reading label rows -------------------------------------------------------------------------


def read_jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
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
        return read_jsonl_rows(path)
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


def check_label_row(
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
    problem = label_file_problem(row.get("file")) or label_origin_problem(row)
    if problem:
        return doc_id, None, problem
    return doc_id, record, None


def label_origin_problem(row: dict[str, Any]) -> str | None:
    """Why a row's `source` or `agreement` (ieflow.labelfree.drafts) cannot be used, or None."""
    source = row.get("source", "gold")
    if source not in LABEL_SOURCES:
        return f"source must be one of {', '.join(LABEL_SOURCES)}, got {str(source)[:40]!r}"
    agreement = row.get("agreement")
    if agreement is None:
        return None
    if not isinstance(agreement, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 for v in agreement.values()
    ):
        return "agreement must map fields to numbers between 0 and 1"
    return None


def label_file_problem(file_name: object) -> str | None:
    """Why a row's `file` cannot name a document inside the dataset folder (None: it can, or the
    row gives none). Only the text is looked at: what the path really leads to is checked where
    the document is read (`ieflow.datasets`)."""
    if file_name is None:
        return None
    if not isinstance(file_name, str) or not file_name.strip() or "\x00" in file_name:
        return f"'file' must be a path relative to the dataset folder, got {str(file_name)[:80]!r}"
    windows = PureWindowsPath(file_name)
    if file_name.startswith(("/", "\\")) or windows.drive or windows.is_absolute():
        return f"'file' {file_name[:80]!r} is an absolute path, not one inside the dataset folder; not read"
    if ".." in re.split(r"[\\/]", file_name):
        return f"'file' {file_name[:80]!r} leads outside the dataset folder; not read"
    return None


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
        doc_id, record, reason = check_label_row(row, schema, seen)
        if reason:
            errors.append(LabelError(line_no, doc_id, reason))
            continue
        seen[doc_id] = line_no  # type: ignore[index]
        records[doc_id] = record  # type: ignore[index]
    warn_label_errors(path, errors)
    return records, errors


def warn_label_errors(path: str | Path, errors: list[LabelError]) -> None:
    """One warning per skipped row, so that none is dropped without a word."""
    for error in errors:
        log.warning("%s %s; row skipped", path, error)


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
