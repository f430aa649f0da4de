"""The one optimizer interface, and the run machinery every optimizer shares.

`Optimizer.compile(program, trainset, valset, budget) -> OptimizationResult`, like DSPy's
teleprompters. An `OptimizerRun` holds what a run needs, as named parts: the evaluator and its
ledger, the budget tracker, the `CandidatePool` (per-example validation scores, best, fronts,
lineage), the `RunLog` of typed events, the lesson log, a seeded RNG, and the optimizer's own
typed `State`; a `Checkpoint` of all of it is written after every step so a killed run resumes
where it stopped.
"""

from __future__ import annotations

import logging
import random
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast

from ieflow import config
from ieflow.datasets import Example
from ieflow.lm import LMClient, LMError
from ieflow.optimize import tracking
from ieflow.optimize.candidates import Candidate, CandidatePool
from ieflow.optimize.checkpoint import Checkpoint, CheckpointError
from ieflow.optimize.checks import copies_of_added_demos
from ieflow.optimize.choice import choose_final
from ieflow.optimize.evaluator import (
    Budget,
    BudgetExhausted,
    BudgetTracker,
    Evaluator,
    ExampleResult,
    Ledger,
    mean_tokens,
)
from ieflow.optimize.lessons import Lesson, LessonLog
from ieflow.optimize.result import OptimizationResult
from ieflow.optimize.run_log import (
    CandidateAdded,
    Progress,
    PublishProgress,
    ReflectionFailed,
    Rejected,
    RunEvent,
    RunListener,
    RunLog,
    Stopped,
)
from ieflow.optimize.state import NoState, OptimizerState
from ieflow.program import ExtractionProgram
from ieflow.scoring import ExampleScorer, Scorer

log = logging.getLogger("ieflow.optimize")

# How an orchestrator (the Prefect flow) runs each evaluation, e.g. as a task with retries:
# hook(evaluator, program, examples) must return `evaluator.evaluate(program, examples)`.
EvaluateHook = Callable[[Evaluator, ExtractionProgram, list[Example]], list[ExampleResult]]

S = TypeVar("S", bound=OptimizerState)


