"""Evaluating a program on examples: bounded concurrency, a per-run ledger, budget accounting.

Every (program hash, example) pair evaluated in a run is written to the run's ledger, an
append-only JSONL file. A re-request is served from it, so:
- a metric call is a *distinct* pair evaluated by this run, whether the run was interrupted or not,
  which makes a resumed run spend exactly what an uninterrupted one would;
- a killed run loses at most the line being written (a torn last line is skipped on load).
Model answers are cached separately by the LM client, so re-evaluations across runs are cheap too.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ieflow.datasets import Example
from ieflow.extraction import aextract
from ieflow.lm import LMClient, LMUnavailableError
from ieflow.lm.pool import ClientSpec, shared_client
from ieflow.lm.pricing import is_local
from ieflow.program import ExtractionProgram
from ieflow.scoring import Scorer
from ieflow.scoring.invented import invented_fields, with_nowhere
from ieflow.scoring.silver import ExampleScorer, LabelScorer


class BudgetExhausted(Exception):
    """Raised before an evaluation that would take the run past its budget."""


@dataclass(frozen=True)
class Budget:
    """When an optimization stops: whichever limit is reached first (None = no limit)."""

    max_metric_calls: int | None = 300
    max_cost_usd: float | None = None
    max_wall_s: float | None = None
    patience: int | None = None  # steps without a new best on validation

    @property
    def bounded(self) -> bool:
        """Whether a limit ends a run that spends no money (local models cost $0)."""
        return self.max_metric_calls is not None or self.max_wall_s is not None or self.patience is not None


@dataclass
class ExampleResult:
    """One program on one example: the score, per-field scores, feedback and the serving cost."""

    doc_id: str
    score: float
    fields: dict[str, float]
    feedback: list[str]
    record: dict | None
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    raw: str = ""
    field_details: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BudgetTracker:
    """Counts metric calls, dollars and wall time against a Budget; thread-safe."""

    def __init__(self, budget: Budget, slack_calls: int = 0) -> None:
        self.budget = budget
        self.slack_calls = slack_calls  # the run may overshoot by at most this (one minibatch)
        self.metric_calls = 0
        self.student_cost_usd = 0.0
        self.optimizer_cost_usd = 0.0
        self.elapsed_before_s = 0.0  # wall time spent by earlier, interrupted sessions of the run
        self._started = time.monotonic()
        self._lock = threading.Lock()

    @property
    def wall_s(self) -> float:
        return self.elapsed_before_s + time.monotonic() - self._started

    @property
    def cost_usd(self) -> float:
        return self.student_cost_usd + self.optimizer_cost_usd

    def remaining_calls(self) -> int | None:
        if self.budget.max_metric_calls is None:
            return None
        return self.budget.max_metric_calls - self.metric_calls

    def check(self, new_calls: int) -> None:
        """Raise BudgetExhausted if `new_calls` more evaluations would break a limit."""
        budget = self.budget
        if budget.max_metric_calls is not None and self.metric_calls + new_calls > (
            budget.max_metric_calls + self.slack_calls
        ):
            raise BudgetExhausted(f"metric-call budget {budget.max_metric_calls} reached")
        if budget.max_cost_usd is not None and self.cost_usd >= budget.max_cost_usd:
            raise BudgetExhausted(f"cost budget ${budget.max_cost_usd} reached")
        if budget.max_wall_s is not None and self.wall_s >= budget.max_wall_s:
            raise BudgetExhausted(f"wall-time budget {budget.max_wall_s} s reached")

    def exhausted(self, next_calls: int = 1) -> bool:
        try:
            self.check(next_calls)
        except BudgetExhausted:
            return True
        return False

    def to_dict(self) -> dict[str, float]:
        return {
            "metric_calls": self.metric_calls,
            "student_cost_usd": self.student_cost_usd,
            "optimizer_cost_usd": self.optimizer_cost_usd,
            "wall_s": self.wall_s,
        }


class Ledger:
    """The run's append-only record of evaluations: JSON lines, one per (program hash, doc_id)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._entries: dict[tuple[str, str], ExampleResult] = {}
        self._lock = threading.Lock()
        if self.path and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    data = json.loads(line)
                except ValueError:
                    continue  # a torn last line from a killed run
                self._entries[(data["program"], data["result"]["doc_id"])] = ExampleResult(**data["result"])

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, program_hash: str, doc_id: str) -> ExampleResult | None:
        return self._entries.get((program_hash, doc_id))

    def add(self, program_hash: str, result: ExampleResult) -> None:
        with self._lock:
            self._entries[(program_hash, result.doc_id)] = result
            if self.path:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                line = json.dumps({"program": program_hash, "result": result.to_dict()}, ensure_ascii=False)
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())


