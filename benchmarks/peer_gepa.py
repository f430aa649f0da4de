"""The gepa library (gepa-ai/gepa, `gepa.optimize`) run on an ieflow extraction program.

The adapter implements gepa's `GEPAAdapter` protocol over ieflow: a candidate is the program's text
components (the instruction and each field's description, the variables gepa evolves); `evaluate`
runs ieflow's extraction of the seed program with those texts and scores each document with ieflow's
scorer; `make_reflective_dataset` turns the scorer's per-field feedback into gepa's reflective records
(the instruction sees every failure, a field's description sees that field's). The student is the
seed program's model through ieflow's client (the same LM cache), evaluations are kept in an ieflow
ledger (a resumed run re-reads them), and gepa's own state lives in `run_dir` (gepa resumes from it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gepa import EvaluationBatch, GEPAResult, optimize

from ieflow.datasets import Example
from ieflow.lm import LMClient
from ieflow.optimize.evaluator import Budget, BudgetTracker, Evaluator, ExampleResult, Ledger
from ieflow.program import FIELD_PREFIX, ExtractionProgram
from ieflow.scoring import Scorer

DOCUMENT_CHARS = 1500  # of each document shown to the reflection model (its context is small)
ALL_CORRECT = "Every field is correct."


@dataclass(frozen=True)
class Rollout:
    """One document read by one candidate: gepa's trajectory, for the reflective dataset."""

    example: Example
    result: ExampleResult


class ReflectionModel:
    """gepa's `LanguageModel` (prompt in, text out) over an ieflow client. An empty or failed reply
    raises: gepa records the failed proposal and goes on to its next iteration."""

    def __init__(self, client: LMClient) -> None:
        self.client = client

    def __call__(self, prompt: str | list[dict[str, Any]]) -> str:
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        text = self.client.complete(messages).text
        if not text.strip():
            raise ValueError(f"{self.client.model} gave an empty proposal")
        return text


class IeflowAdapter:
    """gepa's `GEPAAdapter` over ieflow's extraction and scorer (see the module doc)."""

    propose_new_texts = None  # gepa's own reflective proposer writes the new texts

    def __init__(self, seed: ExtractionProgram, evaluator: Evaluator) -> None:
        self.seed = seed
        self.evaluator = evaluator

    def program(self, candidate: dict[str, str]) -> ExtractionProgram:
        unknown = set(candidate) - set(self.seed.components)
        if unknown:
            raise ValueError(f"gepa proposed components the program does not have: {sorted(unknown)}")
        return self.seed.replace(components={**self.seed.components, **candidate})

    def evaluate(
        self, batch: list[Example], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch:
        results = self.evaluator.evaluate(self.program(candidate), batch)
        return EvaluationBatch(
            outputs=[r.record for r in results],
            scores=[r.score for r in results],
            trajectories=[Rollout(ex, r) for ex, r in zip(batch, results, strict=True)]
            if capture_traces
            else None,
        )

    def make_reflective_dataset(
        self, candidate: dict[str, str], eval_batch: EvaluationBatch, components_to_update: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        rollouts: list[Rollout] = eval_batch.trajectories or []
        return {name: [reflective_record(name, r) for r in rollouts] for name in components_to_update}


def reflective_record(component: str, rollout: Rollout) -> dict[str, Any]:
    """gepa's recommended record: the input, what the program answered, and the scorer's feedback
    (for a field's description, that field's feedback only)."""
    result = rollout.result
    if component.startswith(FIELD_PREFIX):
        path = component[len(FIELD_PREFIX) :]
        detail = result.field_details.get(path)
        feedback = detail["feedback"] if detail else f"{path} is correct."
    else:
        feedback = " ".join(result.feedback) or ALL_CORRECT
    if result.error:
        feedback = f"The answer could not be used: {result.error}. {feedback}"
    answer = json.dumps(result.record, ensure_ascii=False) if result.record is not None else result.raw
    return {
        "Inputs": {"document": rollout.example.text[:DOCUMENT_CHARS]},
        "Generated Outputs": answer,
        "Feedback": feedback,
    }


@dataclass
class GepaLibRun:
    """What a finished `gepa.optimize` run gives the benchmark."""

    best_program: ExtractionProgram
    val_seed: float
    val_best: float
    metric_calls: int
    candidates: int


def run_gepa_library(
    seed: ExtractionProgram,
    trainset: list[Example],
    valset: list[Example],
    max_metric_calls: int,
    run_dir: Path,
    reflection: LMClient,
    student: LMClient | None = None,
) -> GepaLibRun:
    """`gepa.optimize` on `seed` within `max_metric_calls` (gepa counts them); resumable from
    `run_dir` (gepa's state and ieflow's evaluation ledger)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    evaluator = Evaluator(
        Scorer(seed.schema),
        BudgetTracker(Budget(max_metric_calls=None)),  # gepa owns the budget
        ledger=Ledger(run_dir / "evaluations.jsonl"),
        client=student,
    )
    adapter = IeflowAdapter(seed, evaluator)
    result: GEPAResult = optimize(
        seed_candidate=dict(seed.components),
        trainset=trainset,
        valset=valset,
        adapter=adapter,
        reflection_lm=ReflectionModel(reflection),
        max_metric_calls=max_metric_calls,
        run_dir=str(run_dir / "gepa"),
        seed=0,
        display_progress_bar=False,
    )
    return GepaLibRun(
        best_program=adapter.program(result.best_candidate),
        val_seed=result.val_aggregate_scores[0],
        val_best=result.val_aggregate_scores[result.best_idx],
        metric_calls=result.total_metric_calls or evaluator.tracker.metric_calls,
        candidates=len(result.candidates),
    )


__all__ = ["IeflowAdapter", "ReflectionModel", "reflective_record", "run_gepa_library"]
