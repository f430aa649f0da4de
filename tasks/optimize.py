"""Thin Prefect tasks over the optimizer core (which knows nothing of Prefect)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from ieflow.datasets import Example
from ieflow.labelfree.sources import judge_outside_budget
from ieflow.lm import LMClient
from ieflow.optimize.evaluator import Evaluator, ExampleResult
from ieflow.optimize.split_scoring import score_outside_budget
from ieflow.program import ExtractionProgram
from ieflow.scoring import ExampleScorer

# Evaluations are cached by the optimizer run's own ledger (JSON lines keyed by program hash and
# example), which also does the budget accounting and survives a crash; Prefect's result cache
# would pickle the results and count nothing, so it is off here.


@task(
    name="evaluate-candidate",
    retries=2,
    retry_delay_seconds=10,
    cache_policy=NONE,
    persist_result=False,
    task_run_name="evaluate {program_hash} on {n_examples} examples",
)
def evaluate_candidate(
    evaluator: Evaluator,
    program: ExtractionProgram,
    examples: list[Example],
    program_hash: str,
    n_examples: int,
) -> list[ExampleResult]:
    return evaluator.evaluate(program, examples)


def evaluate_as_task(evaluator: Evaluator, program: ExtractionProgram, examples: list[Example]) -> list:
    """The optimizer's evaluation hook: one task run per evaluation that needs model calls."""
    cached = evaluator.cached(program, examples)
    if cached is not None:
        return cached
    pending = sum(1 for ex in examples if evaluator.ledger.get(program.hash, ex.doc_id) is None)
    evaluator.tracker.check(pending)  # out of budget: stop the optimizer, don't retry the task
    return evaluate_candidate(evaluator, program, examples, program.hash, len(examples))


@task(
    name="score-program",
    retries=1,
    cache_policy=NONE,
    persist_result=False,
    task_run_name="score {label} on {n_examples} examples",
)
def score_program(
    program: ExtractionProgram,
    examples: list[Example],
    ledger_path: str,
    label: str,
    n_examples: int,
    client: LMClient | None = None,
    judge: ExampleScorer | None = None,
) -> dict[str, Any]:
    if judge is not None:  # no gold anywhere: the judge's view (the report says so)
        return judge_outside_budget(program, examples, judge, ledger_path, client)
    return score_outside_budget(program, examples, ledger_path, client)
