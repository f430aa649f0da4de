"""What the population optimizers (EvoPrompt, PromptBreeder) share: the fixed training subset every
member is scored on, scoring an instruction there, roulette-wheel selection, and one checked call
to the proposal model.

Every member of a population is scored on the same subset (drawn once and checkpointed), so the
fitness values that selection compares are comparable, as in both papers' fixed dev set.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from ieflow.datasets import Example
from ieflow.optimize.checks import ProposalCheck
from ieflow.optimize.edits import propose_text, with_instruction
from ieflow.optimize.evaluator import mean
from ieflow.optimize.run_log import Rejected
from ieflow.program import INSTRUCTION

if TYPE_CHECKING:  # base imports the optimizers' shared pieces; these are only annotations here
    from ieflow.optimize.base import Optimizer, OptimizerRun


def draw_subset(run: OptimizerRun[Any], size: int) -> list[str]:
    """The ids of the fixed training subset (drawn once with the run's RNG)."""
    ids = [ex.doc_id for ex in run.trainset]
    return run.rng.sample(ids, min(size, len(ids)))


def subset_examples(run: OptimizerRun[Any], ids: list[str]) -> list[Example]:
    by_id = {ex.doc_id: ex for ex in run.trainset}
    return [by_id[doc_id] for doc_id in ids]


def score_instruction(run: OptimizerRun[Any], ids: list[str], text: str) -> float:
    """The mean score on the subset of the seed program with `text` as its instruction."""
    program = with_instruction(run.seed_program, text)
    return mean([r.score for r in run.evaluate(program, subset_examples(run, ids))])


def roulette(rng: random.Random, scores: list[float], exclude: int | None = None) -> int:
    """An index drawn with probability proportional to its score (the paper's roulette wheel);
    uniform when every score is zero. `exclude` is never drawn (the first parent, for the second)."""
    indices = [i for i in range(len(scores)) if i != exclude]
    if not indices:
        raise ValueError("roulette needs at least one member to draw")
    weights = [max(scores[i], 0.0) for i in indices]
    if sum(weights) <= 0:
        return rng.choice(indices)
    return rng.choices(indices, weights=weights)[0]


def ask_checked(
    optimizer: Optimizer,
    run: OptimizerRun[Any],
    messages: list[dict[str, str]],
    *,
    check: ProposalCheck,
    seed: int,
    temperature: float,
    old: str = "",
    avoid: list[str] | None = None,
    what: str = INSTRUCTION,
) -> str | None:
    """One call to the proposal model, its reply cleaned and checked; None when it was rejected
    (the reason goes into the run log as `Rejected`, under `what`), before any metric call."""
    text, reason = propose_text(
        optimizer, run, messages, old=old, check=check, seed=seed, temperature=temperature, avoid=avoid
    )
    if reason:
        run.emit(Rejected(component_name=what, text=text or None, reason=reason))
        return None
    return text


__all__ = ["ask_checked", "draw_subset", "roulette", "score_instruction", "subset_examples"]
