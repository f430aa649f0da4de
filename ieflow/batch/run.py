"""A whole batch run without Prefect: plan, run the pending shards on a few threads, finish."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ieflow.batch.finish import finish_run
from ieflow.batch.plan import BatchSettings, RunPlan, Shard, pending_shards, plan_run
from ieflow.batch.progress import ProgressCallback, ProgressMeter, announce_start
from ieflow.batch.shard import run_shard
from ieflow.program import ExtractionProgram
from ieflow.secrets import ApiKey


def run_batch(
    documents: str,
    program: ExtractionProgram,
    settings: BatchSettings,
    parallel_shards: int = 2,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
    on_progress: ProgressCallback | None = None,
    api_key: ApiKey | None = None,
) -> dict[str, Any]:
    """Extract every document of `documents` once; returns the run summary (also in the manifest).

    `on_shard` gets each finished shard's stats; `on_progress` a `BatchProgress` at the start and
    after every finished document and shard (from several threads: keep it quick). `api_key` is a
    key resolved by the caller; without one, `settings.api_key_env` names it."""
    started = time.perf_counter()
    plan = plan_run(documents, program, settings)
    pending = pending_shards(plan)
    meter = _meter(plan, pending, on_progress)
    meter.start()
    announce_start(plan, pending)
    failed: dict[str, str] = {}
    processed = 0
    with ThreadPoolExecutor(max(1, parallel_shards), thread_name_prefix="ieflow-shard") as pool:
        jobs = {
            pool.submit(_run_counted, documents, s, program, settings, meter, api_key): s for s in pending
        }
        try:
            for job, shard in jobs.items():
                try:
                    stats = job.result()
                except Exception as exc:  # one failed shard must not lose the others' work
                    failed[shard.shard_id] = f"{type(exc).__name__}: {exc}"
                    continue
                processed += len(shard.doc_ids)
                if on_shard:
                    on_shard(stats)
        except BaseException:
            # Ctrl-C or a stop signal: no new shard starts; running ones commit, so a rerun resumes.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return finish_run(plan, program, settings, time.perf_counter() - started, failed, n_processed=processed)


def _run_counted(
    documents: str,
    shard: Shard,
    program: ExtractionProgram,
    settings: BatchSettings,
    meter: ProgressMeter,
    api_key: ApiKey | None,
) -> dict[str, Any]:
    # Counted in the shard's thread, so the meter hears of a shard as soon as it ends.
    try:
        stats = run_shard(documents, shard, program, settings, meter, api_key)
    except Exception:
        meter.shard(failed=True)
        raise
    meter.shard()
    return stats


def _meter(plan: RunPlan, pending: list[Shard], on_progress: ProgressCallback | None) -> ProgressMeter:
    """A meter that starts with the shards an earlier start finished."""
    waiting = {s.shard_id for s in pending}
    done = [s for s in plan.shards if s.shard_id not in waiting]
    return ProgressMeter(
        on_progress,
        plan.n_documents,
        len(plan.shards),
        done_documents=sum(len(s.doc_ids) for s in done),
        done_shards=len(done),
    )
