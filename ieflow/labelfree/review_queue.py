"""The review queue and its file round trip: drafts a person must check, out to CSV or JSONL and back.

`review.jsonl` holds one draft per line (doc_id, file, record, agreement, problems). `export_review`
writes the drafts for a person: in CSV one row per document with `doc_id`, `file`, `accept`,
`problems` and one column per top-level field holding the draft value as JSON text; in JSONL the
queue rows with `"accept": false` added. The person corrects values and sets `accept` to yes.

`import_review` validates each accepted row's record against the schema and appends it to the labels
file as a `human` row (`drafts.human_row`), never for a doc_id the labels already have. Nothing is
lost: rows not accepted or bad stay in the edited file (bad ones with their reason in `error`), and
imported doc_ids leave the queue.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ieflow import storage
from ieflow.errors import UserError
from ieflow.labelfree.drafts import DraftRecord, LabelRow, human_row
from ieflow.labels import check_label_row, read_jsonl_rows
from ieflow.schema import resolve, top_level_fields, types_of

META_COLUMNS = ("doc_id", "file", "accept", "problems")
ERROR_COLUMN = "error"
_YES = ("yes", "y", "true", "1", "x")
_NO = ("", "no", "n", "false", "0")
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "object"}


class ReviewFileError(UserError, ValueError):
    """A review file that cannot be read at all (wrong kind, no doc_id or accept column)."""


@dataclass(frozen=True)
class ReviewRowError:
    """A row of a review file that could not be used, and why (it stays in the file)."""

    line: int
    doc_id: str | None
    reason: str

    def __str__(self) -> str:
        who = f" ({self.doc_id})" if self.doc_id else ""
        return f"line {self.line}{who}: {self.reason}"


@dataclass(frozen=True)
class ImportResult:
    added: list[LabelRow]
    errors: list[ReviewRowError]
    not_accepted: int  # rows the person has not accepted yet; they stay in the file

    @property
    def remaining(self) -> int:
        return len(self.errors) + self.not_accepted


# --- the queue (review.jsonl) ---------------------------------------------------------------------


def queue_row(draft: DraftRecord) -> dict[str, Any]:
    return {
        "doc_id": draft.doc_id,
        "file": draft.file,
        "record": draft.record,
        "agreement": draft.agreement,
        "problems": draft.problems,
    }


def _draft_from_row(row: dict[str, Any]) -> DraftRecord | str:
    doc_id, record = row.get("doc_id"), row.get("record")
    if not isinstance(doc_id, str) or not doc_id.strip():
        return "missing or empty doc_id"
    if not isinstance(record, dict):
        return "record must be a JSON object"
    problems, agreement = row.get("problems") or {}, row.get("agreement") or {}
    if not isinstance(problems, dict) or not isinstance(agreement, dict):
        return "problems and agreement must be JSON objects"
    file = row.get("file")
    return DraftRecord(
        doc_id, record, dict(agreement), dict(problems), file if isinstance(file, str) else None
    )


def read_review_queue(path: str | Path) -> tuple[list[DraftRecord], list[ReviewRowError]]:
    """The drafts of a review.jsonl (none if it does not exist) and the lines that are not drafts."""
    drafts: list[DraftRecord] = []
    errors: list[ReviewRowError] = []
    if not Path(path).exists():
        return drafts, errors
    for line_no, row in read_jsonl_rows(Path(path)):
        draft = row if isinstance(row, str) else _draft_from_row(row)
        if isinstance(draft, str):
            doc_id = row.get("doc_id") if isinstance(row, dict) else None
            errors.append(ReviewRowError(line_no, doc_id if isinstance(doc_id, str) else None, draft))
        else:
            drafts.append(draft)
    return drafts, errors


def write_review_queue(path: str | Path, drafts: Iterable[DraftRecord]) -> None:
    """Replace the queue with these drafts, atomically (a crash leaves the old queue whole)."""
    lines = "".join(json.dumps(queue_row(d), ensure_ascii=False) + "\n" for d in drafts)
    storage.write_bytes_atomic(path, lines.encode("utf-8"))


def drop_from_queue(path: str | Path, doc_ids: set[str]) -> None:
    """Remove these documents' lines from a queue; every other line stays as it was, unreadable
    ones too (they are a person's to fix, not ours to drop)."""
    kept = []
    for line in Path(path).read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not (isinstance(row, dict) and str(row.get("doc_id")) in doc_ids):
            kept.append(line if line.endswith("\n") else line + "\n")
    storage.write_bytes_atomic(path, "".join(kept).encode("utf-8"))


# --- labels.jsonl -----------------------------------------------------------------------------


def labelled_doc_ids(labels_path: str | Path) -> set[str]:
    """doc_ids the labels file already has (any source); unreadable lines are the loader's concern."""
    if not Path(labels_path).exists():
        return set()
    rows = read_jsonl_rows(Path(labels_path))
    return {str(row["doc_id"]) for _, row in rows if isinstance(row, dict) and row.get("doc_id") is not None}


def append_label_rows(labels_path: str | Path, rows: Sequence[LabelRow]) -> list[LabelRow]:
    """Append rows whose doc_id the labels file does not have yet; returns those appended."""
    seen = labelled_doc_ids(labels_path)
    added: list[LabelRow] = []
    for row in rows:
        if row.doc_id not in seen:
            seen.add(row.doc_id)
            added.append(row)
    if added:
        path = Path(labels_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("\n" if needs_newline else "")
            handle.writelines(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in added)
    return added


# --- export -------------------------------------------------------------------------------------


def problems_text(problems: dict[str, str]) -> str:
    return "; ".join(f"{name or 'record'}: {reason}" for name, reason in problems.items())


def export_review(drafts: Sequence[DraftRecord], schema: dict[str, Any], out: str | Path) -> Path:
    """Write the drafts for a person to correct: CSV or JSONL by the file's suffix."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        fields = top_level_fields(schema)
        clash = [name for name in fields if name in (*META_COLUMNS, ERROR_COLUMN)]
        if clash:
            raise ReviewFileError(
                f"schema field {clash[0]!r} has the name of a column of the review CSV; "
                "export to .jsonl instead"
            )
        text = _csv_text(drafts, fields)
    elif suffix in (".jsonl", ".ndjson"):
        text = "".join(
            json.dumps({**queue_row(d), "accept": False}, ensure_ascii=False) + "\n" for d in drafts
        )
    else:
        raise ReviewFileError(f"the review file must be .csv or .jsonl, got {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    storage.write_bytes_atomic(out, text.encode("utf-8"))
    return out


def _csv_text(drafts: Sequence[DraftRecord], fields: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, [*META_COLUMNS, *fields], lineterminator="\n")
    writer.writeheader()
    for draft in drafts:
        values = {name: json.dumps(draft.record.get(name), ensure_ascii=False) for name in fields}
        meta = {"doc_id": draft.doc_id, "file": draft.file or "", "accept": "", "problems": ""}
        writer.writerow({**meta, "problems": problems_text(draft.problems), **values})
    return buffer.getvalue()


# --- import -------------------------------------------------------------------------------------


@dataclass
class _EditedRow:
    """One row of a file a person edited: what it says, and the row as read (written back if kept)."""

    line: int
    raw: dict[str, Any]
    doc_id: str | None = None
    file: str | None = None
    accept: bool = False
    record: dict[str, Any] | None = None
    reason: str | None = None  # why the row cannot be imported as it is


def _accept_value(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    text = "" if value is None else str(value).strip().lower()
    if text in _YES or text in _NO:
        return text in _YES
    return f"accept must be yes or no, got {str(value)[:40]!r}"


def _fits(value: Any, kinds: list[str]) -> bool:
    kind = "null" if value is None else _JSON_TYPES.get(type(value))
    return not kinds or kind in kinds or (kind == "integer" and "number" in kinds)


def _cell_value(text: str, node: dict[str, Any]) -> Any:
    """A CSV cell's JSON text as a value. Empty is null; text that is not JSON (or JSON of a type
    the field does not take, like 12.50 for a string field) is the string as typed."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        return stripped
    kinds = types_of(node)
    return stripped if not _fits(value, kinds) and "string" in kinds else value


def _read_edited_csv(path: Path, schema: dict[str, Any]) -> tuple[list[str], list[_EditedRow]]:
    props = resolve(schema, schema).get("properties", {})
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        missing = [c for c in ("doc_id", "accept") if c not in header]
        if missing:
            raise ReviewFileError(
                f"{path.name} has no {' or '.join(missing)} column (columns: {', '.join(header)})"
            )
        rows, start = [], 2
        for raw in reader:
            line, start = start, reader.line_num + 1
            row = _EditedRow(line, raw, (raw.get("doc_id") or "").strip() or None, raw.get("file") or None)
            accept = _accept_value(raw.get("accept"))
            row.accept, row.reason = (accept, None) if isinstance(accept, bool) else (False, accept)
            fields = [name for name in top_level_fields(schema) if name in header]
            row.record = {
                name: _cell_value(raw.get(name) or "", resolve(schema, props[name])) for name in fields
            }
            rows.append(row)
    return header, rows


def _read_edited_jsonl(path: Path) -> list[_EditedRow]:
    rows = []
    for line, raw in read_jsonl_rows(path):
        if isinstance(raw, str):
            rows.append(_EditedRow(line, {"line": raw}, reason=raw))
            continue
        doc_id, file = raw.get("doc_id"), raw.get("file")
        row = _EditedRow(line, raw, str(doc_id) if doc_id is not None else None)
        row.file = file if isinstance(file, str) else None
        accept = _accept_value(raw.get("accept"))
        row.accept, row.reason = (accept, None) if isinstance(accept, bool) else (False, accept)
        record = raw.get("record")
        row.record = record if isinstance(record, dict) else None
        if row.record is None and row.reason is None:
            row.reason = "record must be a JSON object"
        rows.append(row)
    return rows


def _check(
    row: _EditedRow, schema: dict[str, Any], seen: dict[str, int], labelled: set[str]
) -> LabelRow | None:
    """The human label row of an accepted row, or None with `row.reason` saying why not."""
    candidate = {"doc_id": row.doc_id, "record": row.record}
    if row.file is not None:
        candidate["file"] = row.file
    doc_id, record, reason = check_label_row(candidate, schema, seen)
    if reason is None and doc_id in labelled:
        reason = "already labelled in the labels file; not added again"
    if reason is not None:
        row.reason = reason.replace("gold record", "corrected record")
        return None
    seen[doc_id] = row.line  # type: ignore[index]
    return human_row(DraftRecord(doc_id, record, file=row.file), record)  # type: ignore[arg-type]


def import_review(
    path: str | Path, schema: dict[str, Any], labels_path: str | Path, queue_path: str | Path | None = None
) -> ImportResult:
    """Append the accepted, schema-valid rows of an edited review file to the labels as `human` rows.

    The edited file is rewritten with the rows left (not accepted, or bad with their `error`); the
    doc_ids imported leave the queue at `queue_path` when one is given."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise ReviewFileError(f"the review file must be .csv or .jsonl, got {path.name}")
    header, rows = _read_edited_csv(path, schema) if suffix == ".csv" else ([], _read_edited_jsonl(path))
    labelled, seen = labelled_doc_ids(labels_path), {}
    accepted: list[LabelRow] = []
    kept: list[_EditedRow] = []
    for row in rows:
        label = None if row.reason or not row.accept else _check(row, schema, seen, labelled)
        if label is None:
            kept.append(row)
        else:
            accepted.append(label)
    added = append_label_rows(labels_path, accepted)  # labels first: a crash after leaves rows to redo
    _rewrite_edited(path, header, kept)
    if queue_path is not None and Path(queue_path).exists():
        drop_from_queue(queue_path, {label.doc_id for label in added})
    errors = [ReviewRowError(r.line, r.doc_id, r.reason) for r in kept if r.reason]
    return ImportResult(added, errors, sum(1 for r in kept if not r.reason))


def _rewrite_edited(path: Path, header: list[str], kept: list[_EditedRow]) -> None:
    if path.suffix.lower() == ".csv":
        buffer = io.StringIO()
        columns = header if ERROR_COLUMN in header else [*header, ERROR_COLUMN]
        writer = csv.DictWriter(buffer, columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**row.raw, ERROR_COLUMN: row.reason or ""} for row in kept)
        text = buffer.getvalue()
    else:
        text = "".join(json.dumps(_jsonl_kept(row), ensure_ascii=False) + "\n" for row in kept)
    storage.write_bytes_atomic(path, text.encode("utf-8"))


def _jsonl_kept(row: _EditedRow) -> dict[str, Any]:
    raw = {k: v for k, v in row.raw.items() if k != ERROR_COLUMN}
    return {**raw, ERROR_COLUMN: row.reason} if row.reason else raw