class OptimizerRun(Generic[S]):
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
        state: S | None = None,
        seed: int = 0,
        slack_calls: int = 0,
        concurrency: int = 2,
        student_client: LMClient | None = None,
        listeners: Sequence[RunListener] = (),
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
        self.evaluate_hook = evaluate_hook
        self.pool = CandidatePool()
        self.log = RunLog(optimizer, listeners)
        self.lessons = LessonLog.from_sentences(program.lessons)  # carried from earlier runs
        self.rng = random.Random(seed)
        self.seed = seed
        self.step = 0
        self.state: S = state if state is not None else cast(S, NoState())
        self.stop_reason = ""
        self.resumed = self._resume()

    @property
    def candidates(self) -> list[Candidate]:
        return self.pool.candidates

    def best(self) -> Candidate:
        """Highest validation score; ties go to the cheaper, then the earlier candidate."""
        return self.pool.best()

    # -- evaluation -------------------------------------------------------------------------------

    def evaluate(self, program: ExtractionProgram, examples: list[Example]) -> list[ExampleResult]:
        if self.evaluate_hook is not None:
            return self.evaluate_hook(self.evaluator, program, examples)
        return self.evaluator.evaluate(program, examples)

    def add_candidate(
        self, program: ExtractionProgram, parents: list[int], changed_component: str, note: str = ""
    ) -> Candidate | None:
        """Score `program` on the whole validation set and add it to the pool; None when its
        answers copy a new demo's values into other documents (rejected, with the reason logged)."""
        existing = self.pool.find(program)
        if existing is not None:
            return existing
        results = self.evaluate(program, self.valset)
        if parents and (copies := copies_of_added_demos(program, self.seed_program, self.valset, results)):
            reason = f"answers copy demo values into other documents: {', '.join(map(repr, copies[:3]))}"
            self.emit(Rejected(component_name=changed_component, reason=reason, parent=parents[0]))
            return None
        candidate = Candidate(
            index=len(self.pool),
            program=program,
            parents=parents,
            changed_component=changed_component,
            step=self.step,
            val_scores={r.doc_id: r.score for r in results},
            tokens_per_doc=mean_tokens(results),
            note=note,
        )
        self.pool.add(candidate)
        self.emit(
            CandidateAdded(
                index=candidate.index,
                parents=parents,
                changed_component=changed_component,
                val_score=candidate.val_score,
                tokens_per_doc=candidate.tokens_per_doc,
                note=note,
            )
        )
        return candidate

    def val_results(self, candidate: Candidate) -> list[ExampleResult]:
        return self.evaluate(candidate.program, self.valset)

    # -- stopping ---------------------------------------------------------------------------------

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
        return patience is not None and self.step - self.pool.best_step >= patience

    # -- events, lessons, checkpoints -------------------------------------------------------------

    def progress(self) -> Progress:
        return Progress(
            step=self.step,
            metric_calls=self.tracker.metric_calls,
            max_metric_calls=self.tracker.budget.max_metric_calls,
            best_val_score=self.pool.best_val_score(),
        )

    def emit(self, event: RunEvent) -> None:
        """Record `event` in the run log (stamped with where the run stands) and tell listeners."""
        event.progress = self.progress()
        self.log.record(event)

    def record_lesson(self, lesson: Lesson) -> None:
        self.lessons.add(lesson)

    def checkpoint(self) -> None:
        Checkpoint(
            optimizer=self.optimizer,
            seed_program_hash=self.seed_program.hash,
            step=self.step,
            best_step=self.pool.best_step,
            rng_state=self.rng.getstate(),
            candidates=self.pool.candidates,
            history=self.log.events,
            lessons=self.lessons,
            state=self.state,
            wall_s=self.tracker.wall_s,
            optimizer_cost_usd=self.tracker.optimizer_cost_usd,
            stop_reason=self.stop_reason,
        ).save(self.run_dir / "checkpoint.json")

    def _resume(self) -> bool:
        path = self.run_dir / "checkpoint.json"
        saved = Checkpoint.load(path, type(self.state))
        if saved is None:
            return False
        if saved.optimizer != self.optimizer or saved.seed_program_hash != self.seed_program.hash:
            raise CheckpointError(
                f"{self.run_dir} holds a checkpoint of another run ({saved.optimizer}, seed program "
                f"{saved.seed_program_hash}); use a new run folder"
            )
        self.step = saved.step
        self.rng.setstate(saved.rng_state)
        self.pool = CandidatePool(saved.candidates, saved.best_step)
        self.log.events = saved.history
        self.lessons = saved.lessons
        self.state = cast(S, saved.state)
        self.stop_reason = saved.stop_reason
        self.tracker.elapsed_before_s = saved.wall_s
        self.tracker.optimizer_cost_usd = saved.optimizer_cost_usd
        if saved.migrated_from is not None:
            log.info("%s: read a version-%d checkpoint (migrated)", path, saved.migrated_from)
        log.info("%s: resumed from step %d (%d candidates)", self.optimizer, self.step, len(self.pool))
        return True

    # -- result -----------------------------------------------------------------------------------

    def result(self, settings: dict[str, Any] | None = None) -> OptimizationResult:
        choice = choose_final(self.pool)  # a cheaper candidate within noise of the best wins
        best = self.candidates[choice.index]
        program = best.program.replace(
            lessons=self.lessons.texts(),
            metadata={
                **best.program.metadata,
                "optimizer": self.optimizer,
                "val_score": best.val_score,
                "seed_val_score": self.candidates[0].val_score,
                "tokens_per_doc": best.tokens_per_doc,
                "lineage": self.pool.lineage(best.index),
                **({"choice": choice.reason} if choice.changed else {}),
            },
        )
        return OptimizationResult(
            optimizer=self.optimizer,
            best_program=program,
            best_index=best.index,
            candidates=self.candidates,
            pareto_front=self.pool.quality_cost_front(),
            history=self.log.history(),
            lessons=self.lessons.texts(),
            usage=self.tracker.to_dict(),
            stop_reason=self.stop_reason,
            settings=settings or {},
            choice=choice,
        )


