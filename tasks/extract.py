"""Prefect tasks of the extract flow, thin wrappers over `ieflow.batch`.

A task is a whole shard (hundreds of documents, their model calls run concurrently inside it), so
Prefect's few milliseconds per task vanish next to the shard's seconds of model time. No task is
cached by Prefect: the shard's own output files are its cache (a done shard is read back, not
redone), which also holds across flow runs, task runners and machines. The shard tasks get the
program as the URL of the run's program.json (written beside the manifest at planning), so a
program of any size pickles cheaply to Dask workers and is never a Prefect parameter.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ieflow import batch, storage
from ieflow.program import ExtractionProgram
from ieflow_tasks.secrets import secret_api_key


@task(name="plan-extract", cache_policy=NO_CACHE)
def plan_extract(documents: str, program: ExtractionProgram, settings: batch.BatchSettings) -> batch.RunPlan:
    """Cut the documents into stable shards and write (or check) the run manifest and program."""
    return batch.plan_run(documents, program, settings)


@task(
    name="extract-shard",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=10,
    task_run_name="shard-{shard.shard_id}",
)
def extract_shard(
    documents: str,
    shard: batch.Shard,
    program_url: str,
    settings: batch.BatchSettings,
    api_key_secret: str | None = None,
) -> dict[str, Any]:
    """Extract, validate and write one shard. A retry (after ShardIncomplete: the model stayed
    unavailable past the client's retries) redoes only the documents that have no saved outcome.
    The key of the Secret block `api_key_secret` is loaded here, in the process that uses it."""
    api_key = secret_api_key(api_key_secret)
    return batch.run_shard(documents, shard, read_program(program_url), settings, api_key=api_key)


@task(name="finish-extract", cache_policy=NO_CACHE)
def finish_extract(
    plan: batch.RunPlan,
    program: ExtractionProgram,
    settings: batch.BatchSettings,
    wall_s: float,
    failed: dict[str, str],
    n_processed: int,
    data_docs: bool = True,
) -> dict[str, Any]:
    """Sum the shard counts, render Data Docs and store the summary in the manifest."""
    return batch.finish_run(
        plan, program, settings, wall_s, failed, data_docs=data_docs, n_processed=n_processed
    )


def read_program(url: str) -> ExtractionProgram:
    """The run's program from its program.json (once per shard: nothing next to its model time)."""
    return ExtractionProgram.from_dict(storage.read_json(url))


def _least_grounded(summary: dict[str, Any], n: int = 10) -> list[tuple[str, float]]:
    """The `n` fields with the lowest grounded share (a wide schema has thousands of fields)."""
    shares = summary.get("grounded_share") or {}
    return sorted(shares.items(), key=lambda kv: (kv[1], kv[0]))[:n]


def summary_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary as metric/value rows (what the table artifact shows)."""
    wall = summary.get("wall_s") or 0.0
    rows: list[tuple[str, Any]] = [
        ("documents", summary["n_documents"]),
        ("records", summary["n_records"]),
        ("quarantined", summary["n_quarantined"]),
        *((f"quarantined: {reason}", n) for reason, n in summary["quarantined_by_reason"].items()),
        ("in review (valid, kept in records)", summary.get("n_review", 0)),
        *((f"review: {reason}", n) for reason, n in (summary.get("review_by_reason") or {}).items()),
        *((f"grounded share: {name}", share) for name, share in _least_grounded(summary)),
        ("prompt tokens", summary["prompt_tokens"]),
        ("completion tokens", summary["completion_tokens"]),
        ("model calls", summary["calls"]),
        ("cost (USD)", round(summary["cost_usd"], 4)),
        ("wall time (s)", wall),
        ("documents done by this run", summary["n_processed"]),
        ("documents per second", round(summary["n_processed"] / wall, 1) if wall else None),
        ("shards done", f"{summary['shards_done']} of {summary['n_shards']}"),
        ("shards failed", len(summary["shards_failed"])),
    ]
    rows += [(f"failed: {name}", n) for name, n in list(summary["failed_expectations"].items())[:10]]
    return [{"metric": metric, "value": value} for metric, value in rows]
