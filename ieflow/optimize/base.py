"""The one optimizer interface, and the run machinery every optimizer shares.

`Optimizer.compile(program, trainset, valset, budget) -> OptimizationResult`, like DSPy's
teleprompters. An `OptimizerRun` holds what a run needs: the evaluator and its ledger, the budget,
the candidate pool with per-example validation scores, the history, the lesson log, a seeded RNG,
and a JSON checkpoint written after every step so a killed run resumes where it stopped.
"""

from __future__ import annotations

import logging
import random
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ieflow import config, storage
from ieflow.datasets import Example
from ieflow.lm import LMClient
from ieflow.optimize.evaluator import (
    Budget,
    BudgetExhausted,
    BudgetTracker,
    Evaluator,
    ExampleResult,
    Ledger,
    mean_tokens,
)
from ieflow.optimize.pareto import quality_cost_front
from ieflow.program import ExtractionProgram
from ieflow.scoring import Scorer

log = logging.getLogger("ieflow.optimize")

# How an orchestrator (the Prefect flow) runs each evaluation, e.g. as a task with retries:
# hook(evaluator, program, examples) must return `evaluator.evaluate(program, examples)`.
EvaluateHook = Callable[[Evaluator, ExtractionProgram, list[Example]], list[ExampleResult]]

CHECKPOINT_VERSION = 1


@dataclass
class Candidate:
    """A program in the pool, with how it came to be and how it scored on validation."""

    index: int
    program: ExtractionProgram
    parents: list[int]
    changed: str  # the component changed ("seed", "field:date", "instruction", "demos", "merge", ...)
    step: int
    val_scores: dict[str, float]
    tokens_per_doc: float
    note: str = ""

    @property
    def val_score(self) -> float:
        return sum(self.val_scores.values()) / len(self.val_scores) if self.val_scores else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "program": self.program.to_dict(),
            "parents": self.parents,
            "changed": self.changed,
            "step": self.step,
            "val_scores": self.val_scores,
            "val_score": self.val_score,
            "tokens_per_doc": self.tokens_per_doc,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(
            index=data["index"],
            program=ExtractionProgram.from_dict(data["program"]),
            parents=list(data["parents"]),
            changed=data["changed"],
            step=data["step"],
            val_scores=dict(data["val_scores"]),
            tokens_per_doc=data["tokens_per_doc"],
            note=data.get("note", ""),
        )


@dataclass
class OptimizationResult:
    optimizer: str
    best_program: ExtractionProgram
    best_index: int
    candidates: list[Candidate]
    pareto_front: list[int]  # candidate indices on the quality/cost front, cheapest first
    history: list[dict[str, Any]]
    lessons: list[str]
    usage: dict[str, float]
    stop_reason: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def seed_score(self) -> float:
        return self.candidates[0].val_score if self.candidates else 0.0

    @property
    def best_score(self) -> float:
        return self.candidates[self.best_index].val_score

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "best_index": self.best_index,
            "seed_val_score": self.seed_score,
            "best_val_score": self.best_score,
            "pareto_front": self.pareto_front,
            "usage": self.usage,
            "stop_reason": self.stop_reason,
            "settings": self.settings,
            "lessons": self.lessons,
            "candidates": [c.to_dict() for c in self.candidates],
            "history": self.history,
        }

    def save(self, run_dir: str | Path) -> None:
        storage.write_json(self.to_dict(), storage.join(str(run_dir), "result.json"))
        self.best_program.save(storage.join(str(run_dir), "program.json"))


