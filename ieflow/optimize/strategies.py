"""The swappable decisions of the reflective optimizers (GEPA, SIMBA): one `Protocol` per decision,
with the implementations ieflow ships.

Each decision gets only what it decides from (the candidate pool, the run's RNG, the part of the
optimizer's checkpointed state it keeps) and returns plain data, so a replacement can be written and
unit-tested without an `OptimizerRun`. Contracts, for anyone adding one:

- Every random choice goes through the `rng` passed in, and nothing else is random: a resumed run
  replays the same decisions from the checkpointed RNG state.
- State a decision must remember across steps (a minibatch position, merges tried) is passed in,
  lives in the optimizer's `State` dataclass, and so is checkpointed; a decision keeps none itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from ieflow.datasets import Example
from ieflow.optimize.candidates import Candidate, CandidatePool
from ieflow.optimize.edits import Proposal
from ieflow.optimize.evaluator import ExampleResult
from ieflow.optimize.pareto import sample_from_front
from ieflow.optimize.state import MinibatchPosition
from ieflow.program import DEMOS, FIELD_PREFIX, INSTRUCTION, OUTPUT_FORMATS, STRATEGY, ExtractionProgram

# -- the decisions ----------------------------------------------------------------------------------


class ParentSelector(Protocol):
    """Which candidate the next edit starts from."""

    def select(self, pool: CandidatePool, rng: random.Random) -> Candidate: ...


class MinibatchSampler(Protocol):
    """The training examples one step is judged on. Advances `position` in place."""

    def next(
        self, trainset: list[Example], rng: random.Random, position: MinibatchPosition
    ) -> list[Example]: ...


class ComponentChooser(Protocol):
    """The component to edit ("field:<path>", "instruction" or "demos"), or None when the parent
    needs nothing on this minibatch. `tried` counts the proposals already made per component for
    this parent; the caller increments it after the choice."""

    def choose(
        self, parent: Candidate, results: list[ExampleResult], tried: dict[str, int], rng: random.Random
    ) -> str | None: ...


class Acceptance(Protocol):
    """Whether a child that was scored on the parent's minibatch goes on to validation."""

    def accept(
        self, parent: list[ExampleResult], child: list[ExampleResult], proposal: Proposal | None
    ) -> bool: ...


@dataclass(frozen=True)
class MergePlan:
    """Two candidates to combine, the ancestor both changed from, and the combined program."""

    first: Candidate
    second: Candidate
    ancestor: int
    program: ExtractionProgram


class Merger(Protocol):
    """A merge to try, or None. Appends the pair it returns to `tried` (a pair is tried once)."""

    def pick(self, pool: CandidatePool, tried: list[tuple[int, int]]) -> MergePlan | None: ...


# -- what ieflow ships ------------------------------------------------------------------------------


class ParetoParentSelector:
    """GEPA's choice: a candidate on the per-example front, with weight = examples it wins."""

    def select(self, pool: CandidatePool, rng: random.Random) -> Candidate:
        index = sample_from_front([c.val_scores for c in pool.candidates], rng)
        return pool.candidates[index]


class BestParentSelector:
    """Greedy alternative (SIMBA's default): always the best candidate on validation."""

    def select(self, pool: CandidatePool, rng: random.Random) -> Candidate:
        return pool.best()


class EpochMinibatches:
    """Epoch-wise shuffled minibatches of the training set: every example once per epoch."""

    def __init__(self, size: int) -> None:
        self.size = size

    def next(self, trainset: list[Example], rng: random.Random, position: MinibatchPosition) -> list[Example]:
        ids = [ex.doc_id for ex in trainset]
        batch: list[str] = []
        while len(batch) < min(self.size, len(ids)):
            if position.pos >= len(position.order):
                order = list(ids)
                rng.shuffle(order)
                position.order, position.pos = order, 0
            doc = position.order[position.pos]
            position.pos += 1
            if doc not in batch:
                batch.append(doc)
        by_id = {ex.doc_id: ex for ex in trainset}
        return [by_id[d] for d in batch]


