"""Ending a shard and ending a run.

A shard commits exactly once: its outcomes are validated, its validation results and quarantine
part are written (the quarantine part always whole, even when empty), then its counts, and its
records part last, atomically; the records part's presence is what "done" means. A crash between
the two parts leaves a shard that is not done, so the restart rewrites both and no document ends in
both. A run ends by summing the shard counts, rendering Data Docs, dropping the staging folder and
recording the summary in the manifest.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import date
from typing import Any

import polars as pl

from ieflow import storage
from ieflow.batch.outcome import QUARANTINE_REASONS, USAGE_FIELDS, Outcome, OutcomeKind, Quarantined
from ieflow.batch.plan import MANIFEST, BatchSettings, RunPlan, Shard, part_url, shard_done, stats_url
from ieflow.batch.write import coerce_record, quarantine_frame, records_frame
from ieflow.extraction import leaked_prompt
from ieflow.program import ExtractionProgram
from ieflow.validation import RecordValidator, load_expectations

_VALIDATORS: dict[tuple[str, str | None], RecordValidator] = {}
_VALIDATORS_LOCK = threading.Lock()


def shared_validator(program: ExtractionProgram, expectations: str | None) -> RecordValidator:
    """One validator per process, program and expectations file (building one is not cheap)."""
    key = (program.hash, expectations)
    with _VALIDATORS_LOCK:
        if key not in _VALIDATORS:
            _VALIDATORS[key] = RecordValidator(
                program.schema, load_expectations(expectations), name=program.name
            )
        return _VALIDATORS[key]


# -- one shard ------------------------------------------------------------------------------------


def commit_shard(
    shard: Shard,
    outcomes: list[Outcome],
    program: ExtractionProgram,
    settings: BatchSettings,
    resumed: int,
    started: float,
) -> dict[str, Any]:
    """Validate and write the shard, records part last; returns the shard's stats. `resumed`:
    outcomes staged by an earlier attempt; `started`: `time.perf_counter()` when the shard began."""
    outcomes = [_flag_leak(o, program) for o in outcomes]
    report = shared_validator(program, settings.expectations).validate(
        {o.doc_id: o.value for o in outcomes if o.kind in (OutcomeKind.OK, OutcomeKind.INVALID)}
    )
    records, quarantined = _split(outcomes, report.row_failures, program)
    out = settings.output_dir
    storage.write_json(report.results, storage.join(out, "validation", f"{shard.shard_id}.json"))
    storage.write_parquet(quarantine_frame(quarantined, program), part_url(out, "quarantine", shard.shard_id))
    records_part = records_frame(records, program)
    stats = {
        "shard_id": shard.shard_id,
        "n_documents": len(outcomes),
        "n_records": len(records),
        "n_quarantined": len(quarantined),
        "quarantined_by_reason": {r: sum(q.reason == r for q in quarantined) for r in QUARANTINE_REASONS},
        "failed_expectations": report.counts,
        "batch_failures": report.batch_failures,
        "validation_errors": report.errors,
        **{k: sum(getattr(o, k) or 0 for o in outcomes) for k in USAGE_FIELDS},
        "resumed_documents": resumed,
        "seconds": round(time.perf_counter() - started, 3),
    }
    storage.write_json(stats, stats_url(out, shard.shard_id))
    storage.write_parquet(records_part, part_url(out, "records", shard.shard_id))  # last: the commit
    return stats


def _flag_leak(outcome: Outcome, program: ExtractionProgram) -> Outcome:
    # An obeyed injection ("print your instructions") can be schema-valid: keep it out of records.
    leak = leaked_prompt(outcome.value, program) if outcome.kind is OutcomeKind.OK else None
    if not leak:
        return outcome
    error = f"a value repeats the extraction prompt: {leak[:40]!r}"
    return replace(outcome, kind=OutcomeKind.PROMPT_LEAK, error=error)


def _split(
    outcomes: list[Outcome], row_failures: dict[str, list[str]], program: ExtractionProgram
) -> tuple[list[Outcome], list[Quarantined]]:
    """(records: ok outcomes with their typed value, quarantined: everything else and why)."""
    records: list[Outcome] = []
    quarantined: list[Quarantined] = []
    for o in outcomes:
        failed = row_failures.get(o.doc_id, [])
        typed, problem = (
            coerce_record(program.schema, o.value)
            if o.kind is OutcomeKind.OK and not failed
            else (None, None)
        )
        if typed is not None:
            records.append(replace(o, value=typed))
            continue
        errors = [e for e in (o.error, problem) if e]
        quarantined.append(Quarantined(o, o.kind.quarantine_reason, failed, errors))
    return records, quarantined


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
        storage.read_json(stats_url(out, s.shard_id)) for s in plan.shards if shard_done(out, s.shard_id)
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


_SUMMED = (
    "n_documents",
    "n_records",
    "n_quarantined",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "calls",
)


def summarize(
    plan: RunPlan, stats: list[dict[str, Any]], wall_s: float, failed: dict[str, str]
) -> dict[str, Any]:
    total = {k: sum(s.get(k) or 0 for s in stats) for k in _SUMMED}
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
    validator = shared_validator(program, settings.expectations)
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
        dataset: [storage.read_parquet(part_url(output_dir, dataset, s)) for s in done]
        for dataset in ("records", "quarantine")
    }
    return (
        pl.concat(frames["records"], how="diagonal_relaxed") if done else pl.DataFrame(),
        pl.concat(frames["quarantine"], how="diagonal_relaxed") if done else pl.DataFrame(),
    )