class OptimizerRun:
    """The state of one optimization run; optimizers read and extend it, then call `checkpoint()`."""

    def __init__(
        self,
        optimizer: str,
        program: ExtractionProgram,
        trainset: list[Example],
        valset: list[Example],
        budget: Budget,
        run_dir: str | Path,
        *,
        seed: int = 0,
        slack_calls: int = 0,
        concurrency: int = 2,
        student_client: LMClient | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        evaluate_hook: EvaluateHook | None = None,
    ) -> None:
        if not trainset:
            raise ValueError("the training set is empty: optimizers need labelled training examples")
        if not valset:
            raise ValueError("the validation set is empty: optimizers select candidates on it")
        self.optimizer = optimizer
        self.seed_program = program
        self.trainset = trainset
        self.valset = valset
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tracker = BudgetTracker(budget, slack_calls=slack_calls)
        self.evaluator = Evaluator(
            Scorer(program.schema),
            self.tracker,
            ledger=Ledger(self.run_dir / "evaluations.jsonl"),
            concurrency=concurrency,
            client=student_client,
        )
        self.candidates: list[Candidate] = []
        self.history: list[dict[str, Any]] = []
        self.lessons: list[str] = list(program.lessons)
        self.rng = random.Random(seed)
        self.seed = seed
        self.step = 0
        self.state: dict[str, Any] = {}  # optimizer-specific, JSON-serializable
        self.stop_reason = ""
        self.best_step = 0
        self.on_event = on_event
        self.evaluate_hook = evaluate_hook
        self.resumed = self._load_checkpoint()

    # -- evaluation -------------------------------------------------------------------------------

    def evaluate(self, program: ExtractionProgram, examples: list[Example]) -> list[ExampleResult]:
        if self.evaluate_hook is not None:
            return self.evaluate_hook(self.evaluator, program, examples)
        return self.evaluator.evaluate(program, examples)

    def add_candidate(
        self, program: ExtractionProgram, parents: list[int], changed: str, note: str = ""
    ) -> Candidate:
        """Score `program` on the whole validation set and add it to the pool."""
        for existing in self.candidates:
            if existing.program.hash == program.hash:
                return existing
        results = self.evaluate(program, self.valset)
        candidate = Candidate(
            index=len(self.candidates),
            program=program,
            parents=parents,
            changed=changed,
            step=self.step,
            val_scores={r.doc_id: r.score for r in results},
            tokens_per_doc=mean_tokens(results),
            note=note,
        )
        previous_best = self.best().val_score if self.candidates else -1.0
        self.candidates.append(candidate)
        if candidate.val_score > previous_best + 1e-9:
            self.best_step = self.step
        self.event(
            "candidate",
            index=candidate.index,
            parents=parents,
            changed=changed,
            val_score=round(candidate.val_score, 4),
            tokens_per_doc=round(candidate.tokens_per_doc, 1),
            note=note,
        )
        return candidate

    def best(self) -> Candidate:
        """Highest validation score; ties go to the cheaper, then the earlier candidate."""
        return max(self.candidates, key=lambda c: (round(c.val_score, 9), -c.tokens_per_doc, -c.index))

    def val_results(self, candidate: Candidate) -> list[ExampleResult]:
        return self.evaluate(candidate.program, self.valset)

    def stopping(self, max_steps: int | None = None) -> bool:
        """The shared stopping rules (step limit, patience, perfect score); sets `stop_reason`."""
        if max_steps is not None and self.step >= max_steps:
            self.stop_reason = f"reached {max_steps} steps"
        elif self.stalled():
            self.stop_reason = f"no improvement in {self.tracker.budget.patience} steps"
        elif self.best().val_score >= 1.0 - 1e-9:
            self.stop_reason = "perfect validation score"
        return bool(self.stop_reason)

    def stalled(self) -> bool:
        patience = self.tracker.budget.patience
        return patience is not None and self.step - self.best_step >= patience

    # -- events, lessons, checkpoints -------------------------------------------------------------

    def event(self, kind: str, **data: Any) -> None:
        entry = {"step": self.step, "event": kind, "metric_calls": self.tracker.metric_calls, **data}
        self.history.append(entry)
        log.info("%s step %d %s %s", self.optimizer, self.step, kind, data)
        if self.on_event:
            self.on_event(entry)

    def learn(self, lesson: str) -> None:
        if lesson not in self.lessons:
            self.lessons.append(lesson)

    def checkpoint(self) -> None:
        state = {
            "version": CHECKPOINT_VERSION,
            "optimizer": self.optimizer,
            "seed_program_hash": self.seed_program.hash,
            "step": self.step,
            "best_step": self.best_step,
            "rng": _rng_to_json(self.rng),
            "candidates": [c.to_dict() for c in self.candidates],
            "history": self.history,
            "lessons": self.lessons,
            "state": self.state,
            "wall_s": self.tracker.wall_s,
            "optimizer_cost_usd": self.tracker.optimizer_cost_usd,
            "stop_reason": self.stop_reason,
        }
        storage.write_json(state, self.run_dir / "checkpoint.json")

    def _load_checkpoint(self) -> bool:
        path = self.run_dir / "checkpoint.json"
        if not path.exists():
            return False
        data = storage.read_json(path)
        if data.get("optimizer") != self.optimizer or data.get("seed_program_hash") != self.seed_program.hash:
            raise ValueError(
                f"{self.run_dir} holds a checkpoint of another run ({data.get('optimizer')}, seed program "
                f"{data.get('seed_program_hash')}); use a new run folder"
            )
        self.step = data["step"]
        self.best_step = data.get("best_step", 0)
        self.rng.setstate(_rng_from_json(data["rng"]))
        self.candidates = [Candidate.from_dict(c) for c in data["candidates"]]
        self.history = data["history"]
        self.lessons = data["lessons"]
        self.state = data["state"]
        self.stop_reason = data.get("stop_reason", "")
        self.tracker.elapsed_before_s = data.get("wall_s", 0.0)
        self.tracker.optimizer_cost_usd = data.get("optimizer_cost_usd", 0.0)
        log.info("%s: resumed from step %d (%d candidates)", self.optimizer, self.step, len(self.candidates))
        return True

    # -- result -----------------------------------------------------------------------------------

    def result(self, settings: dict[str, Any] | None = None) -> OptimizationResult:
        best = self.best()
        points = [(c.val_score, c.tokens_per_doc) for c in self.candidates]
        program = best.program.replace(
            lessons=list(self.lessons),
            metadata={
                **best.program.metadata,
                "optimizer": self.optimizer,
                "val_score": best.val_score,
                "seed_val_score": self.candidates[0].val_score,
                "tokens_per_doc": best.tokens_per_doc,
                "lineage": self.lineage(best.index),
            },
        )
        return OptimizationResult(
            optimizer=self.optimizer,
            best_program=program,
            best_index=best.index,
            candidates=self.candidates,
            pareto_front=quality_cost_front(points),
            history=self.history,
            lessons=list(self.lessons),
            usage=self.tracker.to_dict(),
            stop_reason=self.stop_reason,
            settings=settings or {},
        )

    def lineage(self, index: int) -> list[dict[str, Any]]:
        """The chain of changes from the seed to candidate `index` (first parent at each step)."""
        chain = []
        current: int | None = index
        while current is not None:
            candidate = self.candidates[current]
            chain.append(
                {"index": current, "changed": candidate.changed, "val_score": round(candidate.val_score, 4)}
            )
            current = candidate.parents[0] if candidate.parents else None
        return list(reversed(chain))