class FailingFieldChooser:
    """Choose the component to change from the fields that fail most on the minibatch.

    A field's weight is its failure mass (sum of 1 - score) divided by 1 + the number of proposals
    already tried for it on this parent, so a field that resists edits yields to the next one.
    With some probability (and always when nothing fails field-wise but answers fail to parse)
    the instruction or the demos are chosen instead.
    """

    def __init__(self, demo_rate: float = 0.2, instruction_rate: float = 0.1) -> None:
        self.demo_rate = demo_rate
        self.instruction_rate = instruction_rate

    def choose(
        self, parent: Candidate, results: list[ExampleResult], tried: dict[str, int], rng: random.Random
    ) -> str | None:
        if any(r.error for r in results) and rng.random() < 0.5:
            return INSTRUCTION
        roll = rng.random()
        if roll < self.demo_rate:
            return DEMOS
        if roll < self.demo_rate + self.instruction_rate:
            return INSTRUCTION
        weights: dict[str, float] = {}
        for path in parent.program.field_descriptions():
            mass = sum(1.0 - r.fields.get(path, 1.0) for r in results)
            if mass > 0:
                weights[FIELD_PREFIX + path] = mass / (1 + tried.get(FIELD_PREFIX + path, 0))
        if not weights:
            return DEMOS if any(r.score < 1.0 for r in results) else None
        names = sorted(weights)
        return rng.choices(names, weights=[weights[n] for n in names], k=1)[0]


@dataclass
class MinibatchAcceptance:
    """Accept a child that beats its parent on the minibatch by more than `margin` (sum of scores).

    A grounded proposal (an output format the training data supports) is also accepted on a tie
    (`grounded_ties`): a few-example minibatch often holds no document where the format matters,
    and then only validation can tell. Seen on deepform: the month-first date format tied 0.35 on a
    4-document minibatch and was never scored on validation. Formats are tried once per parent and
    field, so this costs at most a few validation passes.
    """

    margin: float = 0.0
    grounded_ties: bool = True

    def accept(
        self, parent: list[ExampleResult], child: list[ExampleResult], proposal: Proposal | None = None
    ) -> bool:
        before, after = sum(r.score for r in parent), sum(r.score for r in child)
        if self.grounded_ties and proposal is not None and proposal.grounded:
            return after >= before + self.margin
        return after > before + self.margin


class AncestorMerger:
    """Combine two of the best candidates that changed different components since a common
    ancestor: the first's program with the second's changes applied."""

    def __init__(self, pool_size: int = 6) -> None:
        self.pool_size = pool_size

    def pick(self, pool: CandidatePool, tried: list[tuple[int, int]]) -> MergePlan | None:
        best = sorted(pool.candidates, key=lambda c: -c.val_score)[: self.pool_size]
        for i, a in enumerate(best):
            for b in best[i + 1 :]:
                pair = (min(a.index, b.index), max(a.index, b.index))
                if pair in tried:
                    continue
                ancestor = pool.common_ancestor(a.index, b.index)
                if ancestor is None or ancestor in (a.index, b.index):
                    continue
                base = pool.candidates[ancestor].program
                changes_a, changes_b = (
                    changed_components(base, a.program),
                    changed_components(base, b.program),
                )
                if not changes_a or not changes_b or set(changes_a) & set(changes_b):
                    continue
                tried.append(pair)
                return MergePlan(a, b, ancestor, _combine(a.program, b.program, changes_b))
        return None


def changed_components(base: ExtractionProgram, program: ExtractionProgram) -> dict[str, str]:
    """Components changed since `base`, with their new text; demos and formats count as one
    component each (with no text); the long-document strategy is the `strategy` component (its JSON,
    which `ExtractionProgram.replace` applies)."""
    out = {k: v for k, v in program.components.items() if base.components.get(k) != v}
    if program.strategy != base.strategy:
        out[STRATEGY] = program.strategy.to_json()
    if program.demos != base.demos:
        out[DEMOS] = ""
    if program.formats != base.formats:
        out[OUTPUT_FORMATS] = ""
    return out


def _combine(
    first: ExtractionProgram, second: ExtractionProgram, changes: dict[str, str]
) -> ExtractionProgram:
    merged = first.replace(components={k: v for k, v in changes.items() if k not in (DEMOS, OUTPUT_FORMATS)})
    if DEMOS in changes:
        merged = merged.replace(demos=second.demos)
    if OUTPUT_FORMATS in changes:
        merged = merged.replace(formats={**first.formats, **second.formats})
    return merged


__all__ = [
    "Acceptance",
    "AncestorMerger",
    "BestParentSelector",
    "ComponentChooser",
    "EpochMinibatches",
    "FailingFieldChooser",
    "MergePlan",
    "Merger",
    "MinibatchAcceptance",
    "MinibatchSampler",
    "ParentSelector",
    "ParetoParentSelector",
    "changed_components",
]
