"""OPRO: the proposal model reads earlier instructions with their scores and writes a better one.

As in the paper, every instruction is scored on the same fixed training subset (drawn once), so the
scores in the meta-prompt are comparable; the history is shown worst first (the best are read
last, where small models attend most) and capped at `history_size`. An instruction that beats the
best score so far on that subset gets a full validation pass (`add_candidate`). Only the instruction
changes; field descriptions and demos stay the seed's, so history scores measure the instruction.

Small-model adaptations: the meta-prompt carries facts about the data computed in code (no raw
exemplars, so nothing to copy), one instruction is asked per call, and every reply is checked
(`ProposalCheck`, plus no repeat of an instruction already in the history).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ieflow.datasets import Example
from ieflow.optimize.base import Optimizer, OptimizerRun
from ieflow.optimize.checks import ProposalCheck
from ieflow.optimize.edits import propose_text, with_instruction
from ieflow.optimize.evaluator import mean
from ieflow.optimize.facts import data_summary
from ieflow.optimize.lessons import Lesson, Verdict
from ieflow.optimize.prompts import opro_messages
from ieflow.optimize.run_log import InstructionScored, Rejected
from ieflow.optimize.state import OPROState, ScoredInstruction
from ieflow.program import INSTRUCTION


@dataclass
class OPROConfig:
    score_size: int = 6  # the fixed training subset every instruction is scored on
    history_size: int = 8  # scored instructions shown in the meta-prompt (the best ones)
    max_steps: int | None = None
    temperature: float = 1.0  # OPRO samples diverse proposals
    max_idle_steps: int = 8  # stop after this many rejected proposals in a row (they cost no metric call)
    check: ProposalCheck = field(default_factory=ProposalCheck)


class OPRO(Optimizer):
    name = "opro"
    State = OPROState

    def __init__(self, config: OPROConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config or OPROConfig()

    def slack_calls(self) -> int:
        return self.config.score_size

    def optimize(self, run: OptimizerRun[OPROState]) -> None:
        cfg = self.config
        state = run.state
        if state.subset is None:
            ids = [ex.doc_id for ex in run.trainset]
            state.subset = run.rng.sample(ids, min(cfg.score_size, len(ids)))
            state.history = []
            run.checkpoint()
        if not state.history:
            seed_text = run.seed_program.components.get(INSTRUCTION, "")
            state.history.append(ScoredInstruction(seed_text, self._score(run, seed_text), candidate=0))
            run.checkpoint()
        while True:
            if run.stopping(cfg.max_steps):
                return
            if state.idle >= cfg.max_idle_steps:
                run.stop_reason = f"{cfg.max_idle_steps} proposals in a row were rejected"
                return
            run.tracker.check(len(state.subset))
            run.step += 1
            state.idle = 0 if self._step(run, state) else state.idle + 1
            run.checkpoint()

    def _subset(self, run: OptimizerRun[OPROState]) -> list[Example]:
        by_id = {ex.doc_id: ex for ex in run.trainset}
        return [by_id[d] for d in run.state.subset or []]

    def _score(self, run: OptimizerRun[OPROState], text: str) -> float:
        program = with_instruction(run.seed_program, text)
        return mean([r.score for r in run.evaluate(program, self._subset(run))])

    def _step(self, run: OptimizerRun[OPROState], state: OPROState) -> bool:
        """One proposal; False when it was rejected before any metric call."""
        cfg = self.config
        history = state.history
        shown = sorted(history, key=lambda h: (h.score, h.text))[-cfg.history_size :]
        messages = opro_messages(
            run.seed_program,
            [(h.text, h.score) for h in shown],
            data_summary(run.seed_program, run.trainset),
        )
        best = max(history, key=lambda h: h.score)
        text, reason = propose_text(
            self,
            run,
            messages,
            old=best.text,
            check=cfg.check,
            seed=self.seed * 100_000 + run.step,
            temperature=cfg.temperature,
            avoid=[h.text for h in history],
        )
        if reason:
            run.emit(Rejected(component_name=INSTRUCTION, text=text, reason=reason))
            return False
        score = self._score(run, text)
        improved = score > best.score + 1e-9
        entry = ScoredInstruction(text, score)
        history.append(entry)
        run.emit(InstructionScored(component_name=INSTRUCTION, text=text, score=score, improved=improved))
        run.record_lesson(
            Lesson(INSTRUCTION, f'instruction "{text}"', Verdict.of(improved), best.score, score, "subset")
        )
        if improved:
            program = with_instruction(run.seed_program, text)
            if candidate := run.add_candidate(program, [0], INSTRUCTION, f"subset score {score:.2f}"):
                entry.candidate = candidate.index
        return True


__all__ = ["OPRO", "OPROConfig"]
