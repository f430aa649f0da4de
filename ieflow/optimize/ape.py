"""APE: instructions induced from input -> output pairs, selected by score, then resampled.

Round 0 shows the proposal model a few short document excerpts with their gold records and asks
what instruction produced them (the paper's "forward" induction template), one candidate per call,
each on different pairs. Every candidate is scored on one fixed training subset (drawn once, never
shown in a prompt); the top `finalists` that beat the seed on it get a full validation pass. Later
rounds ask for variations of the best instruction so far (the paper's iterative Monte Carlo search)
and select the same way.

The pairs hold gold values, which small models like to copy: `ProposalCheck` rejects any candidate
that contains a training value or a run of a training document, before it costs a metric call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ieflow.optimize.base import Optimizer, OptimizerRun
from ieflow.optimize.checks import ProposalCheck
from ieflow.optimize.edits import propose_text, sample_train, with_instruction
from ieflow.optimize.evaluator import mean
from ieflow.optimize.prompts import induction_messages, input_output_pair, variation_messages
from ieflow.optimize.run_log import InstructionScored, Rejected
from ieflow.optimize.state import APEState, ScoredInstruction
from ieflow.program import INSTRUCTION

DEFAULT_ROUNDS = 2  # when the budget sets no bound on the number of rounds


@dataclass
class APEConfig:
    num_candidates: int = 6  # instructions scored per round
    pairs_per_prompt: int = 3  # input -> output pairs shown per induction call
    pair_max_tokens: int = 60  # excerpt length per pair: keeps the prompt under ~700 tokens
    minibatch_size: int = 6  # the fixed training subset every candidate is scored on
    finalists: int = 2  # best candidates per round scored on the whole validation set
    rounds: int | None = None  # round 0 induces, later ones vary the best; None: until the budget is spent
    max_steps: int | None = None
    temperature: float = 0.9
    check: ProposalCheck = field(default_factory=ProposalCheck)


class APE(Optimizer):
    name = "ape"
    State = APEState

    def __init__(self, config: APEConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config or APEConfig()

    def slack_calls(self) -> int:
        return self.config.minibatch_size

    def optimize(self, run: OptimizerRun[APEState]) -> None:
        cfg = self.config
        state = run.state
        if state.subset is None:
            ids = [ex.doc_id for ex in run.trainset]
            state.subset = run.rng.sample(ids, min(cfg.minibatch_size, len(ids)))
            state.round, state.attempts, state.pool = 0, 0, []
            run.checkpoint()
        baseline = self._score(run, run.seed_program.components.get(INSTRUCTION, ""))
        # Equal budgets for every optimizer: by default APE goes on with rounds until the budget is spent.
        rounds = cfg.rounds
        if rounds is None and not run.tracker.budget.bounded:
            rounds = DEFAULT_ROUNDS
        while rounds is None or state.round < rounds:
            entries = [e for e in state.pool if e.round == state.round]
            while len(entries) < cfg.num_candidates and state.attempts < 2 * cfg.num_candidates:
                if self._should_stop(run):
                    return
                run.tracker.check(len(state.subset))
                run.step += 1
                entry = self._propose(run, state)
                state.attempts += 1
                if entry is not None:
                    state.pool.append(entry)
                    entries.append(entry)
                run.checkpoint()
            if not entries and state.round > 0:  # round 0 failing goes on to variations of the seed
                run.stop_reason = f"round {state.round}: no proposal passed the checks"
                return
            finalists = sorted((e for e in entries if e.score > baseline + 1e-9), key=lambda e: -e.score)
            for entry in finalists[: cfg.finalists]:
                if entry.candidate is not None:
                    continue
                if self._should_stop(run):
                    return
                run.step += 1
                program = with_instruction(run.seed_program, entry.text)
                note = f"round {entry.round}, subset score {entry.score:.2f}"
                if added := run.add_candidate(program, [0], INSTRUCTION, note):
                    entry.candidate = added.index
                run.checkpoint()
            state.round += 1
            state.attempts = 0
            run.checkpoint()
        run.stop_reason = f"finished {rounds} rounds"

    def _should_stop(self, run: OptimizerRun[APEState]) -> bool:
        cfg = self.config
        if cfg.max_steps is not None and run.step >= cfg.max_steps:
            run.stop_reason = f"reached {cfg.max_steps} steps"
        elif run.best().val_score >= 1.0 - 1e-9:
            run.stop_reason = "perfect validation score"
        elif run.stalled():
            run.stop_reason = f"no improvement in {run.tracker.budget.patience} steps"
        return bool(run.stop_reason)

    def _score(self, run: OptimizerRun[APEState], text: str) -> float:
        by_id = {ex.doc_id: ex for ex in run.trainset}
        subset = [by_id[d] for d in run.state.subset or []]
        return mean([r.score for r in run.evaluate(with_instruction(run.seed_program, text), subset)])

    def _propose(self, run: OptimizerRun[APEState], state: APEState) -> ScoredInstruction | None:
        """One candidate scored on the subset, or None when its text was rejected (no metric call)."""
        cfg = self.config
        seed_text = run.seed_program.components.get(INSTRUCTION, "")
        if state.round == 0:
            shown = sample_train(run.rng, run.trainset, cfg.pairs_per_prompt, set(state.subset or []))
            if not shown:  # a training set no bigger than the subset: show subset examples after all
                shown = sample_train(run.rng, run.trainset, cfg.pairs_per_prompt)
            messages = induction_messages(
                run.seed_program, [input_output_pair(ex, cfg.pair_max_tokens) for ex in shown]
            )
            old = seed_text
        else:
            old = self._best_text(run, state)
            messages = variation_messages(old)
        text, reason = propose_text(
            self,
            run,
            messages,
            old=old,
            check=cfg.check,
            seed=self.seed * 100_000 + state.round * 1_000 + state.attempts,
            temperature=cfg.temperature,
            avoid=[seed_text, *(e.text for e in state.pool)],
        )
        if reason:
            run.emit(Rejected(component_name=INSTRUCTION, round=state.round, text=text, reason=reason))
            return None
        score = self._score(run, text)
        run.emit(InstructionScored(component_name=INSTRUCTION, round=state.round, text=text, score=score))
        return ScoredInstruction(text, score, candidate=None, round=state.round)

    def _best_text(self, run: OptimizerRun[APEState], state: APEState) -> str:
        """The instruction to vary: the best on validation, else the best on the subset."""
        best = run.best()
        if best.index != 0:
            return best.program.components.get(INSTRUCTION, "")
        if state.pool:
            return max(state.pool, key=lambda e: e.score).text
        return run.seed_program.components.get(INSTRUCTION, "")


__all__ = ["APE", "APEConfig"]
