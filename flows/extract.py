"""The `extract` flow: documents + a program -> validated records, sharded, exactly once.

Reads top to bottom as the run goes: find the documents (ingesting a folder on the way), load the
program, plan stable shards (the manifest), run the pending shards as tasks on the chosen task
runner (a thread pool, or Dask for more processes or machines), then sum up, render Data Docs and
publish a summary table. A progress artifact moves as shards finish. Starting the same flow again
after a crash continues where it stopped: done shards are skipped, staged documents are not redone.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterable
from typing import Any, Literal

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import (
    create_link_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.exceptions import ExternalSignal
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from ieflow import storage
from ieflow.batch import (
    BatchSettings,
    ReviewPolicy,
    Shard,
    load_program,
    pending_shards,
    plan_run,
    program_url,
)
from ieflow.batch.progress import announce_start
from ieflow_tasks.extract import extract_shard, finish_extract, plan_extract, read_program, summary_table
from ieflow_tasks.secrets import preflight


class ExtractParams(BaseModel):
    documents: str = Field(
        description="documents.parquet (from ingest), a folder holding one, or a folder, "
        "glob or fsspec URL of raw documents to ingest first."
    )
    program: str = Field(
        description="program.json (from optimize), or a record JSON Schema for the default program."
    )
    output_dir: str = Field(description="Folder or fsspec URL for the records and quarantine datasets.")
    shard_size: int = Field(500, ge=1, description="Documents per shard (one Prefect task each).")
    concurrency: int = Field(32, ge=1, description="Model calls in flight per process.")
    parallel_shards: int = Field(
        2,
        ge=1,
        description="Shards running at once per process: while one "
        "validates and writes, the others keep the model busy.",
    )
    model: str | None = Field(None, description="Override the program's model (litellm name).")
    api_base: str | None = Field(None, description="Base URL of an OpenAI-compatible server.")
    api_key_env: str | None = Field(
        None,
        description="Name of the environment variable that holds the "
        "API key (the key itself is never a parameter).",
    )
    api_key_secret: str | None = Field(
        None, description="Name of a Prefect Secret block that holds the API key (instead of api_key_env)."
    )
    expectations: str | None = Field(None, description="JSON file of extra great-expectations expectations.")
    use_lm_cache: bool = Field(True, description="Reuse and store answers in ieflow's LM response cache.")
    task_runner: Literal["thread", "dask"] = Field(
        "thread", description="'dask' runs shards on a Dask cluster (local processes by default)."
    )
    dask_address: str | None = Field(None, description="Scheduler of an existing Dask cluster.")
    dask_workers: int = Field(2, ge=1, description="Worker processes of the local Dask cluster.")
    shard_retries: int = Field(2, ge=0, description="Task retries of a shard (they redo only what failed).")
    retry_delay_s: float = Field(10.0, ge=0)
    data_docs: bool = Field(True, description="Render great-expectations Data Docs into output_dir.")
    review_when_not_found: Literal["required", "any", "never"] = Field(
        "required",
        description="Which values found nowhere in their document send a valid record to review/: "
        "those of required fields, any value, or never.",
    )
    review_below_confidence: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="A value whose model confidence is below this sends its record to review/ "
        "(None: confidence is not used).",
    )
    min_grounded_share: float | None = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="great-expectations check per field and shard: at least this share of the "
        "field's values found in their documents (None: no check).",
    )

    revise_below: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Critique and revise (TextGrad) a record whose least confident value is below this; "
        "the revision is kept only when schema-valid and grounded (None: off).",
    )

    def settings(self) -> BatchSettings:
        return BatchSettings(
            output_dir=self.output_dir,
            shard_size=self.shard_size,
            concurrency=self.concurrency,
            api_base=self.api_base,
            api_key_env=self.api_key_env,
            expectations=self.expectations,
            use_lm_cache=self.use_lm_cache,
            review=ReviewPolicy(self.review_when_not_found, self.review_below_confidence),
            min_grounded_share=self.min_grounded_share,
            revise_below=self.revise_below,
        )

    def runner(self) -> Any:
        if self.task_runner == "thread":
            return ThreadPoolTaskRunner(max_workers=self.parallel_shards)
        from prefect_dask import DaskTaskRunner

        if self.dask_address:
            return DaskTaskRunner(address=self.dask_address)
        # Each worker process has its own event loop and model-call limit (`concurrency`), and runs
        # `parallel_shards` shard tasks on threads. No dashboard: it needs bokeh and a free port.
        # Workers must report to this flow's API: without PREFECT_API_URL (a temporary server)
        # each worker would try to start a temporary server of its own, and fail.
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            api_url = str(client.api_url)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": self.dask_workers,
                "processes": True,
                "threads_per_worker": self.parallel_shards,
                "dashboard_address": None,
                "env": {"PREFECT_API_URL": api_url},
            }
        )


@flow(name="extract")
def extract(params: ExtractParams) -> dict[str, Any]:
    """Extract records from every document; returns the run summary (also in manifest.json)."""
    logger = get_run_logger()
    started = time.perf_counter()
    program = load_program(params.program, params.model)
    # A wrong model, key or endpoint fails here in one line, before any document is touched.
    preflight(program.model, params.api_base, params.api_key_env, api_key_secret=params.api_key_secret)
    documents = find_documents(params)
    settings = params.settings()
    plan = plan_extract(documents, program, settings)
    pending = pending_shards(plan)
    announce_start(plan, pending)  # to a CLI progress bar
    logger.info(
        "run %s: %d documents in %d shards, %d to do (program %s, model %s)",
        *(plan.run_id, plan.n_documents, len(plan.shards), len(pending), program.hash, program.model),
    )
    failed = extract_shards.with_options(task_runner=params.runner())(
        documents,
        program_url(plan.output_dir),  # by URL: a program of any size, never a Prefect parameter
        settings,
        [s.shard_id for s in pending],
        params.shard_retries,
        params.retry_delay_s,
        api_key_secret=params.api_key_secret,
    )
    n_processed = sum(len(s.doc_ids) for s in pending if s.shard_id not in failed)
    summary = finish_extract(
        plan,
        program,
        settings,
        time.perf_counter() - started,
        failed,
        n_processed,
        data_docs=params.data_docs,
    )
    publish_summary(summary, plan.run_id)
    if failed:
        raise RuntimeError(
            f"{len(failed)} shards failed ({next(iter(failed.values()))}); start the "
            "same run again to finish them: done work is kept"
        )
    return summary


@flow(name="extract-shards")
def extract_shards(
    documents: str,
    program_url: str,
    settings: BatchSettings,
    shard_ids: list[str],
    retries: int = 2,
    retry_delay_s: float = 10.0,
    api_key_secret: str | None = None,
) -> dict[str, str]:
    """Run the given shards on this flow's task runner; returns {shard_id: error} of failed ones.

    A subflow so that the task runner can be chosen by a parameter of `extract`. It re-plans (the
    plan is deterministic and checked against the manifest) rather than take the plan as a
    parameter: flow parameters are stored by the Prefect API, and a plan lists every doc_id. For the
    same reason the API key travels as the name of its Secret block, loaded inside each shard task."""
    plan = plan_run(documents, read_program(program_url), settings)
    wanted = set(shard_ids)
    shards = [s for s in plan.shards if s.shard_id in wanted]
    total, done = len(plan.shards), len(plan.shards) - len(shards)
    progress = create_progress_artifact(
        progress=100.0 * done / max(total, 1),
        key="extract-progress",
        description=f"Shards done, run {plan.run_id}",
    )
    task = extract_shard.with_options(retries=retries, retry_delay_seconds=retry_delay_s)
    futures = task.map(
        unmapped(documents), shards, unmapped(program_url), unmapped(settings), unmapped(api_key_secret)
    )
    return wait_for_shards(futures, shards, progress, done, total)


def wait_for_shards(
    futures: list[PrefectFuture[Any]], shards: list[Shard], progress: Any, done: int, total: int
) -> dict[str, str]:
    """Log each shard as it finishes and move the progress artifact; returns {shard_id: error}.

    On an interrupt (Ctrl-C, or a stop signal the CLI raises as one) no new shard starts: those
    not started are cancelled, running ones commit, and a rerun resumes."""
    logger = get_run_logger()
    names = {future.task_run_id: shard.shard_id for future, shard in zip(futures, shards, strict=True)}
    failed: dict[str, str] = {}
    try:
        for future in as_completed(list(futures)):
            try:
                stats = future.result()
                logger.info(
                    "shard %s: %d records, %d quarantined, %.1f s",
                    stats["shard_id"],
                    stats["n_records"],
                    stats["n_quarantined"],
                    stats.get("seconds", 0.0),
                )
            except Exception as exc:  # keep going: the other shards' work is worth keeping
                failed[names[future.task_run_id]] = f"{type(exc).__name__}: {exc}"
                logger.error("shard %s failed: %s", names[future.task_run_id], exc)
            done += 1
            update_progress_artifact(progress, progress=100.0 * done / max(total, 1))
    except (KeyboardInterrupt, ExternalSignal):  # Prefect turns SIGTERM into TerminationSignal
        cancelled = cancel_not_started(futures)
        logger.warning(
            "interrupted: %d of %d shards done, %d not started (cancelled); running ones finish and "
            "commit; start the same run again to do the rest",
            done,
            total,
            cancelled,
        )
        raise
    return failed


def publish_summary(summary: dict[str, Any], run_id: str) -> None:
    """The run's summary as a Prefect table artifact, one log line, and a link to its review page."""
    create_table_artifact(
        table=summary_table(summary),
        key="extract-summary",
        description=f"Run {run_id}: {summary['n_records']} records, "
        f"{summary['n_quarantined']} quarantined, {summary['status']}",
    )
    get_run_logger().info(
        "extract %s: %d records, %d quarantined %s, %.1f s",
        *(summary["status"], summary["n_records"], summary["n_quarantined"]),
        *(summary["quarantined_by_reason"], summary["wall_s"]),
    )
    if summary.get("review_page"):
        create_link_artifact(
            link=_link(summary["review_page"]),
            link_text="review page",
            key="extract-review",
            description=f"Run {run_id}: {summary.get('n_review', 0)} records to review, "
            "each value highlighted where it was found in its document",
        )


