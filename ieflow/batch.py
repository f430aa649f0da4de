"""Sharded batch extraction, exactly once, in plain Python (the `extract` flow wraps these pieces).

Layout of a run's output folder (local path or fsspec URL):

    manifest.json                        the plan (run id, program hash, shards), then the summary
    records/shard=<id>/part.parquet      validated records: doc_id, program_hash, one column per field, usage
    quarantine/shard=<id>/part.parquet   everything else, with the reason, failed expectations and raw answer
    _shards/<id>.json                    per-shard counts (summed into the summary)
    validation/<id>.json                 great-expectations results (rendered into data_docs/ at the end)
    _staging/<id>/*.jsonl                finished documents of a shard that is still running

Exactly once: a shard's records part is written last, atomically, and its presence is what "done"
means; a restart skips done shards. Inside a running shard, finished documents are staged every
`flush_every` documents, so a restart (or a task retry after the model was unavailable) redoes only
documents that have no staged outcome. Every document ends in exactly one of records or
quarantine: the quarantine part of a shard is always rewritten whole (even when empty) before its
records part, so a crash between the two cannot leave a document in both after the restart.

Model calls run on one event loop per process (`_Engine`), whichever thread runs the shard, so the
LM client's per-model limit bounds the calls of every shard in the process together; validating
and writing happen in the shard's own thread, while the other shards keep the model busy.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from ieflow import storage
from ieflow.extraction import leaked_prompt
from ieflow.preflight import ConfigError
from ieflow.program import ExtractionProgram
from ieflow.schema import kind_of, resolve, top_level_fields, types_of
from ieflow.validation import RecordValidator, load_expectations

MANIFEST = "manifest.json"
QUARANTINE_REASONS = ("validation_failed", "parse_error", "lm_error", "document_error", "prompt_leak")


class RunConflictError(RuntimeError):
    """The output folder already holds a different run (other documents, program or shard size)."""


class ShardIncomplete(RuntimeError):
    """Some documents of a shard could not reach the model; the rest are staged for the retry."""


@dataclass(frozen=True)
class BatchSettings:
    """How to run a batch. `api_key_env` names an environment variable holding the key, so the key
    itself is never a flow parameter, a manifest entry or a log line."""

    output_dir: str
    shard_size: int = 500
    concurrency: int = 32  # model calls in flight in this process (the LM client's per-model limit)
    api_base: str | None = None
    api_key_env: str | None = None
    api_key_secret: str | None = None  # name of a Prefect Secret block holding the key
    expectations: str | None = None  # JSON file of extra great-expectations expectations
    use_lm_cache: bool = True
    timeout_s: float = 300.0
    max_retries: int = 4
    flush_every: int = 64
    flush_interval_s: float = 2.0


@dataclass(frozen=True)
class Shard:
    shard_id: str
    index: int
    doc_ids: tuple[str, ...]


@dataclass
class RunPlan:
    run_id: str
    program_hash: str
    documents: str
    output_dir: str
    shard_size: int
    n_documents: int
    shards: list[Shard]

    def manifest(self) -> dict[str, Any]:
        return {
            "ieflow_run": 1,
            "run_id": self.run_id,
            "program_hash": self.program_hash,
            "documents": self.documents,
            "shard_size": self.shard_size,
            "n_documents": self.n_documents,
            "shards": [
                {
                    "shard_id": s.shard_id,
                    "n_documents": len(s.doc_ids),
                    "first": s.doc_ids[0],
                    "last": s.doc_ids[-1],
                }
                for s in self.shards
            ],
        }


# -- inputs and the plan ------------------------------------------------------------------------


def load_program(source: str, model: str | None = None) -> ExtractionProgram:
    """A program file, or a JSON Schema file (its default program); `model` overrides the model."""
    try:
        data = storage.read_json(source)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"program not found: {source} (give a program.json from optimize, or a record JSON Schema)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"program {source} is not valid JSON: {exc}") from None
    program = (
        ExtractionProgram.from_dict(data) if "ieflow_program" in data else ExtractionProgram.from_schema(data)
    )
    return program.replace(model=model) if model else program


def read_documents(url: str, doc_ids: list[str] | None = None) -> pl.DataFrame:
    """doc_id, text, status, error (and sha256 when present) of documents.parquet, optionally only
    some documents (a predicate pushed into the Parquet scan, so a shard reads only its rows)."""
    frame = pl.scan_parquet(url) if "://" not in url else storage.read_parquet(url).lazy()
    names = frame.collect_schema().names()
    if "doc_id" not in names:
        raise ValueError(f"{url} has no doc_id column")
    wanted = [c for c in ("doc_id", "sha256", "text", "status", "error") if c in names]
    if doc_ids is not None:
        frame = frame.filter(pl.col("doc_id").is_in(doc_ids))
    else:
        wanted = [c for c in wanted if c != "text"]  # planning needs ids, not texts
    return frame.select(wanted).unique("doc_id", keep="first", maintain_order=True).collect()


def plan_run(documents: str, program: ExtractionProgram, settings: BatchSettings) -> RunPlan:
    """Stable shards: sorted doc_ids cut every `shard_size`, each named by its index and a hash of
    the program hash and its doc_ids. Writes the manifest, or checks it against an earlier start."""
    if settings.shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    docs = read_documents(documents).sort("doc_id")
    ids = docs["doc_id"].cast(pl.String).to_list()
    shas = docs["sha256"].fill_null("").to_list() if "sha256" in docs.columns else [""] * len(ids)
    content = hashlib.sha256("\n".join(f"{i}\t{s}" for i, s in zip(ids, shas, strict=True)).encode())
    # The user's expectations decide what is quarantined, so they are part of the run's identity.
    rules = json.dumps([vars(e) for e in load_expectations(settings.expectations)], sort_keys=True)
    run_id = _digest(program.hash, content.hexdigest(), str(settings.shard_size), rules)[:16]
    shards = []
    for index, start in enumerate(range(0, len(ids), settings.shard_size)):
        chunk = tuple(ids[start : start + settings.shard_size])
        shards.append(Shard(f"{index:05d}-{_digest(program.hash, *chunk)[:10]}", index, chunk))
    plan = RunPlan(
        run_id, program.hash, documents, settings.output_dir, settings.shard_size, len(ids), shards
    )
    url = storage.join(settings.output_dir, MANIFEST)
    if storage.exists(url):
        old = storage.read_json(url)
        if old.get("run_id") != run_id:
            raise RunConflictError(
                f"{settings.output_dir} holds run {old.get('run_id')} (program {old.get('program_hash')}, "
                f"{old.get('n_documents')} documents, shard size {old.get('shard_size')}), not this one "
                f"(program {program.hash}, {len(ids)} documents, shard size {settings.shard_size}; "
                "expectations count too); use another output folder"
            )
    else:
        storage.write_json({**plan.manifest(), "model": program.model, "status": "running"}, url)
    return plan


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def _part(output_dir: str, kind: str, shard_id: str) -> str:
    return storage.join(output_dir, kind, f"shard={shard_id}", "part.parquet")


def shard_done(output_dir: str, shard_id: str) -> bool:
    return storage.exists(_part(output_dir, "records", shard_id))


def pending_shards(plan: RunPlan) -> list[Shard]:
    return [s for s in plan.shards if not shard_done(plan.output_dir, s.shard_id)]


# -- one event loop per process for every model call ---------------------------------------------


class _Engine:
    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _pid = 0

    @classmethod
    def run(cls, coroutine: Any) -> Any:
        with cls._lock:
            if cls._loop is None or cls._pid != os.getpid():  # a forked child has no loop thread
                cls._loop = asyncio.new_event_loop()
                cls._pid = os.getpid()
                threading.Thread(target=cls._loop.run_forever, name="ieflow-batch-loop", daemon=True).start()
            loop = cls._loop
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()


_CLIENTS: dict[tuple, Any] = {}
_VALIDATORS: dict[tuple, RecordValidator] = {}
_SHARED_LOCK = threading.Lock()


def make_client(program: ExtractionProgram, settings: BatchSettings) -> Any:
    """One client per process and settings; its per-model limit is `concurrency`."""
    from ieflow import config
    from ieflow.lm import LMClient, ResponseCache
    from ieflow.secrets import resolve_api_key

    key = (
        program.model,
        json.dumps(program.model_params, sort_keys=True),
        settings.api_base,
        settings.api_key_env,
        settings.api_key_secret,
        settings.use_lm_cache,
        settings.concurrency,
        settings.timeout_s,
        settings.max_retries,
    )
    with _SHARED_LOCK:
        if key not in _CLIENTS:
            api_key = resolve_api_key(settings.api_key_env, settings.api_key_secret)
            cache = ResponseCache(config.lm_cache_dir()) if settings.use_lm_cache else False
            _CLIENTS[key] = LMClient(
                program.model,
                params=program.model_params,
                api_base=settings.api_base,
                api_key=api_key,
                timeout_s=settings.timeout_s,
                max_retries=settings.max_retries,
                max_concurrency=settings.concurrency,
                cache=cache,
            )
        return _CLIENTS[key]


def make_validator(program: ExtractionProgram, expectations: str | None) -> RecordValidator:
    key = (program.hash, expectations)
    with _SHARED_LOCK:
        if key not in _VALIDATORS:
            _VALIDATORS[key] = RecordValidator(
                program.schema, load_expectations(expectations), name=program.name
            )
        return _VALIDATORS[key]


# -- one shard ------------------------------------------------------------------------------------


def classify(record: Any, trace: Any) -> dict[str, Any]:
    """A document's outcome from `program.aextract`: ok | invalid | parse_error | lm_error | transient
    (the model was unavailable after every retry: the document is tried again, not quarantined)."""
    from ieflow.lm.structured import parse_json

    usage = {
        "prompt_tokens": trace.prompt_tokens,
        "completion_tokens": trace.completion_tokens,
        "cost_usd": trace.cost_usd,
        "latency_s": trace.latency_s,
        "calls": trace.calls,
    }
    base = {"value": None, "raw": trace.raw or None, "error": trace.error, **usage}
    if record is not None:
        return {**base, "kind": "ok", "value": record, "raw": None}
    if trace.error_kind == "unavailable":
        return {**base, "kind": "transient"}
    if trace.raw:
        try:
            return {**base, "kind": "invalid", "value": parse_json(trace.raw)}
        except ValueError:
            return {**base, "kind": "parse_error"}
    return {**base, "kind": "lm_error"}


class _Stager:
    """Buffers finished outcomes and writes them as small atomic JSONL files under _staging/."""

    def __init__(self, directory: str, flush_every: int, flush_interval_s: float) -> None:
        self.directory, self.flush_every, self.interval = directory, flush_every, flush_interval_s
        self.attempt, self.seq, self.buffer, self.last = uuid.uuid4().hex[:8], 0, [], time.monotonic()
        self.lock = asyncio.Lock()

    async def add(self, outcome: dict[str, Any]) -> None:
        if outcome["kind"] != "transient":  # transient failures are redone, never staged
            self.buffer.append(outcome)
        if len(self.buffer) >= self.flush_every or time.monotonic() - self.last > self.interval:
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            batch, self.buffer, self.last = self.buffer, [], time.monotonic()
            if batch:
                self.seq += 1
                data = "".join(json.dumps(o, ensure_ascii=False, default=str) + "\n" for o in batch)
                url = storage.join(self.directory, f"{self.attempt}-{self.seq:06d}.jsonl")
                await asyncio.to_thread(storage.write_bytes_atomic, url, data.encode("utf-8"))


def load_staged(directory: str) -> dict[str, dict[str, Any]]:
    """Outcomes staged by earlier attempts (first one per document wins)."""
    import fsspec

    if not storage.exists(directory):
        return {}
    fs, root = fsspec.core.url_to_fs(directory)
    staged: dict[str, dict[str, Any]] = {}
    for path in sorted(fs.ls(root, detail=False)):
        if path.rsplit("/", 1)[-1].startswith(".") or not path.endswith(".jsonl"):
            continue  # a temporary file left by a kill during a write
        with fs.open(path, "rb") as handle:
            for line in handle.read().decode("utf-8").splitlines():
                outcome = json.loads(line)
                staged.setdefault(outcome["doc_id"], outcome)
    return staged


async def _extract_all(
    program: ExtractionProgram,
    client: Any,
    docs: list[tuple[str, str]],
    settings: BatchSettings,
    stager: _Stager,
) -> list[dict[str, Any]]:
    outcomes: list[dict[str, Any]] = []
    queue = iter(docs)  # shared by the workers; next() never yields to the loop, so no lock

    async def worker() -> None:
        for doc_id, text in queue:
            try:
                record, trace = await program.aextract(text, client)
                outcome = {"doc_id": doc_id, **classify(record, trace)}
            except Exception as exc:  # aextract returns model failures; anything else is a bug,
                # which a retry would repeat: quarantine the document instead of failing the shard
                outcome = {
                    "doc_id": doc_id,
                    "kind": "lm_error",
                    "value": None,
                    "raw": None,
                    "error": f"unexpected {type(exc).__name__}: {exc}",
                }
            outcomes.append(outcome)
            await stager.add(outcome)

    await asyncio.gather(*(worker() for _ in range(min(settings.concurrency, len(docs)))))
    await stager.flush()
    return outcomes


def run_shard(
    documents: str, shard: Shard, program: ExtractionProgram, settings: BatchSettings
) -> dict[str, Any]:
    """Extract, validate and write one shard; returns its stats. A done shard is only read back.

    Raises ShardIncomplete when documents could not reach the model after the client's retries:
    everything else is staged, so calling again redoes only those documents."""
    out = settings.output_dir
    stats_url = storage.join(out, "_shards", f"{shard.shard_id}.json")
    if shard_done(out, shard.shard_id):
        return storage.read_json(stats_url)
    started = time.perf_counter()
    staging = storage.join(out, "_staging", shard.shard_id)
    wanted = set(shard.doc_ids)
    outcomes = {d: o for d, o in load_staged(staging).items() if d in wanted}
    resumed = len(outcomes)
    todo: list[tuple[str, str]] = []
    if len(outcomes) < len(shard.doc_ids):
        rows = read_documents(documents, [d for d in shard.doc_ids if d not in outcomes])
        for row in rows.iter_rows(named=True):
            problem = _document_problem(row)
            if problem:
                outcomes[row["doc_id"]] = {
                    "doc_id": row["doc_id"],
                    "kind": "document_error",
                    "value": None,
                    "raw": None,
                    "error": problem,
                }
            else:
                todo.append((row["doc_id"], row["text"]))
    if todo:
        stager = _Stager(staging, settings.flush_every, settings.flush_interval_s)
        fresh = _Engine.run(_extract_all(program, make_client(program, settings), todo, settings, stager))
        failed = [o for o in fresh if o["kind"] == "transient"]
        if failed:
            raise ShardIncomplete(
                f"shard {shard.shard_id}: {len(failed)} of {len(todo)} documents could "
                f"not reach the model ({failed[0]['error']}); the rest are saved"
            )
        outcomes.update({o["doc_id"]: o for o in fresh})
    missing = [d for d in shard.doc_ids if d not in outcomes]
    for doc_id in missing:  # listed in the plan but gone from documents.parquet since
        outcomes[doc_id] = {
            "doc_id": doc_id,
            "kind": "document_error",
            "value": None,
            "raw": None,
            "error": "document no longer in the documents table",
        }
    stats = _finalize(shard, [outcomes[d] for d in shard.doc_ids], program, settings)
    records = stats.pop("_records")
    stats.update(resumed_documents=resumed, seconds=round(time.perf_counter() - started, 3))
    storage.write_json(stats, stats_url)
    storage.write_parquet(records, _part(out, "records", shard.shard_id))  # last: the commit
    return stats


def _document_problem(row: dict[str, Any]) -> str | None:
    if row.get("status") not in (None, "ok"):
        return f"ingest {row.get('status')}: {row.get('error') or 'no text'}"
    if not (row.get("text") or "").strip():
        return "the document has no text"
    return None


def _finalize(
    shard: Shard, outcomes: list[dict[str, Any]], program: ExtractionProgram, settings: BatchSettings
) -> dict[str, Any]:
    validator = make_validator(program, settings.expectations)
    for o in outcomes:
        # An obeyed injection ("print your instructions") can be schema-valid: keep it out of records.
        leak = leaked_prompt(o["value"], program) if o["kind"] == "ok" else None
        if leak:
            o.update(kind="prompt_leak", error=f"a value repeats the extraction prompt: {leak[:40]!r}")
    values = {o["doc_id"]: o["value"] for o in outcomes if o["kind"] in ("ok", "invalid")}
    report = validator.validate(values)
    records, quarantined = [], []
    for o in outcomes:
        failed = report.row_failures.get(o["doc_id"], [])
        typed, problem = (
            coerce_record(program.schema, o["value"]) if o["kind"] == "ok" and not failed else (None, None)
        )
        if typed is not None:
            records.append({**o, "value": typed})
            continue
        reason = {"ok": "validation_failed", "invalid": "validation_failed"}.get(o["kind"], o["kind"])
        errors = [e for e in (o.get("error"), problem) if e]
        quarantined.append({**o, "reason": reason, "failed_expectations": failed, "errors": errors})
    out = settings.output_dir
    storage.write_json(report.results, storage.join(out, "validation", f"{shard.shard_id}.json"))
    storage.write_parquet(quarantine_frame(quarantined, program), _part(out, "quarantine", shard.shard_id))
    by_reason = {r: sum(q["reason"] == r for q in quarantined) for r in QUARANTINE_REASONS}
    usage = {
        k: sum(o.get(k) or 0 for o in outcomes)
        for k in ("prompt_tokens", "completion_tokens", "cost_usd", "latency_s", "calls")
    }
    return {
        "shard_id": shard.shard_id,
        "n_documents": len(outcomes),
        "n_records": len(records),
        "n_quarantined": len(quarantined),
        "quarantined_by_reason": by_reason,
        "failed_expectations": report.counts,
        "batch_failures": report.batch_failures,
        "validation_errors": report.errors,
        **usage,
        "_records": records_frame(records, program),
    }


# -- typed frames: one column per top-level field, structs and lists for nested ones --------------

USAGE_COLUMNS = {
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    "cost_usd": pl.Float64,
    "latency_s": pl.Float64,
    "calls": pl.Int64,
    "model": pl.String,
    "status": pl.String,
}
QUARANTINE_COLUMNS = {
    "doc_id": pl.String,
    "program_hash": pl.String,
    "reason": pl.String,
    "failed_expectations": pl.List(pl.String),
    "errors": pl.List(pl.String),
    "raw": pl.String,
    "record_json": pl.String,
    **USAGE_COLUMNS,
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


def records_frame(rows: list[dict[str, Any]], program: ExtractionProgram) -> pl.DataFrame:
    props = resolve(program.schema, program.schema)["properties"]
    fields = {n: polars_dtype(program.schema, props[n]) for n in top_level_fields(program.schema)}
    schema = {"doc_id": pl.String, "program_hash": pl.String, **fields, **USAGE_COLUMNS}
    data = [
        {
            "doc_id": r["doc_id"],
            "program_hash": program.hash,
            **r["value"],
            "model": program.model,
            "status": "ok",
            **{k: r.get(k) for k in USAGE_COLUMNS if k not in ("model", "status")},
        }
        for r in rows
    ]
    return pl.DataFrame(data, schema=schema, orient="row" if not data else None)


def quarantine_frame(rows: list[dict[str, Any]], program: ExtractionProgram) -> pl.DataFrame:
    data = [
        {
            "doc_id": r["doc_id"],
            "program_hash": program.hash,
            "reason": r["reason"],
            "failed_expectations": r["failed_expectations"],
            "errors": r["errors"],
            "raw": r.get("raw"),
            "record_json": None if r.get("value") is None else json.dumps(r["value"], ensure_ascii=False),
            "model": program.model,
            "status": "quarantined",
            **{k: r.get(k) for k in USAGE_COLUMNS if k not in ("model", "status")},
        }
        for r in rows
    ]
    return pl.DataFrame(data, schema=QUARANTINE_COLUMNS, orient="row" if not data else None)


# -- the whole run --------------------------------------------------------------------------------


def finish_run(
    plan: RunPlan,
    program: ExtractionProgram,
    settings: BatchSettings,
    wall_s: float,
    failed: dict[str, str] | None = None,
    data_docs: bool = True,
    n_processed: int | None = None,
) -> dict[str, Any]:
    """Sum the shard stats, render Data Docs, drop staging and record the summary in the manifest.
    `n_processed`: documents of the shards this run did (the rest were done by an earlier start)."""
    out = plan.output_dir
    stats = [
        storage.read_json(storage.join(out, "_shards", f"{s.shard_id}.json"))
        for s in plan.shards
        if shard_done(out, s.shard_id)
    ]
    summary = summarize(plan, stats, wall_s, failed or {})
    summary["n_processed"] = summary["n_documents"] if n_processed is None else n_processed
    if data_docs and stats:
        rendering = time.perf_counter()
        summary["data_docs"] = _render_data_docs(plan, program, settings, [s["shard_id"] for s in stats])
        summary["data_docs_s"] = round(time.perf_counter() - rendering, 2)
    if summary["status"] == "complete":
        _remove(storage.join(out, "_staging"))
    manifest = storage.read_json(storage.join(out, MANIFEST))
    manifest.update(status=summary["status"], summary=summary)
    storage.write_json(manifest, storage.join(out, MANIFEST))
    return summary


def summarize(
    plan: RunPlan, stats: list[dict[str, Any]], wall_s: float, failed: dict[str, str]
) -> dict[str, Any]:
    total = {
        k: sum(s.get(k) or 0 for s in stats)
        for k in (
            "n_documents",
            "n_records",
            "n_quarantined",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "calls",
        )
    }
    by_reason = {r: sum(s["quarantined_by_reason"].get(r, 0) for s in stats) for r in QUARANTINE_REASONS}
    expectations: dict[str, int] = {}
    for s in stats:
        for name, count in s.get("failed_expectations", {}).items():
            expectations[name] = expectations.get(name, 0) + count
    done = len(stats)
    return {
        "run_id": plan.run_id,
        "program_hash": plan.program_hash,
        "output_dir": plan.output_dir,
        "status": "complete" if done == len(plan.shards) else "incomplete",
        "n_shards": len(plan.shards),
        "shards_done": done,
        "shards_failed": failed,
        **total,
        "cost_usd": round(total["cost_usd"], 6),
        "quarantined_by_reason": by_reason,
        "failed_expectations": dict(sorted(expectations.items(), key=lambda kv: -kv[1])),
        "wall_s": round(wall_s, 2),
        "finished": date.today().isoformat(),
    }


def _render_data_docs(
    plan: RunPlan, program: ExtractionProgram, settings: BatchSettings, shard_ids: list[str]
) -> str:
    import tempfile

    import fsspec

    from ieflow.validation import build_data_docs

    folder = storage.join(plan.output_dir, "validation")
    results = [
        (shard_id, result)
        for shard_id in shard_ids
        for result in storage.read_json(storage.join(folder, f"{shard_id}.json"))
    ]
    target = storage.join(plan.output_dir, "data_docs")
    validator = make_validator(program, settings.expectations)
    if "://" not in target:
        return build_data_docs(validator, results, target)
    with tempfile.TemporaryDirectory() as tmp:  # GE writes local files; copy them to the store
        build_data_docs(validator, results, tmp)
        fs, root = fsspec.core.url_to_fs(target)
        fs.put(tmp + "/", root, recursive=True)
    return storage.join(target, "index.html")


def _remove(url: str) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def read_outputs(output_dir: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(records, quarantine) of the shards that are done (a quarantine part without its records
    part belongs to a shard that crashed mid-commit and will be rewritten)."""
    manifest = storage.read_json(storage.join(output_dir, MANIFEST))
    done = [s["shard_id"] for s in manifest["shards"] if shard_done(output_dir, s["shard_id"])]
    frames = {
        kind: [storage.read_parquet(_part(output_dir, kind, s)) for s in done]
        for kind in ("records", "quarantine")
    }
    return (
        pl.concat(frames["records"], how="diagonal_relaxed") if done else pl.DataFrame(),
        pl.concat(frames["quarantine"], how="diagonal_relaxed") if done else pl.DataFrame(),
    )


def run_batch(
    documents: str,
    program: ExtractionProgram,
    settings: BatchSettings,
    parallel_shards: int = 2,
    on_shard: Any = None,
) -> dict[str, Any]:
    """The whole run without Prefect: plan, run pending shards on a few threads, finish."""
    started = time.perf_counter()
    plan = plan_run(documents, program, settings)
    failed: dict[str, str] = {}
    processed = 0
    with ThreadPoolExecutor(max(1, parallel_shards), thread_name_prefix="ieflow-shard") as pool:
        jobs = {pool.submit(run_shard, documents, s, program, settings): s for s in pending_shards(plan)}
        for job, shard in jobs.items():
            try:
                stats = job.result()
            except Exception as exc:  # one failed shard must not lose the others' work
                failed[shard.shard_id] = f"{type(exc).__name__}: {exc}"
                continue
            processed += len(shard.doc_ids)
            if on_shard:
                on_shard(stats)
    return finish_run(plan, program, settings, time.perf_counter() - started, failed, n_processed=processed)
