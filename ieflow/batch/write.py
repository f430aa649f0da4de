"""What a shard writes: staged outcomes while it runs, then typed Parquet frames when it commits.

Staging: finished outcomes are buffered and written as small atomic JSONL files under
`_staging/<shard>/`, so a restart redoes only documents without one. Typing: one column per
top-level field of the schema, structs and lists for nested ones, real dates.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import date
from typing import Any

import polars as pl

from ieflow import storage
from ieflow.batch.outcome import REVISION_FIELDS, USAGE_FIELDS, Outcome, Quarantined
from ieflow.program import ExtractionProgram
from ieflow.schema import kind_of, resolve, top_level_fields, types_of

# -- staging --------------------------------------------------------------------------------------


class Stager:
    """Buffers finished outcomes and writes them as small atomic JSONL files under `directory`,
    every `flush_every` outcomes or `flush_interval_s` seconds."""

    def __init__(self, directory: str, flush_every: int, flush_interval_s: float) -> None:
        self.directory, self.flush_every, self.interval = directory, flush_every, flush_interval_s
        self.attempt, self.seq, self.last = uuid.uuid4().hex[:8], 0, time.monotonic()
        self.buffer: list[Outcome] = []
        self.lock = asyncio.Lock()

    async def add(self, outcome: Outcome) -> None:
        if outcome.staged:  # transient failures are redone, never staged
            self.buffer.append(outcome)
        if len(self.buffer) >= self.flush_every or time.monotonic() - self.last > self.interval:
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            batch, self.buffer, self.last = self.buffer, [], time.monotonic()
            if batch:
                self.seq += 1
                data = "".join(json.dumps(o.to_dict(), ensure_ascii=False, default=str) + "\n" for o in batch)
                url = storage.join(self.directory, f"{self.attempt}-{self.seq:06d}.jsonl")
                await asyncio.to_thread(storage.write_bytes_atomic, url, data.encode("utf-8"))


def load_staged(directory: str) -> dict[str, Outcome]:
    """Outcomes staged by earlier attempts (first one per document wins)."""
    import fsspec

    if not storage.exists(directory):
        return {}
    fs, root = fsspec.core.url_to_fs(directory)
    staged: dict[str, Outcome] = {}
    for path in sorted(fs.ls(root, detail=False)):
        if path.rsplit("/", 1)[-1].startswith(".") or not path.endswith(".jsonl"):
            continue  # a temporary file left by a kill during a write
        with fs.open(path, "rb") as handle:
            for line in handle.read().decode("utf-8").splitlines():
                outcome = Outcome.from_dict(json.loads(line))
                staged.setdefault(outcome.doc_id, outcome)
    return staged


# -- typed values -----------------------------------------------------------------------------------

USAGE_COLUMNS = {
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    "cost_usd": pl.Float64,
    "model_s": pl.Float64,  # the model calls' time, summed by the trace
    "wall_s": pl.Float64,  # the document's time in its shard: the calls, waits, grounding
    "calls": pl.Int64,
    "model": pl.String,
    "status": pl.String,
}
REVISION_COLUMNS = {
    "revised": pl.Boolean,
    "revise_reason": pl.String,
    "revise_calls": pl.Int64,
    "revise_tokens": pl.Int64,
    "revise_cost_usd": pl.Float64,
}
SOURCE_COLUMNS = {"doc_id": pl.String, "source_uri": pl.String, "file_name": pl.String}
QUARANTINE_COLUMNS = {
    **SOURCE_COLUMNS,
    "program_hash": pl.String,
    "reason": pl.String,
    "failed_expectations": pl.List(pl.String),
    "errors": pl.List(pl.String),
    "raw": pl.String,
    "record_json": pl.String,
    **USAGE_COLUMNS,
    **REVISION_COLUMNS,
}


def polars_dtype(schema: dict[str, Any], node: dict[str, Any]) -> pl.DataType:
    """The column type of a field: Struct for objects, List for arrays, Date for format date,
    String holding JSON text for a field of several types (or none)."""
    node = resolve(schema, node)
    kind = kind_of(schema, node)
    if kind == "object":
        return pl.Struct({k: polars_dtype(schema, v) for k, v in node["properties"].items()})
    if kind in ("scalar_array", "object_array"):
        items = node.get("items")
        return pl.List(polars_dtype(schema, items) if isinstance(items, dict) else pl.String)
    kinds = sorted(t for t in types_of(node) if t != "null")
    if kinds == ["string"]:
        return pl.Date if node.get("format") == "date" else pl.String
    return {"integer": pl.Int64, "number": pl.Float64, "boolean": pl.Boolean}.get(
        "number" if kinds == ["integer", "number"] else ",".join(kinds), pl.String
    )


def _coerce(value: Any, schema: dict[str, Any], node: dict[str, Any], dtype: pl.DataType) -> Any:
    if value is None:
        return None
    node = resolve(schema, node)
    if isinstance(dtype, pl.Struct):
        props = node["properties"]
        return {f.name: _coerce(value.get(f.name), schema, props[f.name], f.dtype) for f in dtype.fields}
    if isinstance(dtype, pl.List):
        items = node.get("items") if isinstance(node.get("items"), dict) else {}
        return [_coerce(v, schema, items, dtype.inner) for v in value]
    if dtype == pl.Date:
        return date.fromisoformat(value)
    if dtype == pl.String:
        return (
            value
            if isinstance(value, str) and types_of(node) in (["string"], ["string", "null"])
            else json.dumps(value, ensure_ascii=False)
        )
    return {pl.Int64: int, pl.Float64: float, pl.Boolean: bool}[dtype](value)  # type: ignore[index]


def coerce_record(schema: dict[str, Any], value: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(typed record, None), or (None, why it cannot be stored in the typed columns)."""
    props = resolve(schema, schema)["properties"]
    try:
        return {
            name: _coerce(value.get(name), schema, props[name], polars_dtype(schema, props[name]))
            for name in top_level_fields(schema)
        }, None
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        return None, f"cannot store the record in typed columns: {type(exc).__name__}: {exc}"