def _link(url: str) -> str:
    """A link a browser opens: a local path as a file:// URL, any other URL as it is."""
    if "://" in url:
        return url
    from pathlib import Path

    return Path(url).resolve().as_uri()


def cancel_not_started(futures: Iterable[PrefectFuture[Any]]) -> int:
    """Cancel the shard tasks no worker has picked up yet; returns how many.

    Only thread-pool futures: `Future.cancel` refuses a running one, so a running shard still
    commits. A Dask future's cancel would abandon a running shard too; the Dask runner's exit
    closes its cluster instead."""
    return sum(
        1
        for future in futures
        if isinstance(getattr(future, "wrapped_future", None), concurrent.futures.Future)
        and future.wrapped_future.cancel()
    )


def find_documents(params: ExtractParams) -> str:
    """The documents table to read: given, inside the given folder, or made by ingesting it."""
    source = params.documents
    if source.endswith(".parquet"):
        return source
    inside = storage.join(source, "documents.parquet")
    if storage.exists(inside):
        return inside
    from ieflow_flows.ingest import IngestParams, ingest

    out = storage.join(params.output_dir, "ingest")
    ingest(IngestParams(source=source, out=out))
    return storage.join(out, "documents.parquet")


if __name__ == "__main__":
    import sys

    print(extract(ExtractParams.model_validate_json(sys.argv[1])))