class Optimizer(ABC):
    """Base of every optimizer. Subclasses implement `optimize(run)`; `compile` does the rest."""

    name = "optimizer"

    def __init__(
        self,
        *,
        run_dir: str | Path | None = None,
        seed: int = 0,
        reflection_model: str | LMClient | None = None,
        student_client: LMClient | None = None,
        concurrency: int = 2,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        evaluate_hook: EvaluateHook | None = None,
    ) -> None:
        self.run_dir = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix=f"ieflow-{self.name}-"))
        self.seed = seed
        if isinstance(reflection_model, LMClient):
            self.reflection_lm = reflection_model
        else:
            self.reflection_lm = LMClient(
                reflection_model or config.reflection_model(), params={"max_tokens": 200}
            )
        self.student_client = student_client
        self.concurrency = concurrency
        self.on_event = on_event
        self.evaluate_hook = evaluate_hook

    def slack_calls(self) -> int:
        """How far past the metric-call budget one step may go (one minibatch)."""
        return 0

    def settings(self) -> dict[str, Any]:
        """Scalar settings for the result file: the `config` dataclass's, else the optimizer's own."""
        source = vars(self.config) if hasattr(self, "config") else vars(self)
        return {k: v for k, v in source.items() if isinstance(v, int | float | str | bool | None)}

    def compile(
        self,
        program: ExtractionProgram,
        trainset: list[Example],
        valset: list[Example],
        budget: Budget | None = None,
    ) -> OptimizationResult:
        run = OptimizerRun(
            self.name,
            program,
            trainset,
            valset,
            budget or Budget(),
            self.run_dir,
            seed=self.seed,
            slack_calls=self.slack_calls(),
            concurrency=self.concurrency,
            student_client=self.student_client,
            on_event=self.on_event,
            evaluate_hook=self.evaluate_hook,
        )
        if run.stop_reason:  # a finished run: compile again returns the same result
            return run.result(self.settings())
        try:
            if not run.candidates:
                run.add_candidate(program, [], "seed", "the program as given")
                run.checkpoint()
            self.optimize(run)
            run.stop_reason = run.stop_reason or "finished"
        except BudgetExhausted as exc:
            run.stop_reason = str(exc)
        if not run.candidates:
            raise BudgetExhausted("the budget does not cover even one validation pass of the seed program")
        run.event("stop", reason=run.stop_reason, best=run.best().index, best_val=run.best().val_score)
        run.checkpoint()
        result = run.result(self.settings())
        result.save(self.run_dir)
        return result

    @abstractmethod
    def optimize(self, run: OptimizerRun) -> None:
        """Improve the pool in `run` until a budget is hit or the optimizer is done."""

    def ask(self, run: OptimizerRun, messages: list[dict], **params: Any) -> Any:
        """One call to the reflection model; its cost is the optimizer's own. None on failure
        (recorded in the history): a failed proposal must not end the run."""
        from ieflow.lm import LMError

        try:
            response = self.reflection_lm.complete(messages, **params)
        except LMError as exc:
            run.event("reflection_error", reason=exc.reason)
            return None
        run.tracker.optimizer_cost_usd += response.cost_usd
        return response


def _rng_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_json(data: list[Any]) -> tuple[Any, ...]:
    return (data[0], tuple(data[1]), data[2])


__all__ = ["Budget", "BudgetExhausted", "Candidate", "OptimizationResult", "Optimizer", "OptimizerRun"]
