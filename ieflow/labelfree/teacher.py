"""Teacher drafting (silver labels): self-consistency samples of a teacher model, checked.

    drafts = draft_labels(examples, schema, TeacherConfig(samples=3))

Each document is extracted `samples` times by the teacher at `temperature` (each sample at its own
seed, so the samples differ and each is cached), through ieflow's extraction with the default
program of the schema: long documents are read exactly as the student reads them. Per top-level
field, the draft takes the value most samples agree on, "agree" meaning what the gold scorer counts
as right (`ieflow.scoring.Scorer`: the same normalization of text, numbers and dates), and its
agreement is the share of all samples that agreed with it (a failed sample agrees with nothing).

A draft's `problems` name each failed check by field: not schema-valid, a value not found in the
document (`ieflow.grounding`), agreement below `min_agreement`; "" for the whole record when every
sample failed. A draft without problems can be a label as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ieflow import config
from ieflow.datasets import Example
from ieflow.extraction import aextract, default_client
from ieflow.grounding import DocumentIndex, ground_record
from ieflow.labelfree._sync import run_sync
from ieflow.labelfree.drafts import DraftRecord
from ieflow.lm import LMClient
from ieflow.program import ExtractionProgram
from ieflow.schema import null_record, validate_record
from ieflow.scoring import Scorer

DISAGREE = "teacher samples disagree"
NOT_FOUND = "value not found in the document"


@dataclass(frozen=True)
class TeacherConfig:
    model: str = config.DEFAULT_REFLECTION_MODEL
    samples: int = 3  # self-consistency samples
    temperature: float = 0.7
    min_agreement: float = 0.67  # per field; below -> problem "teacher samples disagree"

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be in [0, 1], got {self.min_agreement}")


@dataclass(frozen=True)
class FieldVote:
    """The value of one field most samples agree on, and the share of samples that agree."""

    value: Any
    agreement: float


def draft_labels(
    examples: Sequence[Example], schema: dict, config: TeacherConfig, lm: LMClient | None = None
) -> list[DraftRecord]:
    """One checked draft per example, in order (`gold` is not read: it may be empty)."""
    program = ExtractionProgram.from_schema(schema, model=config.model)
    client = lm or default_client(program)
    scorer = Scorer(program.schema)
    return run_sync(_draft_all(list(examples), program, client, scorer, config))


async def _draft_all(
    examples: list[Example], program: ExtractionProgram, client: LMClient, scorer: Scorer, cfg: TeacherConfig
) -> list[DraftRecord]:
    return list(await asyncio.gather(*(_draft(ex, program, client, scorer, cfg) for ex in examples)))


def sample_programs(program: ExtractionProgram, cfg: TeacherConfig) -> list[ExtractionProgram]:
    """The teacher's program once per sample: the sample's seed makes its request (and cache key)
    its own; at temperature 0 the samples would all be one answer."""
    params = {**program.model_params, "temperature": cfg.temperature}
    return [program.replace(model_params={**params, "seed": seed}) for seed in range(cfg.samples)]


async def _draft(
    example: Example, program: ExtractionProgram, client: LMClient, scorer: Scorer, cfg: TeacherConfig
) -> DraftRecord:
    samples = sample_programs(program, cfg)
    results = await asyncio.gather(*(aextract(p, example.text, client) for p in samples))
    records = [record for record, _ in results if record is not None]
    if not records:
        errors = [trace.error for _, trace in results if trace.error]
        reason = f"every teacher sample failed: {errors[0] if errors else 'no record'}"
        return DraftRecord(example.doc_id, null_record(program.schema), {}, {"": reason}, example.source)
    votes = field_votes(records, scorer, cfg.samples)
    record = {name: vote.value for name, vote in votes.items()}
    agreement = {name: round(vote.agreement, 4) for name, vote in votes.items()}
    problems = check_draft(record, agreement, example.text, program, cfg.min_agreement)
    return DraftRecord(example.doc_id, record, agreement, problems, example.source)


def field_votes(records: list[dict[str, Any]], scorer: Scorer, samples: int) -> dict[str, FieldVote]:
    """Per top-level field, the value the most samples match (ties: the earliest sample's) and the
    share of `samples` matching it; a value matches another when the scorer, taking one as gold,
    counts the other right."""
    n = len(records)
    pairs = {(i, j): scorer.score(records[j], records[i]) for i in range(n) for j in range(n)}
    votes: dict[str, FieldVote] = {}
    for name in scorer.top_level:
        counts = [sum(pairs[i, j].fields[name].correct for j in range(n)) for i in range(n)]
        best = max(range(n), key=lambda i: (counts[i], -i))
        votes[name] = FieldVote(records[best].get(name), counts[best] / samples)
    return votes


def check_draft(
    record: dict[str, Any],
    agreement: dict[str, float],
    text: str,
    program: ExtractionProgram,
    min_agreement: float,
) -> dict[str, str]:
    """Why a person must look at each field of a draft ({} when none): schema, grounding, agreement."""
    problems: dict[str, str] = {}
    for problem in validate_record(program.schema, record):
        where, _, message = problem.partition(": ")
        top = where.split(".")[0].split("[")[0]
        field_name = "" if top == "<record>" else top
        problems.setdefault(field_name, f"not schema-valid: {message}")
    for evidence in ground_record(record, DocumentIndex(text), program.schema, program.formats):
        top = evidence.path.split(".")[0].split("[")[0]
        if evidence.method == "not_found":
            problems.setdefault(top, f"{NOT_FOUND}: {evidence.value[:80]!r}")
        elif evidence.method == "skipped":
            problems.setdefault(top, "not checked: the document's grounding budget ran out")
    for name, share in agreement.items():
        # compared at two decimals: 2 of 3 samples (0.667) meets the default 0.67
        if round(share, 2) < min_agreement:
            problems.setdefault(name, f"{DISAGREE} (agreement {share:.2f} < {min_agreement:.2f})")
    return problems
