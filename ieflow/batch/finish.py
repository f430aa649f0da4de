"""Ending a shard and ending a run.

A shard commits exactly once: its outcomes are validated, its validation results and its
quarantine, evidence and review parts are written (each always whole, even when empty), then its
counts, and its records part last, atomically; the records part's presence is what "done" means. A
crash before it leaves a shard that is not done, so the restart rewrites every part at the same
paths: no document ends in two datasets, and no evidence or review row is written twice. A run
ends by summing the shard counts, rendering Data Docs and the review page, dropping the staging
folder and recording the summary in the manifest.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import date
from typing import Any

import polars as pl

from ieflow import storage
from ieflow.batch.evidence import evidence_frame, review_frame
from ieflow.batch.outcome import QUARANTINE_REASONS, USAGE_FIELDS, Outcome, OutcomeKind, Quarantined
from ieflow.batch.page import write_review_page
from ieflow.batch.plan import (
    MANIFEST,
    BatchSettings,
    RunPlan,
    Shard,
    part_url,
    read_dataset,
    shard_done,
    stats_url,
)
from ieflow.batch.review_queue import ReviewItem, review_item
from ieflow.batch.write import coerce_record, quarantine_frame, records_frame
from ieflow.extraction import leaked_prompt
from ieflow.grounding import schema_path
from ieflow.program import ExtractionProgram
from ieflow.validation import RecordValidator, load_expectations
from ieflow.validation.grounding import EvidenceRow, GroundingReport, check_grounding

log = logging.getLogger(__name__)

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
    review = [i for o in records if (i := review_item(o, program.schema, settings.review)) is not None]
    grounding = _check_grounding(records, program, settings)
    storage.write_json(
        report.results + ([grounding.result] if grounding.result else []),
        storage.join(out, "validation", f"{shard.shard_id}.json"),
    )
    storage.write_parquet(quarantine_frame(quarantined, program), part_url(out, "quarantine", shard.shard_id))
    storage.write_parquet(evidence_frame(records, program), part_url(out, "evidence", shard.shard_id))
    storage.write_parquet(review_frame(review, program), part_url(out, "review", shard.shard_id))
    records_part = records_frame(records, program, frozenset(i.outcome.doc_id for i in review))
    stats = {
        "shard_id": shard.shard_id,
        "n_documents": len(outcomes),
        "n_records": len(records),
        "n_quarantined": len(quarantined),
        "quarantined_by_reason": {r: sum(q.reason == r for q in quarantined) for r in QUARANTINE_REASONS},
        "failed_expectations": report.counts,
        "batch_failures": report.batch_failures,
        "validation_errors": report.errors + grounding.errors,
        "n_review": len(review),
        "review_by_reason": _count_reasons(review),
        "grounding": {"counted": grounding.counted, "grounded": grounding.grounded},
        "grounding_failed": grounding.failed,
        **{k: sum(getattr(o, k) or 0 for o in outcomes) for k in USAGE_FIELDS},
        **{k: sum(getattr(o, k) or 0 for o in outcomes) for k in ("revise_calls", "revise_tokens")},
        "n_revised": sum(bool(o.revised) for o in outcomes),
        "resumed_documents": resumed,
        "seconds": round(time.perf_counter() - started, 3),
    }
    storage.write_json(stats, stats_url(out, shard.shard_id))
    storage.write_parquet(records_part, part_url(out, "records", shard.shard_id))  # last: the commit
    return stats


def _check_grounding(
    records: list[Outcome], program: ExtractionProgram, settings: BatchSettings
) -> GroundingReport:
    if settings.min_grounded_share is None:
        return GroundingReport()
    rows = [EvidenceRow(o.doc_id, schema_path(e.path), e.method) for o in records for e in o.evidence]
    return check_grounding(rows, settings.min_grounded_share, f"{program.name}.grounding")


def _count_reasons(items: list[ReviewItem]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        for reason in item.reasons:
            counts[reason] = counts.get(reason, 0) + 1
    return counts


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
    review_page: bool = True,
) -> dict[str, Any]:
    """Sum the shard stats, render Data Docs and the review page, drop staging and record the
    summary in the manifest. `n_processed`: documents of the shards this run did (the rest were
    done by an earlier start)."""
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
    if review_page and stats:
        summary.update(_write_review_page(out))
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
    "n_review",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "calls",
    "revise_calls",
    "revise_tokens",
    "n_revised",
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
        **_grounding_summary(stats),
        "wall_s": round(wall_s, 2),
        "finished": date.today().isoformat(),
    }


def _grounding_summary(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's grounded share per field, the review queue by reason, and per field the number of
    shards whose great-expectations grounding check failed."""
    counted: dict[str, int] = {}
    grounded: dict[str, int] = {}
    failed: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for s in stats:
        grounding = s.get("grounding") or {}
        for name, n in (grounding.get("counted") or {}).items():
            counted[name] = counted.get(name, 0) + n
            grounded[name] = grounded.get(name, 0) + grounding["grounded"].get(name, 0)
        for name in s.get("grounding_failed") or []:
            failed[name] = failed.get(name, 0) + 1
        for reason, n in (s.get("review_by_reason") or {}).items():
            reasons[reason] = reasons.get(reason, 0) + n
    return {
        "review_by_reason": reasons,
        "grounded_share": {name: round(grounded[name] / n, 4) for name, n in sorted(counted.items())},
        "grounding_failed_shards": failed,
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


def _write_review_page(output_dir: str) -> dict[str, Any]:
    # The datasets are committed by now: a page that cannot be drawn is reported, not fatal.
    try:
        return {"review_page": write_review_page(output_dir)}
    except Exception as exc:
        log.warning("review page not written: %s: %s", type(exc).__name__, exc)
        return {"review_page": None, "review_page_error": f"{type(exc).__name__}: {exc}"}


def _remove(url: str) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def read_outputs(output_dir: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(records, quarantine) of the shards that are done (a quarantine part without its records
    part belongs to a shard that crashed mid-commit and will be rewritten)."""
    return read_dataset(output_dir, "records"), read_dataset(output_dir, "quarantine")
