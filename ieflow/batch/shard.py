"""Running one shard: read its pending documents, extract them on the process's model event loop,
ground each record in its document, stage each outcome, then hand them all to the commit
(`finish.commit_shard`).

Model calls run on one event loop per process (`_ModelCallLoop`), whichever thread runs the shard,
so the LM client's per-model limit bounds the calls of every shard in the process together;
validating and writing happen in the shard's own thread, while the other shards keep the model busy.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, TypeVar

from ieflow import storage
from ieflow.batch.evidence import PendingDocument, ground_outcome, pending_document
from ieflow.batch.finish import commit_shard
from ieflow.batch.outcome import Outcome, OutcomeKind
from ieflow.batch.plan import BatchSettings, Shard, read_documents, shard_done, staging_dir, stats_url
from ieflow.batch.progress import ProgressMeter
from ieflow.batch.write import Stager, load_staged
from ieflow.extraction import aextract
from ieflow.grounding import leaf_values
from ieflow.lm import LMClient
from ieflow.lm.pool import ClientSpec, shared_client
from ieflow.program import ExtractionProgram
from ieflow.secrets import ApiKey, env_api_key
from ieflow.textgrad_revise import arevise_record, needs_revision

T = TypeVar("T")


class ShardIncomplete(RuntimeError):
    """Some documents of a shard could not reach the model; the rest are staged for the retry."""


class _ModelCallLoop:
    """One event loop per process, on a daemon thread, that runs every shard's model calls."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _pid = 0

    @classmethod
    def run(cls, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and wait for its result in the calling thread."""
        with cls._lock:
            if cls._loop is None or cls._pid != os.getpid():  # a forked child has no loop thread
                cls._loop = asyncio.new_event_loop()
                cls._pid = os.getpid()
                threading.Thread(target=cls._loop.run_forever, name="ieflow-batch-loop", daemon=True).start()
            loop = cls._loop
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()


def batch_client(
    program: ExtractionProgram, settings: BatchSettings, api_key: ApiKey | None = None
) -> LMClient:
    """The pool's client for this model and these settings; its per-model limit is `concurrency`.
    `api_key`, resolved by the caller, overrides `settings.api_key_env`."""
    if api_key is not None:
        source: str | None = api_key.source
    else:
        source = f"env:{settings.api_key_env}" if settings.api_key_env else None
    spec = ClientSpec(
        program.model,
        program.model_params,
        api_base=settings.api_base,
        api_key_source=source,
        use_cache=settings.use_lm_cache,
        max_concurrency=settings.concurrency,
        timeout_s=settings.timeout_s,
        max_retries=settings.max_retries,
    )
    return shared_client(spec, lambda: api_key.value if api_key else env_api_key(settings.api_key_env))


def run_shard(
    documents: str,
    shard: Shard,
    program: ExtractionProgram,
    settings: BatchSettings,
    meter: ProgressMeter | None = None,
    api_key: ApiKey | None = None,
) -> dict[str, Any]:
    """Extract, validate and write one shard; returns its stats. A done shard is only read back.

    Raises ShardIncomplete when documents could not reach the model after the client's retries:
    everything else is staged, so calling again redoes only those documents. `meter` is told of
    every document as it finishes; `api_key` is a key the caller resolved (see `batch_client`)."""
    out = settings.output_dir
    if shard_done(out, shard.shard_id):
        return storage.read_json(stats_url(out, shard.shard_id))
    meter = meter or ProgressMeter(None, len(shard.doc_ids), 1)
    started = time.perf_counter()
    staging = staging_dir(out, shard.shard_id)
    wanted = set(shard.doc_ids)
    outcomes = {d: o for d, o in load_staged(staging).items() if d in wanted}
    resumed = len(outcomes)
    meter.documents(resumed=resumed)
    todo = _read_pending(documents, shard, outcomes, meter)
    if todo:
        outcomes.update(_extract_or_raise(shard, program, settings, todo, meter, api_key))
    missing = [d for d in shard.doc_ids if d not in outcomes]
    for doc_id in missing:  # listed in the plan but gone from documents.parquet since
        outcomes[doc_id] = Outcome.document_error(doc_id, "document no longer in the documents table")
    meter.documents(len(missing))
    return commit_shard(shard, [outcomes[d] for d in shard.doc_ids], program, settings, resumed, started)


def _read_pending(
    documents: str, shard: Shard, outcomes: dict[str, Outcome], meter: ProgressMeter
) -> list[PendingDocument]:
    """The shard's documents without an outcome yet; a document without usable text gets its
    document_error outcome in `outcomes` instead."""
    if len(outcomes) >= len(shard.doc_ids):
        return []
    todo: list[PendingDocument] = []
    rows = read_documents(documents, [d for d in shard.doc_ids if d not in outcomes])
    for row in rows.iter_rows(named=True):
        problem = _document_problem(row)
        if problem:
            failed = Outcome.document_error(row["doc_id"], problem)
            source = {"source_uri": row.get("source_uri"), "file_name": row.get("file_name")}
            outcomes[row["doc_id"]] = replace(failed, **source)
            meter.documents(1)
        else:
            todo.append(pending_document(row))
    return todo


def _document_problem(row: dict[str, Any]) -> str | None:
    if row.get("status") not in (None, "ok"):
        return f"ingest {row.get('status')}: {row.get('error') or 'no text'}"
    if not (row.get("text") or "").strip():
        return "the document has no text"
    return None


def _extract_or_raise(
    shard: Shard,
    program: ExtractionProgram,
    settings: BatchSettings,
    todo: list[PendingDocument],
    meter: ProgressMeter,
    api_key: ApiKey | None,
) -> dict[str, Outcome]:
    """The outcomes of `todo`, each staged as it finishes; ShardIncomplete if any was transient."""
    stager = Stager(
        staging_dir(settings.output_dir, shard.shard_id), settings.flush_every, settings.flush_interval_s
    )
    client = batch_client(program, settings, api_key)
    fresh = _ModelCallLoop.run(_extract_all(program, client, todo, settings, stager, meter))
    failed = [o for o in fresh if not o.staged]
    if failed:
        raise ShardIncomplete(
            f"shard {shard.shard_id}: {len(failed)} of {len(todo)} documents could "
            f"not reach the model ({failed[0].error}); the rest are saved"
        )
    return {o.doc_id: o for o in fresh}


async def _extract_all(
    program: ExtractionProgram,
    client: LMClient,
    docs: list[PendingDocument],
    settings: BatchSettings,
    stager: Stager,
    meter: ProgressMeter,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    queue = iter(docs)  # shared by the workers; next() never yields to the loop, so no lock

    async def worker() -> None:
        for doc in queue:
            outcome = await _extract_one(program, client, doc, settings)
            outcomes.append(outcome)
            await stager.add(outcome)
            meter.documents(1 if outcome.staged else 0, unavailable=0 if outcome.staged else 1)

    await asyncio.gather(*(worker() for _ in range(min(settings.concurrency, len(docs)))))
    await stager.flush()
    return outcomes


async def _extract_one(
    program: ExtractionProgram, client: LMClient, doc: PendingDocument, settings: BatchSettings
) -> Outcome:
    """One document's outcome, its record grounded, with its wall time and source."""
    started = time.perf_counter()
    try:
        record, trace = await aextract(program, doc.text, client)
        outcome = Outcome.from_extraction(doc.doc_id, record, trace)
        below = settings.revise_below
        if below is not None and outcome.kind is OutcomeKind.OK and needs_revision(trace, below):
            outcome = await _revised(program, client, doc, outcome)
    except Exception as exc:  # aextract returns model failures; anything else is a bug,
        # which a retry would repeat: quarantine the document instead of failing the shard
        outcome = Outcome.unexpected(doc.doc_id, exc)
    # Grounding is CPU work: off the model-call loop, so other documents' calls keep going.
    outcome = await asyncio.to_thread(ground_outcome, outcome, doc, program, settings.grounding)
    return replace(
        outcome,
        wall_s=round(time.perf_counter() - started, 4),
        source_uri=doc.source_uri,
        file_name=doc.file_name,
    )


async def _revised(
    program: ExtractionProgram, client: LMClient, doc: PendingDocument, outcome: Outcome
) -> Outcome:
    """The outcome after TextGrad's critique-and-revise pass, with what the pass cost. A value the
    revision changed loses its confidence: the model's log-probabilities were of the old answer."""
    revision = await arevise_record(program, doc.text, outcome.value, client, page_offsets=doc.page_offsets)
    confidence = outcome.field_confidence
    if revision.revised:
        before = {path: value for path, _, value in leaf_values(outcome.value, program.schema)}
        after = {path: value for path, _, value in leaf_values(revision.record, program.schema)}
        confidence = {p: (None if before.get(p) != after.get(p) else c) for p, c in confidence.items()}
        confidence.update({p: None for p in after if p not in confidence})
    return replace(
        outcome,
        value=revision.record,
        field_confidence=confidence,
        revised=revision.revised,
        revise_reason=revision.reason,
        revise_calls=revision.calls,
        revise_tokens=revision.tokens,
        revise_cost_usd=revision.cost_usd,
    )
