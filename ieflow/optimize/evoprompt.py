"""EvoPrompt (Guo et al., 2024): a population of prompts evolved by the language model acting as the
evolutionary operators, in a genetic-algorithm (GA) and a differential-evolution (DE) variant.

The mechanism, as in the paper: a fixed-size population, each member scored on the same fixed dev
subset; the initial population is the seed plus paraphrases of it. GA: two parents drawn by
roulette wheel (probability proportional to their scores), an LLM crossover of the two, then an LLM
mutation of the child; the child takes the worst member's place if it scores higher (so the size
stays fixed). DE, for each base member p_i in turn: two other members p_r1, p_r2; the model names
the parts in which they differ, mutates those parts, works them into the current best p_best, and
crosses the result with p_i; the child replaces p_i if it scores higher.

Adapted to extraction programs: the instruction is the gene; field descriptions, demos and formats
stay the seed's, so fitness measures the instruction. A child that beats the best subset score so
far gets a full validation pass (`add_candidate`). Registered twice: "evoprompt" (GA) and
"evoprompt-de" (DE), so `ieflow optimize --optimizer evoprompt-de` reaches the DE variant.

Small-model adaptations: each operator is its own short request (the paper's single four-step
template is too much for a 1.5B model), mutation requests carry facts about the data computed in
code (no raw exemplars to copy), and every reply is checked (`ProposalCheck`, no repeat of a
member) before it costs a metric call; a population of 5 on a 6-document subset fits small budgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ieflow.optimize.base import Optimizer, OptimizerRun
from ieflow.optimize.checks import ProposalCheck
from ieflow.optimize.edits import with_instruction
from ieflow.optimize.facts import data_summary
from ieflow.optimize.lessons import Lesson, Verdict
from ieflow.optimize.population import ask_checked, draw_subset, roulette, score_instruction
from ieflow.optimize.prompts_evoprompt import (
    combine_messages,
    crossover_messages,
    difference_messages,
    mutate_parts_messages,
    mutation_messages,
    paraphrase_messages,
)
from ieflow.optimize.run_log import RunEvent
from ieflow.program import INSTRUCTION

DIFFERENCE = "difference"  # what a rejected DE difference or mutated-parts reply is logged under


@dataclass
class EvoPromptConfig:
    variant: Literal["ga", "de"] = "ga"
    population_size: int = 5  # the seed and its paraphrases; fixed from then on
    subset_size: int = 6  # the fixed dev subset every member is scored on
    max_steps: int | None = None
    temperature: float = 0.8
    max_idle_steps: int = 8  # stop after this many rejected children in a row (they cost no metric call)
    check: ProposalCheck = field(default_factory=ProposalCheck)

    def __post_init__(self) -> None:
        if self.variant not in ("ga", "de"):
            raise ValueError(f"EvoPrompt variant must be 'ga' or 'de', not {self.variant!r}")
        if self.population_size < 3:
            raise ValueError("EvoPrompt needs a population of at least 3 (DE draws three members)")


@dataclass
class Member:
    """One prompt of the population: its instruction, its subset score, and its pool index once it
    has had a validation pass."""

    text: str
    score: float
    candidate: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "score": self.score, "candidate": self.candidate}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Member:
        return cls(data["text"], float(data["score"]), data.get("candidate"))


@dataclass
class EvoPromptState:
    subset: list[str] | None = None  # the fixed dev subset (drawn once)
    population: list[Member] = field(default_factory=list)
    init_attempts: int = 0  # paraphrase requests made for the initial population
    initialized: bool = False
    cursor: int = 0  # DE: children made so far; the base member is `cursor % size`
    idle: int = 0  # rejected children in a row

    def to_json(self) -> dict[str, Any]:
        return {
            "subset": self.subset,
            "population": [m.to_json() for m in self.population],
            "init_attempts": self.init_attempts,
            "initialized": self.initialized,
            "cursor": self.cursor,
            "idle": self.idle,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvoPromptState:
        return cls(
            subset=data.get("subset"),
            population=[Member.from_json(m) for m in data.get("population", [])],
            init_attempts=int(data.get("init_attempts", 0)),
            initialized=bool(data.get("initialized", False)),
            cursor=int(data.get("cursor", 0)),
            idle=int(data.get("idle", 0)),
        )

    @classmethod
    def from_v1(cls, state: dict[str, Any]) -> EvoPromptState:
        raise ValueError("no version-1 checkpoints exist for evoprompt")


@dataclass
class ChildScored(RunEvent):
    """A child scored on the dev subset: its parents (population slots), and the slot it took."""

    KIND: ClassVar[str] = "evolution"
    variant: str
    parents: list[int]
    text: str
    score: float = field(metadata={"round": 4})
    replaced: int | None  # None: the child lost and was dropped
    improved: bool  # beat the best subset score so far

    @property
    def component(self) -> str | None:
        return INSTRUCTION


class EvoPrompt(Optimizer):
    name = "evoprompt"
    State = EvoPromptState

    def __init__(self, config: EvoPromptConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config or EvoPromptConfig()

    def slack_calls(self) -> int:
        return self.config.subset_size

    def optimize(self, run: OptimizerRun[EvoPromptState]) -> None:
        cfg, state = self.config, run.state
        if state.subset is None:
            state.subset = draw_subset(run, cfg.subset_size)
            run.checkpoint()
        if not state.population:
            seed_text = run.seed_program.components.get(INSTRUCTION, "")
            state.population.append(Member(seed_text, self._score(run, seed_text), candidate=0))
            run.checkpoint()
        while not self._should_stop(run, state):
            run.tracker.check(len(state.subset))
            run.step += 1
            if not state.initialized:
                made = self._grow(run, state)
            elif cfg.variant == "ga":
                made = self._ga_step(run, state)
            else:
                made = self._de_step(run, state)
            state.idle = 0 if made else state.idle + 1
            run.checkpoint()

    def _should_stop(self, run: OptimizerRun[EvoPromptState], state: EvoPromptState) -> bool:
        cfg = self.config
        if run.stopping(cfg.max_steps):
            return True
        if state.idle >= cfg.max_idle_steps:
            run.stop_reason = f"{cfg.max_idle_steps} children in a row were rejected"
        elif state.initialized and len(state.population) < 3:
            run.stop_reason = f"only {len(state.population)} members passed the checks (3 needed)"
        return bool(run.stop_reason)

    def _score(self, run: OptimizerRun[EvoPromptState], text: str) -> float:
        return score_instruction(run, run.state.subset or [], text)

    def _seed(self, run: OptimizerRun[EvoPromptState], call: int) -> int:
        """A distinct sampling seed per request, a pure function of the run's position (resume replays)."""
        return self.seed * 100_000 + run.step * 10 + call

    def _ask(
        self, run: OptimizerRun[EvoPromptState], messages: list[dict[str, str]], call: int, **kw: Any
    ) -> str | None:
        cfg = self.config
        return ask_checked(
            self,
            run,
            messages,
            check=cfg.check,
            seed=self._seed(run, call),
            temperature=cfg.temperature,
            **kw,
        )

    # -- the initial population ---------------------------------------------------------------------

    def _grow(self, run: OptimizerRun[EvoPromptState], state: EvoPromptState) -> bool:
        """One paraphrase of the seed for the initial population; False when it was rejected."""
        seed_text = state.population[0].text
        texts = [m.text for m in state.population]
        attempt = state.init_attempts
        state.init_attempts += 1
        text = self._ask(run, paraphrase_messages(seed_text, attempt), 0, old=seed_text, avoid=texts)
        if text is not None:
            self._settle(run, state, text, parents=[0], slot=None, variant="init")
        full = len(state.population) >= self.config.population_size
        state.initialized = full or state.init_attempts >= 2 * (self.config.population_size - 1)
        return text is not None

    # -- the two variants -----------------------------------------------------------------------

    def _ga_step(self, run: OptimizerRun[EvoPromptState], state: EvoPromptState) -> bool:
        """Roulette selection, crossover, mutation; the child replaces the worst if better."""
        population = state.population
        scores = [m.score for m in population]
        first = roulette(run.rng, scores)
        second = roulette(run.rng, scores, exclude=first)
        texts = [m.text for m in population]
        crossed = self._ask(run, crossover_messages(texts[first], texts[second]), 0)
        if crossed is None:
            return False
        summary = data_summary(run.seed_program, run.trainset)
        child = self._ask(run, mutation_messages(crossed, summary), 1, old=crossed, avoid=texts)
        if child is None:
            return False
        worst = min(range(len(population)), key=lambda i: (scores[i], -i))
        self._settle(run, state, child, parents=[first, second], slot=worst, variant="ga")
        return True

    def _de_step(self, run: OptimizerRun[EvoPromptState], state: EvoPromptState) -> bool:
        """The difference of two members, mutated, worked into the best, crossed with the base p_i;
        the child replaces p_i if better."""
        population = state.population
        base = state.cursor % len(population)
        state.cursor += 1
        r1, r2 = run.rng.sample([i for i in range(len(population)) if i != base], 2)
        best = max(range(len(population)), key=lambda i: (population[i].score, -i))
        texts = [m.text for m in population]
        parts = self._ask(run, difference_messages(texts[r1], texts[r2]), 0, what=DIFFERENCE)
        if parts is None:
            return False
        summary = data_summary(run.seed_program, run.trainset)
        mutated = self._ask(run, mutate_parts_messages(parts, summary), 1, old=parts, what=DIFFERENCE)
        if mutated is None:
            return False
        combined = self._ask(run, combine_messages(mutated, texts[best]), 2, old=texts[best])
        if combined is None:
            return False
        child = self._ask(run, crossover_messages(combined, texts[base]), 3, old=texts[base], avoid=texts)
        if child is None:
            return False
        self._settle(run, state, child, parents=[base, r1, r2, best], slot=base, variant="de")
        return True

    def _settle(
        self,
        run: OptimizerRun[EvoPromptState],
        state: EvoPromptState,
        text: str,
        *,
        parents: list[int],
        slot: int | None,
        variant: str,
    ) -> None:
        """Score the child; it takes `slot` if it beats that member (None: the initial population
        grows); a new best on the subset gets a validation pass."""
        population = state.population
        best = max(m.score for m in population)
        score = self._score(run, text)
        member = Member(text, score)
        lineage = sorted({c for i in parents if (c := population[i].candidate) is not None}) or [0]
        replaced = None if slot is not None and score <= population[slot].score + 1e-9 else slot
        if slot is None:
            population.append(member)
            replaced = len(population) - 1
        elif replaced is not None:
            population[slot] = member
        improved = score > best + 1e-9
        run.emit(
            ChildScored(
                variant=variant, parents=parents, text=text, score=score, replaced=replaced, improved=improved
            )
        )
        run.record_lesson(
            Lesson(INSTRUCTION, f'instruction "{text}"', Verdict.of(improved), best, score, "subset")
        )
        if improved:
            program = with_instruction(run.seed_program, text)
            if candidate := run.add_candidate(
                program, lineage, INSTRUCTION, f"{variant}, subset score {score:.2f}"
            ):
                member.candidate = candidate.index


class EvoPromptDE(EvoPrompt):
    """EvoPrompt's differential-evolution variant under its own name (for the CLI and the flows)."""

    name = "evoprompt-de"

    def __init__(self, config: EvoPromptConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config or EvoPromptConfig(variant="de"), **kwargs)


__all__ = ["ChildScored", "EvoPrompt", "EvoPromptConfig", "EvoPromptDE", "EvoPromptState", "Member"]