class Evaluator:
    """Runs programs on examples and scores them; the only place metric calls are spent."""

    def __init__(
        self,
        scorer: Scorer | ExampleScorer,
        tracker: BudgetTracker,
        *,
        ledger: Ledger | None = None,
        concurrency: int = 2,
        client: LMClient | None = None,
        error_retries: int = 1,
    ) -> None:
        # A plain Scorer scores against the labels (weighted by agreement when they are silver).
        self.scorer: ExampleScorer = LabelScorer(scorer) if isinstance(scorer, Scorer) else scorer
        self.tracker = tracker
        self.ledger = ledger if ledger is not None else Ledger(None)
        self.concurrency = concurrency
        self.client = client
        self.error_retries = error_retries
        self.tracker.metric_calls = len(self.ledger)

    def evaluate(self, program: ExtractionProgram, examples: list[Example]) -> list[ExampleResult]:
        """Results in the order of `examples`. Raises BudgetExhausted before spending past the budget."""
        pending = [ex for ex in examples if self.ledger.get(program.hash, ex.doc_id) is None]
        if pending:
            self.tracker.check(len(pending))
            asyncio.run(self._run(program, pending))
        return [self.ledger.get(program.hash, ex.doc_id) for ex in examples]  # type: ignore[misc]

    def cached(self, program: ExtractionProgram, examples: list[Example]) -> list[ExampleResult] | None:
        """Results already in the ledger, or None if any is missing (no budget spent)."""
        found = [self.ledger.get(program.hash, ex.doc_id) for ex in examples]
        return None if any(r is None for r in found) else found  # type: ignore[return-value]

    def _uncached(self, program: ExtractionProgram) -> LMClient:
        client = self.client or shared_client(ClientSpec(program.model, program.model_params))
        return client.uncached()

    async def _run(self, program: ExtractionProgram, examples: list[Example]) -> None:
        # A local model runs one call at a time anyway; queueing more would only count waiting
        # time as each example's latency.
        limit = 1 if is_local(program.model) else self.concurrency
        semaphore = asyncio.Semaphore(limit)

        async def one(example: Example) -> None:
            async with semaphore:
                record, trace = await aextract(program, example.text, self.client)
                for _ in range(self.error_retries):
                    if trace.error is None:
                        break
                    # A broken answer may be a passing fault (a garbled reply, an outage): ask once
                    # more without the cache, so a fault does not become a real 0 in the ledger.
                    # A model that really cannot answer fails again and is scored 0.
                    record, trace = await aextract(program, example.text, self._uncached(program))
            if trace.error_kind == "unavailable":
                # Not the program's fault: no score, no ledger entry, no metric call. The step
                # fails; a resumed run (or the task's retry) evaluates this example again.
                raise LMUnavailableError(program.model, f"evaluation of {example.doc_id}: {trace.error}")
            result = self.score(example, record, trace, program)
            with self.tracker._lock:
                self.tracker.metric_calls += 1
                self.tracker.student_cost_usd += trace.cost_usd
            self.ledger.add(program.hash, result)

        await asyncio.gather(*(one(ex) for ex in examples))

    def score(
        self, example: Example, record: dict | None, trace: Any, program: ExtractionProgram | None = None
    ) -> ExampleResult:
        """The scorer's verdict on `record`; with the `program`, a wrong value printed nowhere in the
        document says so in its feedback (what an optimizer should fix differs)."""
        scored = self.scorer.score_example(example, record)
        invented = (
            invented_fields(scored, example.text, program.schema, program.formats) if program else set()
        )

        def said(path: str, sentence: str) -> str:
            return with_nowhere(sentence) if path in invented else sentence

        return ExampleResult(
            doc_id=example.doc_id,
            score=scored.score,
            fields={path: fs.score for path, fs in scored.fields.items()},
            feedback=[said(p, fs.feedback) for p in scored.top_level if (fs := scored.fields[p]).feedback],
            record=record,
            error=trace.error,
            prompt_tokens=trace.prompt_tokens,
            completion_tokens=trace.completion_tokens,
            cost_usd=trace.cost_usd,
            latency_s=trace.latency_s,
            raw=trace.raw[:2000],
            field_details={
                path: {
                    "predicted": fs.predicted,
                    "expected": fs.expected,
                    "feedback": fs.feedback,
                }
                | ({"invented": True} if path in invented else {})
                for path, fs in scored.fields.items()
                if fs.feedback
            },
        )


def mean(values: list[float]) -> float:
    """The arithmetic mean; 0.0 for no values (a step that scored nothing)."""
    return sum(values) / len(values) if values else 0.0


def mean_score(results: list[ExampleResult]) -> float:
    return mean([r.score for r in results])


def mean_tokens(results: list[ExampleResult]) -> float:
    return sum(r.tokens for r in results) / len(results) if results else 0.0
