"""What a batch run does: its settings, the program and documents it reads, and its plan of stable
shards, written to (or checked against) the run's manifest so that a restart resumes the same run."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ieflow import storage
from ieflow.batch.review_queue import ReviewPolicy
from ieflow.errors import ConfigError, RunConflictError
from ieflow.grounding import GroundingLimits
from ieflow.program import ExtractionProgram
from ieflow.validation import load_expectations

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PROGRAM = "program.json"  # the run's program, beside its manifest: what the shards read


@dataclass(frozen=True)
class BatchSettings:
    """How to run a batch. `api_key_env` names an environment variable holding the key, so the key
    itself is never a flow parameter, a manifest entry or a log line (a key from a secret store is
    resolved by the caller and passed to `run_shard`/`run_batch` as an `ApiKey`)."""

    output_dir: str
    shard_size: int = 500
    concurrency: int = 32  # model calls in flight in this process (the LM client's per-model limit)
    api_base: str | None = None
    api_key_env: str | None = None
    expectations: str | None = None  # JSON file of extra great-expectations expectations
    use_lm_cache: bool = True
    timeout_s: float = 300.0
    max_retries: int = 4
    flush_every: int = 64
    flush_interval_s: float = 2.0
    grounding: GroundingLimits = field(default_factory=GroundingLimits)  # most cost per document
    review: ReviewPolicy = field(default_factory=ReviewPolicy)  # which valid records go to review/
    min_grounded_share: float | None = 0.8  # per field, checked by great-expectations; None: off
    # TextGrad's critique-and-revise pass (ieflow.textgrad_revise) for a record whose least
    # confident value is below this; None: off
    revise_below: float | None = None


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


DOCUMENT_FIELDS = ("doc_id", "sha256", "source_uri", "file_name", "text", "page_offsets", "status", "error")


def read_documents(url: str, doc_ids: list[str]) -> pl.DataFrame:
    """The `DOCUMENT_FIELDS` documents.parquet has, of some documents (a predicate pushed into the
    Parquet scan, so a shard reads only its rows). Tables from before a column existed lack it."""
    frame, names = _scan_documents(url)
    wanted = [c for c in DOCUMENT_FIELDS if c in names]
    frame = frame.filter(pl.col("doc_id").is_in(doc_ids))
    return frame.select(wanted).unique("doc_id", keep="first", maintain_order=True).collect()


def plan_run(documents: str, program: ExtractionProgram, settings: BatchSettings) -> RunPlan:
    """Stable shards: sorted doc_ids cut every `shard_size`, each named by its index and a hash of
    the program hash and its doc_ids. Writes the manifest, or checks it against an earlier start."""
    if settings.shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    docs, duplicates = _planning_rows(documents)
    ids = docs["doc_id"].cast(pl.String).to_list()
    shas = docs["sha256"].fill_null("").to_list() if "sha256" in docs.columns else [""] * len(ids)
    content = hashlib.sha256("\n".join(f"{i}\t{s}" for i, s in zip(ids, shas, strict=True)).encode())
    # The user's expectations decide what is quarantined, and the review policy what is reviewed,
    # so they are part of the run's identity.
    rules = json.dumps(
        {
            "expectations": [vars(e) for e in load_expectations(settings.expectations)],
            "review": vars(settings.review),
            "min_grounded_share": settings.min_grounded_share,
        },
        sort_keys=True,
    )
    run_id = _digest(program.hash, content.hexdigest(), str(settings.shard_size), rules)[:16]
    shards = []
    for index, start in enumerate(range(0, len(ids), settings.shard_size)):
        chunk = tuple(ids[start : start + settings.shard_size])
        shards.append(Shard(f"{index:05d}-{_digest(program.hash, *chunk)[:10]}", index, chunk))
    plan = RunPlan(
        run_id, program.hash, documents, settings.output_dir, settings.shard_size, len(ids), shards
    )
    _write_or_check_manifest(plan, program, duplicates)
    return plan


def _scan_documents(url: str) -> tuple[pl.LazyFrame, list[str]]:
    """documents.parquet as a lazy scan, and its column names; it must have doc_id."""
    frame = pl.scan_parquet(url) if "://" not in url else storage.read_parquet(url).lazy()
    names = frame.collect_schema().names()
    if "doc_id" not in names:
        raise ValueError(f"{url} has no doc_id column")
    return frame, names


def _planning_rows(url: str) -> tuple[pl.DataFrame, int]:
    """One scan of documents.parquet: its distinct doc_ids (sorted, with sha256 when present) and
    the number of duplicate rows dropped (see `duplicate_rows`)."""
    frame, names = _scan_documents(url)
    content = pl.col("sha256") if "sha256" in names else pl.col("text").hash() if "text" in names else None
    keys = [pl.col("doc_id")] + ([pl.col("sha256")] if "sha256" in names else [])
    if content is not None:
        keys.append(content.alias("_content"))
    rows = frame.select(keys).collect()  # ids and content keys only: texts are never materialized
    duplicates = duplicate_rows(rows, url)
    docs = rows.unique("doc_id", keep="first", maintain_order=True).sort("doc_id")
    return docs.drop("_content", strict=False), duplicates


def duplicate_rows(rows: pl.DataFrame, url: str) -> int:
    """Rows repeating an earlier row's doc_id and content (those are dropped, and counted in the
    manifest), given doc_id and an optional `_content` key. A doc_id with two different contents is
    a `ConfigError`: either one would be silently lost."""
    aggregates = [pl.len().alias("rows")]
    if "_content" in rows.columns:
        aggregates.append(pl.col("_content").n_unique().alias("contents"))
    groups = rows.group_by("doc_id").agg(aggregates).filter(pl.col("rows") > 1)
    if groups.is_empty():
        return 0
    if "contents" in groups.columns:
        clashing = groups.filter(pl.col("contents") > 1).sort("doc_id")
        if not clashing.is_empty():
            first = clashing["doc_id"].to_list()[:3]
            raise ConfigError(
                f"{url}: {clashing.height} doc_ids have rows with different content (e.g. {first}); "
                "a doc_id must name one document: make the ids unique (ingest does) and run again"
            )
    return int(groups["rows"].sum() - groups.height)


def program_url(output_dir: str) -> str:
    return storage.join(output_dir, PROGRAM)


def _write_or_check_manifest(plan: RunPlan, program: ExtractionProgram, duplicate_rows: int) -> None:
    url = storage.join(plan.output_dir, MANIFEST)
    if storage.exists(url):
        old = storage.read_json(url)
        if old.get("run_id") != plan.run_id:
            raise RunConflictError(
                f"{plan.output_dir} holds run {old.get('run_id')} (program {old.get('program_hash')}, "
                f"{old.get('n_documents')} documents, shard size {old.get('shard_size')}), not this one "
                f"(program {program.hash}, {plan.n_documents} documents, shard size {plan.shard_size}; "
                "expectations and the review policy count too); use another output folder"
            )
    # The run's program beside its manifest (the run id covers its hash): shards read it from
    # here, so a program of any size never travels as a Prefect parameter.
    if not storage.exists(program_url(plan.output_dir)):
        storage.write_json(program.to_dict(), program_url(plan.output_dir))
    if duplicate_rows:
        log.warning(
            "%s: %d rows repeat an earlier row's doc_id and content; dropped", plan.documents, duplicate_rows
        )
    if not storage.exists(url):
        manifest = {**plan.manifest(), "model": program.model, "status": "running"}
        storage.write_json({**manifest, "duplicate_rows_dropped": duplicate_rows}, url)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def part_url(output_dir: str, dataset: str, shard_id: str) -> str:
    """The Parquet part of a shard in `records`, `quarantine`, `evidence` or `review`."""
    return storage.join(output_dir, dataset, f"shard={shard_id}", "part.parquet")


def shard_done(output_dir: str, shard_id: str) -> bool:
    """Whether the shard is committed: its records part is written last, so it exists only then."""
    return storage.exists(part_url(output_dir, "records", shard_id))


def read_dataset(
    output_dir: str, dataset: str, columns: list[str] | None = None, doc_ids: list[str] | None = None
) -> pl.DataFrame:
    """One dataset (records, quarantine, evidence or review) of the shards that are done, read one
    part at a time: only `columns` (all when None) of the rows of `doc_ids` (all when None). A done
    shard from before the dataset existed has no part and adds no rows."""
    manifest = storage.read_json(storage.join(output_dir, MANIFEST))
    done = [s["shard_id"] for s in manifest["shards"] if shard_done(output_dir, s["shard_id"])]
    frames = []
    for url in (part_url(output_dir, dataset, s) for s in done):
        if not storage.exists(url):
            continue
        frame = storage.read_parquet(url)
        if doc_ids is not None:
            frame = frame.filter(pl.col("doc_id").is_in(doc_ids))
        frames.append(frame.select(columns) if columns is not None else frame)
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def pending_shards(plan: RunPlan) -> list[Shard]:
    return [s for s in plan.shards if not shard_done(plan.output_dir, s.shard_id)]


def stats_url(output_dir: str, shard_id: str) -> str:
    """The shard's counts, written just before its commit and summed into the run's summary."""
    return storage.join(output_dir, "_shards", f"{shard_id}.json")


def staging_dir(output_dir: str, shard_id: str) -> str:
    """Where a running shard stages its finished documents."""
    return storage.join(output_dir, "_staging", shard_id)