# -- frames -------------------------------------------------------------------------------------------


def _usage(outcome: Outcome) -> dict[str, Any]:
    return {name: getattr(outcome, name) for name in (*USAGE_FIELDS, *REVISION_FIELDS)}


def records_frame(
    rows: list[Outcome], program: ExtractionProgram, in_review: frozenset[str] = frozenset()
) -> pl.DataFrame:
    """The records part: `rows` are ok outcomes whose value is the typed record; `in_review` the
    doc_ids the review queue also holds (`needs_review`)."""
    props = resolve(program.schema, program.schema)["properties"]
    fields = {n: polars_dtype(program.schema, props[n]) for n in top_level_fields(program.schema)}
    schema = {
        **SOURCE_COLUMNS,
        "program_hash": pl.String,
        **fields,
        **USAGE_COLUMNS,
        **REVISION_COLUMNS,
        "needs_review": pl.Boolean,
    }
    data = [
        {
            "doc_id": r.doc_id,
            "source_uri": r.source_uri,
            "file_name": r.file_name,
            "program_hash": program.hash,
            **r.value,
            "model": program.model,
            "status": "ok",
            **_usage(r),
            "needs_review": r.doc_id in in_review,
        }
        for r in rows
    ]
    return pl.DataFrame(data, schema=schema, orient="row" if not data else None)


def quarantine_frame(rows: list[Quarantined], program: ExtractionProgram) -> pl.DataFrame:
    data = [
        {
            "doc_id": q.outcome.doc_id,
            "source_uri": q.outcome.source_uri,
            "file_name": q.outcome.file_name,
            "program_hash": program.hash,
            "reason": q.reason,
            "failed_expectations": q.failed_expectations,
            "errors": q.errors,
            "raw": q.outcome.raw,
            "record_json": None
            if q.outcome.value is None
            else json.dumps(q.outcome.value, ensure_ascii=False),
            "model": program.model,
            "status": "quarantined",
            **_usage(q.outcome),
        }
        for q in rows
    ]
    return pl.DataFrame(data, schema=QUARANTINE_COLUMNS, orient="row" if not data else None)
