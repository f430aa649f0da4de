"""PromptBreeder (Fernando et al., 2023): task prompts evolve, and so do the mutation prompts that
rewrite them ("self-referential" improvement).

The mechanism, as in the paper: the population is a list of units, each a (task prompt, mutation
prompt) pair scored on the same fixed training subset. Each step is a binary tournament: two random
units, and the loser is overwritten by a mutant of the winner. The mutation operator is drawn
uniformly from the paper's classes: direct mutation (the winner's mutation prompt applied to its
task prompt), zero-order generation (a new task prompt from the problem description and a thinking
style, no parent), hyper-mutation (a meta-mutation prompt rewrites the winner's mutation prompt,
which then mutates the task prompt, and the unit keeps the new mutation prompt), lineage-based
mutation (the elites found so far, in order, best last, to write the next one) and first-order
estimation-of-distribution mutation (the population's task prompts, worst to best, to a new one).
The initial population is the seed plus zero-order prompts, each with a mutation prompt drawn from
a fixed list.

Adapted to extraction programs: the task prompt is the program's instruction; field descriptions,
demos and formats stay the seed's, so fitness measures the instruction. The problem description is
the field list plus facts about the data computed in code (no raw exemplars to copy). A unit that
beats the best subset score so far becomes an elite and gets a validation pass (`add_candidate`).

Small-model adaptations: a population of 6 (the paper's 50 would spend a small budget on the first
generation), short thinking styles and mutation prompts, each operator one short request, and every
reply checked (`ProposalCheck`; no repeat of a task prompt in the population) before it costs a
metric call. The paper's context shuffling and prompt-crossover operators are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ieflow.optimize.base import Optimizer, OptimizerRun
from ieflow.optimize.checks import ProposalCheck
from ieflow.optimize.edits import with_instruction
from ieflow.optimize.facts import data_summary
from ieflow.optimize.lessons import Lesson, Verdict
from ieflow.optimize.population import ask_checked, draw_subset, score_instruction
from ieflow.optimize.prompts import field_list
from ieflow.optimize.prompts_promptbreeder import (
    HYPER_MUTATION_PROMPTS,
    MUTATION_PROMPTS,
    THINKING_STYLES,
    direct_mutation_messages,
    eda_messages,
    hyper_mutation_messages,
    lineage_messages,
    problem_description,
    zero_order_messages,
)
from ieflow.optimize.run_log import RunEvent
from ieflow.program import INSTRUCTION

OPERATORS = ("direct", "zero_order", "hyper", "lineage", "eda")
MUTATION_PROMPT = "mutation_prompt"  # what a rejected hyper-mutation reply is logged under


@dataclass
class PromptBreederConfig:
    population_size: int = 6
    subset_size: int = 6  # the fixed training subset every unit is scored on
    elites_shown: int = 5  # lineage mutation: the latest elites shown
    operators: tuple[str, ...] = OPERATORS  # drawn uniformly per tournament
    max_steps: int | None = None
    temperature: float = 0.8
    max_idle_steps: int = 8  # stop after this many rejected mutants in a row (they cost no metric call)
    check: ProposalCheck = field(default_factory=ProposalCheck)

    def __post_init__(self) -> None:
        unknown = set(self.operators) - set(OPERATORS)
        if unknown or not self.operators:
            raise ValueError(f"PromptBreeder operators must be some of {', '.join(OPERATORS)}")
        if self.population_size < 2:
            raise ValueError("PromptBreeder needs a population of at least 2 (a tournament draws two)")


@dataclass
class Unit:
    """A task prompt (the instruction), the mutation prompt that rewrites it, its subset score, and
    its pool index once it has had a validation pass."""

    task: str
    mutation: str
    score: float
    candidate: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "mutation": self.mutation,
            "score": self.score,
            "candidate": self.candidate,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Unit:
        return cls(data["task"], data["mutation"], float(data["score"]), data.get("candidate"))


@dataclass
class Elite:
    """A task prompt that was the best so far when it was scored (the lineage, in order)."""

    text: str
    score: float


@dataclass
class PromptBreederState:
    subset: list[str] | None = None  # the fixed training subset (drawn once)
    units: list[Unit] = field(default_factory=list)
    elites: list[Elite] = field(default_factory=list)  # each a new best when found: ascending scores
    init_attempts: int = 0
    initialized: bool = False
    idle: int = 0  # rejected mutants in a row

    def to_json(self) -> dict[str, Any]:
        return {
            "subset": self.subset,
            "units": [u.to_json() for u in self.units],
            "elites": [[e.text, e.score] for e in self.elites],
            "init_attempts": self.init_attempts,
            "initialized": self.initialized,
            "idle": self.idle,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PromptBreederState:
        return cls(
            subset=data.get("subset"),
            units=[Unit.from_json(u) for u in data.get("units", [])],
            elites=[Elite(text, float(score)) for text, score in data.get("elites", [])],
            init_attempts=int(data.get("init_attempts", 0)),
            initialized=bool(data.get("initialized", False)),
            idle=int(data.get("idle", 0)),
        )

    @classmethod
    def from_v1(cls, state: dict[str, Any]) -> PromptBreederState:
        raise ValueError("no version-1 checkpoints exist for promptbreeder")


@dataclass
class UnitMutated(RunEvent):
    """A tournament: the winner's mutant (by `operator`) scored and written over the loser (slots);
    for the initial population `winner` and `loser` are None and the unit is appended."""

    KIND: ClassVar[str] = "breeding"
    operator: str
    winner: int | None
    loser: int | None
    task_prompt: str
    mutation_prompt: str
    score: float = field(metadata={"round": 4})
    improved: bool

    @property
    def component(self) -> str | None:
        return INSTRUCTION


class PromptBreeder(Optimizer):
    name = "promptbreeder"
    State = PromptBreederState

    def __init__(self, config: PromptBreederConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config or PromptBreederConfig()

    def slack_calls(self) -> int:
        return self.config.subset_size

    def optimize(self, run: OptimizerRun[PromptBreederState]) -> None:
        cfg, state = self.config, run.state
        if state.subset is None:
            state.subset = draw_subset(run, cfg.subset_size)
            run.checkpoint()
        if not state.units:
            seed_text = run.seed_program.components.get(INSTRUCTION, "")
            score = score_instruction(run, state.subset, seed_text)
            state.units.append(Unit(seed_text, run.rng.choice(MUTATION_PROMPTS), score, candidate=0))
            state.elites.append(Elite(seed_text, score))
            run.checkpoint()
        while not self._should_stop(run, state):
            run.tracker.check(len(state.subset))
            run.step += 1
            made = self._tournament(run, state) if state.initialized else self._grow(run, state)
            state.idle = 0 if made else state.idle + 1
            run.checkpoint()

    def _should_stop(self, run: OptimizerRun[PromptBreederState], state: PromptBreederState) -> bool:
        cfg = self.config
        if run.stopping(cfg.max_steps):
            return True
        if state.idle >= cfg.max_idle_steps:
            run.stop_reason = f"{cfg.max_idle_steps} mutants in a row were rejected"
        elif state.initialized and len(state.units) < 2:
            run.stop_reason = "only the seed passed the checks: no tournament possible"
        return bool(run.stop_reason)

    def _ask(
        self, run: OptimizerRun[PromptBreederState], messages: list[dict[str, str]], call: int, **kw: Any
    ) -> str | None:
        """One checked request; its sampling seed is a pure function of the run's position."""
        cfg = self.config
        seed = self.seed * 100_000 + run.step * 10 + call
        return ask_checked(self, run, messages, check=cfg.check, seed=seed, temperature=cfg.temperature, **kw)

    def _problem(self, run: OptimizerRun[PromptBreederState]) -> list[str]:
        return problem_description(
            field_list(run.seed_program, 60), data_summary(run.seed_program, run.trainset)
        )

    def _grow(self, run: OptimizerRun[PromptBreederState], state: PromptBreederState) -> bool:
        """One unit of the initial population: a zero-order prompt and a random mutation prompt."""
        style, mutation = run.rng.choice(THINKING_STYLES), run.rng.choice(MUTATION_PROMPTS)
        state.init_attempts += 1
        texts = [u.task for u in state.units]
        task = self._ask(run, zero_order_messages(self._problem(run), style), 0, avoid=texts)
        if task is not None:
            self._settle(run, state, Unit(task, mutation, 0.0), "init", None, None)
        size = self.config.population_size
        state.initialized = len(state.units) >= size or state.init_attempts >= 2 * (size - 1)
        return task is not None

    def _tournament(self, run: OptimizerRun[PromptBreederState], state: PromptBreederState) -> bool:
        """Binary tournament: the loser is overwritten by the winner's mutant; False when the mutant
        was rejected before any metric call (the loser then stays)."""
        first, second = run.rng.sample(range(len(state.units)), 2)
        winner, loser = (
            (first, second) if state.units[first].score >= state.units[second].score else (second, first)
        )
        operator = run.rng.choice(self.config.operators)
        mutant = self._mutate(run, state, state.units[winner], operator)
        if mutant is None:
            return False
        self._settle(run, state, mutant, operator, winner, loser)
        return True

    def _mutate(
        self, run: OptimizerRun[PromptBreederState], state: PromptBreederState, parent: Unit, operator: str
    ) -> Unit | None:
        """The winner's mutant by `operator` (its score not yet known), or None when rejected."""
        ranked = sorted(state.units, key=lambda u: u.score)
        texts = [u.task for u in state.units]
        mutation = parent.mutation
        if operator == "hyper":
            hyper = run.rng.choice(HYPER_MUTATION_PROMPTS)
            rewritten = self._ask(
                run, hyper_mutation_messages(hyper, mutation), 0, old=mutation, what=MUTATION_PROMPT
            )
            if rewritten is None:
                return None
            mutation = rewritten
        if operator in ("direct", "hyper"):
            messages = direct_mutation_messages(mutation, parent.task)
        elif operator == "zero_order":
            messages = zero_order_messages(self._problem(run), run.rng.choice(THINKING_STYLES))
        elif operator == "lineage":
            shown = [e.text for e in state.elites[-self.config.elites_shown :]]
            messages = lineage_messages(self._problem(run), shown)
        else:
            messages = eda_messages(self._problem(run), [u.task for u in ranked])
        task = self._ask(run, messages, 1, old=parent.task, avoid=texts)
        return None if task is None else Unit(task, mutation, 0.0)

    def _settle(
        self,
        run: OptimizerRun[PromptBreederState],
        state: PromptBreederState,
        unit: Unit,
        operator: str,
        winner: int | None,
        loser: int | None,
    ) -> None:
        """Score `unit` and put it in the loser's slot (appended for the initial population); a new
        best becomes an elite and gets a validation pass."""
        best = state.elites[-1].score
        unit.score = score_instruction(run, state.subset or [], unit.task)
        parent = state.units[winner].candidate if winner is not None else None
        if loser is None:
            state.units.append(unit)
        else:
            state.units[loser] = unit
        improved = unit.score > best + 1e-9
        run.emit(
            UnitMutated(
                operator=operator,
                winner=winner,
                loser=loser,
                task_prompt=unit.task,
                mutation_prompt=unit.mutation,
                score=unit.score,
                improved=improved,
            )
        )
        verdict = Verdict.of(improved)
        run.record_lesson(
            Lesson(INSTRUCTION, f'instruction "{unit.task}"', verdict, best, unit.score, "subset")
        )
        if improved:
            state.elites.append(Elite(unit.task, unit.score))
            program = with_instruction(run.seed_program, unit.task)
            note = f"{operator}, subset score {unit.score:.2f}"
            if candidate := run.add_candidate(
                program, [parent if parent is not None else 0], INSTRUCTION, note
            ):
                unit.candidate = candidate.index


__all__ = ["OPERATORS", "PromptBreeder", "PromptBreederConfig", "PromptBreederState", "Unit", "UnitMutated"]
