"""Sharded batch extraction, exactly once, in plain Python (the `extract` flow wraps these pieces).

The modules follow a run: `plan` (settings, the shards, the manifest), `shard` (running one shard
on the process's model event loop), `outcome` (what happened to one document), `evidence`
(grounding each record, the evidence and review frames), `review_queue` (which valid records a
person should see), `write` (staging, typed columns, Parquet frames), `finish` (a shard's commit,
the run's summary and Data Docs), `progress` (documents done, for a caller that shows it) and
`run` (all of it without Prefect).

Layout of a run's output folder (local path or fsspec URL):

    manifest.json                        the plan (run id, program hash, shards), then the summary
    records/shard=<id>/part.parquet      validated records: doc_id, source_uri, file_name, program_hash,
                                         one column per field, usage (model_s, wall_s), needs_review
    quarantine/shard=<id>/part.parquet   everything else, with the reason, failed expectations and raw answer
    evidence/shard=<id>/part.parquet     one row per record and leaf value: where it is in the text, how
                                         it matched, the model's confidence
    review/shard=<id>/part.parquet       valid records a person should check, with the reasons
    _shards/<id>.json                    per-shard counts (summed into the summary)
    validation/<id>.json                 great-expectations results (rendered into data_docs/ at the end)
    _staging/<id>/*.jsonl                finished documents of a shard that is still running

Exactly once: a shard's records part is written last, atomically, and its presence is what "done"
means; a restart skips done shards. Inside a running shard, finished documents are staged every
`flush_every` documents, so a restart (or a task retry after the model was unavailable) redoes only
documents that have no staged outcome. Every document ends in exactly one of records or
quarantine: the quarantine part of a shard is always rewritten whole (even when empty) before its
records part, so a crash between the two cannot leave a document in both after the restart.
"""

from ieflow.batch.evidence import EVIDENCE_FRAME_COLUMNS, REVIEW_FRAME_COLUMNS, PendingDocument
from ieflow.batch.finish import (
    commit_shard,
    finish_run,
    read_outputs,
    shared_validator,
    summarize,
)
from ieflow.batch.outcome import QUARANTINE_REASONS, Outcome, OutcomeKind, Quarantined
from ieflow.batch.plan import (
    MANIFEST,
    BatchSettings,
    RunConflictError,
    RunPlan,
    Shard,
    load_program,
    pending_shards,
    plan_run,
    program_url,
    read_dataset,
    read_documents,
    shard_done,
)
from ieflow.batch.progress import BatchProgress, ProgressCallback, ProgressMeter
from ieflow.batch.review_queue import REVIEW_REASONS, ReviewIssue, ReviewItem, ReviewPolicy, review_item
from ieflow.batch.run import run_batch
from ieflow.batch.shard import ShardIncomplete, batch_client, run_shard
from ieflow.batch.write import (
    QUARANTINE_COLUMNS,
    USAGE_COLUMNS,
    coerce_record,
    load_staged,
    polars_dtype,
    quarantine_frame,
    records_frame,
)

__all__ = [
    "EVIDENCE_FRAME_COLUMNS",
    "MANIFEST",
    "QUARANTINE_COLUMNS",
    "QUARANTINE_REASONS",
    "REVIEW_FRAME_COLUMNS",
    "REVIEW_REASONS",
    "USAGE_COLUMNS",
    "BatchProgress",
    "BatchSettings",
    "Outcome",
    "OutcomeKind",
    "PendingDocument",
    "ProgressCallback",
    "ProgressMeter",
    "Quarantined",
    "ReviewIssue",
    "ReviewItem",
    "ReviewPolicy",
    "RunConflictError",
    "RunPlan",
    "Shard",
    "ShardIncomplete",
    "batch_client",
    "coerce_record",
    "commit_shard",
    "finish_run",
    "load_program",
    "load_staged",
    "pending_shards",
    "plan_run",
    "polars_dtype",
    "program_url",
    "quarantine_frame",
    "read_dataset",
    "read_documents",
    "read_outputs",
    "records_frame",
    "review_item",
    "run_batch",
    "run_shard",
    "shard_done",
    "shared_validator",
    "summarize",
]