class Optimizer(ABC):
    """Base of every optimizer. Subclasses implement `optimize(run)` and name their `State`;
    `compile` does the rest."""

    name = "optimizer"
    State: ClassVar[type[OptimizerState]] = NoState

    def __init__(
        self,
        *,
        run_dir: str | Path | None = None,
        seed: int = 0,
        reflection_model: str | LMClient | None = None,
        student_client: LMClient | None = None,
        concurrency: int = 2,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        listeners: Sequence[RunListener] = (),
        evaluate_hook: EvaluateHook | None = None,
        scorer: ExampleScorer | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        self.scorer = scorer  # None: the gold Scorer on the labels (silver weighted by agreement)
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
        self.on_event = on_event  # gets each event as its history entry (JSON), e.g. for an artifact
        self.listeners = list(listeners)  # get each typed event (`RunListener`)
        self.evaluate_hook = evaluate_hook
        self.tracking_uri = tracking.configured_uri(tracking_uri)  # None: no MLflow, not imported

    def slack_calls(self) -> int:
        """How far past the metric-call budget one step may go (one minibatch)."""
        return 0

    def settings(self) -> dict[str, Any]:
        """Scalar settings for the result file: the `config` dataclass's, else the optimizer's own."""
        source = vars(self.config) if hasattr(self, "config") else vars(self)
        return {k: v for k, v in source.items() if isinstance(v, int | float | str | bool | None)}

    def start_run(
        self, program: ExtractionProgram, trainset: list[Example], valset: list[Example], budget: Budget
    ) -> OptimizerRun[Any]:
        """A fresh run, or the one checkpointed in `run_dir` (resumed)."""
        listeners = [*self.listeners, PublishProgress(self.name), *tracking.listeners(self, budget)]
        if self.on_event is not None:
            on_event = self.on_event
            listeners.append(lambda event: on_event(event.to_json()))
        run: OptimizerRun[Any] = OptimizerRun(
            self.name,
            program,
            trainset,
            valset,
            budget,
            self.run_dir,
            state=self.State(),
            seed=self.seed,
            slack_calls=self.slack_calls(),
            concurrency=self.concurrency,
            student_client=self.student_client,
            listeners=listeners,
            evaluate_hook=self.evaluate_hook,
        )
        run.evaluator.scorer = self.scorer or run.evaluator.scorer  # a judge, when there are no labels
        return run

    def compile(
        self,
        program: ExtractionProgram,
        trainset: list[Example],
        valset: list[Example],
        budget: Budget | None = None,
    ) -> OptimizationResult:
        run = self.start_run(program, trainset, valset, budget or Budget())
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
        run.emit(Stopped(reason=run.stop_reason, best=run.best().index, best_val=run.best().val_score))
        run.checkpoint()
        result = run.result(self.settings())
        result.save(self.run_dir)
        tracking.finish(self, result)
        return result

    @abstractmethod
    def optimize(self, run: OptimizerRun[Any]) -> None:
        """Improve the pool in `run` until a budget is hit or the optimizer is done."""

    def ask_reflection_model(self, run: OptimizerRun[Any], messages: list[dict], **params: Any) -> Any:
        """One call to the reflection model; its cost is the optimizer's own. None on failure
        (recorded in the history): a failed proposal must not end the run."""
        try:
            response = self.reflection_lm.complete(messages, **params)
        except LMError as exc:
            run.emit(ReflectionFailed(reason=exc.reason))
            return None
        run.tracker.optimizer_cost_usd += response.cost_usd
        return response


__all__ = [
    "Budget",
    "BudgetExhausted",
    "Candidate",
    "CheckpointError",
    "OptimizationResult",
    "Optimizer",
    "OptimizerRun",
]
