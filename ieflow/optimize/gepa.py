"""GEPA for extraction: reflective, targeted prompt evolution on a per-example Pareto front.

Each step: pick a parent from the validation Pareto front (weighted by examples it wins), run it on
a training minibatch, choose the component to change from the fields that fail most, propose a
small edit (one rule for one field, a better instruction, or a worked demo), accept it only if it
beats the parent on that same minibatch, then score it on validation. Every few steps, a merge
combines two candidates that changed different components. Every decision is a small class that
can be swapped: the `ParentSelector`, `MinibatchSampler`, `ComponentChooser`, `Acceptance` and
`Merger` protocols of strategies.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ieflow.datasets import Example
from ieflow.optimize.base import Candidate, Optimizer, OptimizerRun
from ieflow.optimize.checks import ProposalCheck
from ieflow.optimize.edits import Proposal, Rejection, propose_field_rule, propose_text, with_demo
from ieflow.optimize.evaluator import ExampleResult
from ieflow.optimize.facts import FieldFacts, field_facts, formats_from_facts
from ieflow.optimize.lessons import Lesson, Verdict
from ieflow.optimize.prompts import error_summary, failure_lines, instruction_messages
from ieflow.optimize.retrieval import propose_strategy, retrieval_misses
from ieflow.optimize.run_log import EditTried, MergeTried, Rejected, Skipped
from ieflow.optimize.state import GEPAState
from ieflow.optimize.strategies import (
    Acceptance,
    AncestorMerger,
    ComponentChooser,
    EpochMinibatches,
    FailingFieldChooser,
    Merger,
    MinibatchAcceptance,
    ParentSelector,
    ParetoParentSelector,
)
from ieflow.program import DEMOS, FIELD_PREFIX, INSTRUCTION
from ieflow.strategy import STRATEGY

# -- the optimizer ---------------------------------------------------------------------------------


@dataclass
class GEPAConfig:
    minibatch_size: int = 6
    max_demos: int = 2
    demo_max_tokens: int = 350
    merge_every: int = 4
    max_steps: int | None = None
    # Stop after this many steps in a row that scored nothing new: every proposal rejected before
    # scoring, or the parent perfect on an already-scored minibatch. Such steps spend no metric
    # call, so without this a run whose proposals are all refused would ask the reflection model
    # forever and never reach its budget.
    max_idle_steps: int = 20
    temperature: float = 0.7
    propose_formats: bool = True  # try "copy as printed, convert in code" where the data supports it
    # On long documents: when failing fields' answers were in no part read, first try reading more
    # (a strategy edit, once per parent; see optimize/retrieval.py).
    propose_strategy: bool = True
    check: ProposalCheck = field(default_factory=ProposalCheck)


class GEPA(Optimizer):
    name = "gepa"
    State = GEPAState

    def __init__(
        self,
        config: GEPAConfig | None = None,
        *,
        parent_selector: ParentSelector | None = None,
        component_chooser: ComponentChooser | None = None,
        acceptance: Acceptance | None = None,
        merger: Merger | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.config = config or GEPAConfig()
        self.parent_selector = parent_selector or ParetoParentSelector()
        self.sampler = EpochMinibatches(self.config.minibatch_size)
        self.chooser = component_chooser or FailingFieldChooser()
        self.acceptance = acceptance or MinibatchAcceptance()
        self.merger = merger if merger is not None else AncestorMerger()
        self._facts: tuple[OptimizerRun, dict[str, FieldFacts]] | None = None

    def slack_calls(self) -> int:
        return self.config.minibatch_size

    def optimize(self, run: OptimizerRun) -> None:
        cfg = self.config
        while True:
            if run.stopping(cfg.max_steps):
                return
            if run.state.idle >= cfg.max_idle_steps:
                run.stop_reason = f"{cfg.max_idle_steps} steps in a row scored nothing new"
                return
            run.tracker.check(cfg.minibatch_size)
            run.step += 1
            calls_before = run.tracker.metric_calls
            merged = self.merger and cfg.merge_every and run.step % cfg.merge_every == 0 and self._merge(run)
            if not merged:
                self._reflective_step(run)
            run.state.idle = 0 if run.tracker.metric_calls > calls_before else run.state.idle + 1
            run.checkpoint()

    def _reflective_step(self, run: OptimizerRun) -> None:
        parent = self.parent_selector.select(run.pool, run.rng)
        batch = self.sampler.next(run.trainset, run.rng, run.state.minibatch)
        parent_results = run.evaluate(parent.program, batch)
        tried = run.state.tried_on(parent.program.hash)
        proposal = self._strategy_proposal(parent, batch, parent_results, tried)
        component = STRATEGY if proposal else self.chooser.choose(parent, parent_results, tried, run.rng)
        if component is None:
            run.emit(Skipped(parent=parent.index, reason="parent is perfect on the minibatch"))
            return
        tried[component] = tried.get(component, 0) + 1
        proposal = proposal or self.propose(run, parent, component, batch, parent_results)
        if isinstance(proposal, Rejection):
            run.emit(Rejected(parent=parent.index, component_name=component, reason=proposal.reason))
            return
        child_results = run.evaluate(proposal.program, batch)
        before = sum(r.score for r in parent_results) / len(batch)
        after = sum(r.score for r in child_results) / len(batch)
        accepted = self.acceptance.accept(parent_results, child_results, proposal)
        run.record_lesson(Lesson(component, proposal.summary, Verdict.of(accepted), before, after))
        run.emit(
            EditTried(
                parent=parent.index,
                component_name=component,
                summary=proposal.summary,
                minibatch_before=before,
                minibatch_after=after,
                accepted=accepted,
            )
        )
        if accepted:
            run.add_candidate(proposal.program, [parent.index], component, proposal.summary)

    # -- proposals --------------------------------------------------------------------------------

    def _strategy_proposal(
        self, parent: Candidate, batch: list[Example], results: list[ExampleResult], tried: dict[str, int]
    ) -> Proposal | Rejection | None:
        """A strategy edit when failing fields' answers were never read, tried once per parent; None
        when there is no such failure (always on documents that fit: no random draw is spent, so
        runs on short documents are unchanged)."""
        if not self.config.propose_strategy or tried.get(STRATEGY):
            return None
        misses = retrieval_misses(parent.program, batch, results)
        return propose_strategy(parent.program, misses) if misses else None

    def propose(
        self,
        run: OptimizerRun,
        parent: Candidate,
        component: str,
        batch: list[Example],
        results: list[ExampleResult],
    ) -> Proposal | Rejection:
        if component == DEMOS:
            return self._propose_demo(run, parent, batch, results)
        if component == INSTRUCTION:
            return self._propose_instruction(run, parent, batch, results)
        return self._propose_field_rule(run, parent, component, batch, results)

    def _propose_field_rule(
        self,
        run: OptimizerRun,
        parent: Candidate,
        component: str,
        batch: list[Example],
        results: list[ExampleResult],
    ) -> Proposal | Rejection:
        path = component[len(FIELD_PREFIX) :]
        if self.config.propose_formats and (found := self._propose_format(run, parent, path)):
            return found
        failures = failure_lines(path, results, {ex.doc_id: ex for ex in batch})
        return propose_field_rule(
            self,
            run,
            parent,
            path,
            failures,
            check=self.config.check,
            temperature=self.config.temperature,
            fact=self._field_facts(run).get(path),
        )

    def _propose_format(self, run: OptimizerRun, parent: Candidate, path: str) -> Proposal | None:
        """Ask for the field as printed and convert it in code, when the training documents say how
        it is printed (e.g. day-first dates). Every other field the data gives the same format goes
        in the same proposal (flight_from and flight_to: the documents print both month-first), so
        one minibatch sees the whole effect. Tried once per parent and field: no reflection call is
        needed, and no rule could do it, since weak students do not convert dates as told."""
        facts = self._field_facts(run)
        suggested = formats_from_facts(facts.values())
        name = suggested.get(path)
        tried = run.state.formats_tried

        def open_for(p: str) -> bool:  # the parent lacks this format and it was not tried on it
            return parent.program.formats.get(p) != name and f"{parent.program.hash}:{p}" not in tried

        if not name or not open_for(path):
            return None
        paths = [path, *sorted(p for p, n in suggested.items() if n == name and p != path and open_for(p))]
        tried.extend(f"{parent.program.hash}:{p}" for p in paths)
        program = parent.program.replace(formats={**parent.program.formats, **dict.fromkeys(paths, name)})
        why = "; ".join(f"{p}: {facts[p].text().rstrip('.')}" for p in paths if p in facts) or "no facts"
        return Proposal(
            FIELD_PREFIX + path, program, f"format {name} for {', '.join(paths)} ({why})", name, grounded=True
        )

    def _field_facts(self, run: OptimizerRun) -> dict[str, FieldFacts]:
        """Value-free facts per field computed from the training data (e.g. "printed day-first
        (DD/MM/YYYY) in 12 of 12 documents"): grounding that a weak reflection model cannot infer.
        Deterministic in the training set, so they are recomputed rather than checkpointed."""
        if self._facts is None or self._facts[0] is not run:
            self._facts = (run, {f.path: f for f in field_facts(run.seed_program, run.trainset[:40])})
        return self._facts[1]

    def _propose_instruction(
        self, run: OptimizerRun, parent: Candidate, batch: list[Example], results: list[ExampleResult]
    ) -> Proposal | Rejection:
        summary = [line.removeprefix("- ") for line in error_summary(parent.program, results)]
        messages = instruction_messages(
            parent.program, summary, run.lessons.edits_that_did_not_help(INSTRUCTION)
        )
        text, reason = propose_text(
            self,
            run,
            messages,
            old=parent.program.components.get(INSTRUCTION, ""),
            check=self.config.check,
            # The seed varies per step so a repeated question gets a fresh answer, and replays
            # exactly (from the LM cache) when a killed run resumes.
            seed=self.seed * 100_000 + run.step,
            temperature=self.config.temperature,
        )
        if reason:
            return Rejection(INSTRUCTION, reason)
        program = parent.program.replace(components={INSTRUCTION: text})
        return Proposal(INSTRUCTION, program, f'instruction "{text}"', text)

    def _propose_demo(
        self, run: OptimizerRun, parent: Candidate, batch: list[Example], results: list[ExampleResult]
    ) -> Proposal | Rejection:
        # The worst-handled example of the minibatch becomes a worked demo (its gold answer shown).
        shown = {d.doc_id for d in parent.program.demos}
        ranked = sorted(
            (r for r in results if r.score < 1.0 and r.doc_id not in shown), key=lambda r: (r.score, r.doc_id)
        )
        if not ranked:
            return Rejection(DEMOS, "no failing example to show as a demo")
        example = next(ex for ex in batch if ex.doc_id == ranked[0].doc_id)
        slot = run.rng.randrange(max(1, self.config.max_demos))
        program = with_demo(parent.program, example, self.config.max_demos, self.config.demo_max_tokens, slot)
        return Proposal(DEMOS, program, f"demo {example.doc_id} (slot {slot})")

    # -- merge ------------------------------------------------------------------------------------

    def _merge(self, run: OptimizerRun) -> bool:
        plan = self.merger.pick(run.pool, run.state.merges_tried)
        if plan is None:
            return False
        a, b, merged = plan.first, plan.second, plan.program
        if any(c.program.hash == merged.hash for c in run.candidates):
            return False
        # Judge on the validation examples where the two parents differ most (they are reused by
        # the full validation pass, so no metric call is wasted).
        order = sorted(run.valset, key=lambda ex: -abs(a.val_scores[ex.doc_id] - b.val_scores[ex.doc_id]))
        subsample = order[: self.config.minibatch_size]
        merged_results = run.evaluate(merged, subsample)
        merged_sum = sum(r.score for r in merged_results)
        best_parent = max(sum(c.val_scores[ex.doc_id] for ex in subsample) for c in (a, b))
        accepted = merged_sum >= best_parent
        run.emit(MergeTried(parents=[a.index, b.index], ancestor=plan.ancestor, accepted=accepted))
        if accepted:
            run.add_candidate(merged, [a.index, b.index], "merge", f"merge of {a.index} and {b.index}")
        return True


__all__ = ["GEPA", "GEPAConfig"]
