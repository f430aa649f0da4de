"""SIMBA-style optimization: find the examples where the current program is unstable, and fix one.

Each step: run the best program on a training minibatch several times (itself at temperature 0,
then sampled variants at temperature > 0 with different seeds; each variant is a different program
hash, so its runs are metric calls), rank examples by how much their scores vary (then by how low
they are), and for the hardest one either add it as a worked demo (its gold record) or ask the
proposal model for one rule for its worst field. The edit is accepted when it beats the program on
the same minibatch, then scored on validation.

Why variability: an example the student sometimes gets right is one a small nudge can fix; an
example it always gets wrong may be beyond it, and one it always gets right needs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ieflow.datasets import Example
from ieflow.optimize.base import Candidate, Optimizer, OptimizerRun
from ieflow.optimize.checks import ProposalCheck
from ieflow.optimize.edits import Proposal, Rejection, propose_field_rule, with_demo
from ieflow.optimize.evaluator import ExampleResult, mean, mean_score
from ieflow.optimize.lessons import Lesson, Verdict
from ieflow.optimize.prompts import failure_lines
from ieflow.optimize.run_log import EditTried, Rejected, Skipped
from ieflow.optimize.state import SIMBAState
from ieflow.optimize.strategies import BestParentSelector, EpochMinibatches, ParentSelector
from ieflow.program import DEMOS, ExtractionProgram


@dataclass
class SIMBAConfig:
    minibatch_size: int = 4
    num_variants: int = 3  # runs per example: the program itself plus (n - 1) sampled variants
    variant_temperature: float = 0.7
    demo_rate: float = 0.5  # chance of fixing the hard example with a demo rather than a rule
    max_demos: int = 2
    demo_max_tokens: int = 350
    max_steps: int | None = None
    temperature: float = 0.7  # of the proposal model
    max_idle_steps: int = 8  # stop after this many steps in a row with no edit tried (nothing left to fix)
    check: ProposalCheck = field(default_factory=ProposalCheck)


@dataclass
class HardExample:
    example: Example
    spread: float  # best minus worst score over the variants
    runs: list[ExampleResult]  # one per variant, the program itself first


def variants(program: ExtractionProgram, n: int, temperature: float) -> list[ExtractionProgram]:
    """The program itself, then n - 1 copies sampled at `temperature` with fixed seeds (so a
    resumed run replays them from the caches)."""
    return [program] + [
        program.replace(model_params={**program.model_params, "temperature": temperature, "seed": k})
        for k in range(1, n)
    ]


def hardest(batch: list[Example], runs: list[list[ExampleResult]]) -> HardExample | None:
    """The example whose scores vary most over the variants, then the lowest-scoring; None when
    every variant gets every example right."""
    ranked = []
    for position, example in enumerate(batch):
        per_variant = [variant[position] for variant in runs]
        scores = [r.score for r in per_variant]
        if min(scores) < 1.0:
            ranked.append((-(max(scores) - min(scores)), mean(scores), example.doc_id, position, per_variant))
    if not ranked:
        return None
    spread, _, _, position, per_variant = min(ranked, key=lambda row: row[:3])
    return HardExample(batch[position], -spread, per_variant)


class SIMBA(Optimizer):
    name = "simba"
    State = SIMBAState

    def __init__(
        self,
        config: SIMBAConfig | None = None,
        *,
        parent_selector: ParentSelector | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.config = config or SIMBAConfig()
        self.parent_selector = parent_selector or BestParentSelector()
        self.sampler = EpochMinibatches(self.config.minibatch_size)

    def slack_calls(self) -> int:
        return self.config.minibatch_size

    def optimize(self, run: OptimizerRun) -> None:
        cfg = self.config
        while True:
            if run.stopping(cfg.max_steps):
                return
            if run.state.idle >= cfg.max_idle_steps:
                run.stop_reason = f"{cfg.max_idle_steps} steps in a row found nothing to try"
                return
            # A step runs every variant and the child on one minibatch: stop before starting one that
            # cannot finish, rather than spend calls on half a step.
            run.tracker.check(cfg.minibatch_size * (cfg.num_variants + 1))
            run.step += 1
            run.state.idle = 0 if self._step(run) else run.state.idle + 1
            run.checkpoint()

    def _step(self, run: OptimizerRun) -> bool:
        """One step; False when no edit was tried (nothing hard, or every proposal rejected)."""
        cfg = self.config
        parent = self.parent_selector.select(run.pool, run.rng)
        shown = {d.doc_id for d in parent.program.demos}
        batch = [
            ex
            for ex in self.sampler.next(run.trainset, run.rng, run.state.minibatch)
            if ex.doc_id not in shown
        ]  # a demo is trivially right
        if not batch:
            run.emit(Skipped(parent=parent.index, reason="minibatch holds only the parent's demos"))
            return False
        runs = [
            run.evaluate(p, batch)
            for p in variants(parent.program, cfg.num_variants, cfg.variant_temperature)
        ]
        hard = hardest(batch, runs)
        if hard is None:
            run.emit(Skipped(parent=parent.index, reason="every variant is right on the minibatch"))
            return False
        use_demo = run.rng.random() < cfg.demo_rate  # (the batch holds no example already shown)
        proposal = (
            self._demo(run, parent, hard) if use_demo else self._rule(run, parent, hard, batch, runs[0])
        )
        if isinstance(proposal, Rejection) and not use_demo:
            proposal = self._demo(run, parent, hard)  # no usable rule: the example itself is the fix
        if isinstance(proposal, Rejection):
            run.emit(Rejected(parent=parent.index, component_name=proposal.component, reason=proposal.reason))
            return False
        child = run.evaluate(proposal.program, batch)
        before, after = mean_score(runs[0]), mean_score(child)
        accepted = after > before + 1e-9
        run.record_lesson(Lesson(proposal.component, proposal.summary, Verdict.of(accepted), before, after))
        run.emit(
            EditTried(
                parent=parent.index,
                hard_example=hard.example.doc_id,
                spread=hard.spread,
                component_name=proposal.component,
                summary=proposal.summary,
                minibatch_before=before,
                minibatch_after=after,
                accepted=accepted,
            )
        )
        if accepted:
            run.add_candidate(proposal.program, [parent.index], proposal.component, proposal.summary)
        return True

    def _demo(self, run: OptimizerRun, parent: Candidate, hard: HardExample) -> Proposal | Rejection:
        cfg = self.config
        slot = run.rng.randrange(max(1, cfg.max_demos))
        program = with_demo(parent.program, hard.example, cfg.max_demos, cfg.demo_max_tokens, slot)
        return Proposal(DEMOS, program, f"demo {hard.example.doc_id} (slot {slot})")

    def _rule(
        self,
        run: OptimizerRun,
        parent: Candidate,
        hard: HardExample,
        batch: list[Example],
        baseline: list[ExampleResult],
    ) -> Proposal | Rejection:
        # The field that fails most on the hard example (over its variants); its failures are shown
        # worst variant of the hard example first, then the program's own failures on the minibatch.
        paths = list(parent.program.field_descriptions())
        mass = {p: sum(1.0 - r.fields.get(p, 1.0) for r in hard.runs) for p in paths}
        path = max(paths, key=lambda p: (mass[p], -paths.index(p)))
        if mass[path] <= 0:
            return Rejection(DEMOS, "the hard example fails as a whole (no field to fix)")
        worst = min(hard.runs, key=lambda r: r.fields.get(path, 1.0))
        others = [r for r in baseline if r.doc_id != hard.example.doc_id]
        failures = failure_lines(path, [worst, *others], {ex.doc_id: ex for ex in batch})
        return propose_field_rule(
            self, run, parent, path, failures, check=self.config.check, temperature=self.config.temperature
        )


__all__ = ["SIMBA", "SIMBAConfig", "hardest", "variants"]
