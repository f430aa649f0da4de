"""GEPA for extraction: reflective, targeted prompt evolution on a per-example Pareto front.

Each step: pick a parent from the validation Pareto front (weighted by examples it wins), run it on
a training minibatch, choose the component to change from the fields that fail most, propose a
small edit (one rule for one field, a better instruction, or a worked demo), accept it only if it
beats the parent on that same minibatch, then score it on validation. Every few steps, a merge
combines two candidates that changed different components. Every decision is a small class that
can be swapped: `ParentSelector`, `MinibatchSampler`, `ComponentChooser`, `Acceptance`, `Merger`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ieflow.datasets import Example
from ieflow.optimize.base import Candidate, Optimizer, OptimizerRun
from ieflow.optimize.evaluator import ExampleResult
from ieflow.optimize.lessons import Lesson, Verdict
from ieflow.optimize.pareto import sample_from_front
from ieflow.optimize.proposals import (
    FieldFacts,
    error_summary,
    field_facts,
    formats_from_facts,
    with_demo,
)
from ieflow.optimize.reflection import (
    Proposal,
    ProposalCheck,
    Rejection,
    clean_reply,
    failure_lines,
    field_rule_messages,
    instruction_messages,
    with_rule,
)
from ieflow.optimize.run_log import EditTried, MergeTried, Rejected, Skipped
from ieflow.optimize.state import GEPAState
from ieflow.program import FIELD_PREFIX, INSTRUCTION

DEMOS = "demos"
FORMATS = "formats"


# -- the swappable decisions -----------------------------------------------------------------------


class ParetoParentSelector:
    """GEPA's choice: a candidate on the per-example front, with weight = examples it wins."""

    def select(self, run: OptimizerRun) -> Candidate:
        index = sample_from_front([c.val_scores for c in run.candidates], run.rng)
        return run.candidates[index]


class BestParentSelector:
    """Greedy alternative: always the best candidate on validation."""

    def select(self, run: OptimizerRun) -> Candidate:
        return run.best()


class MinibatchSampler:
    """Epoch-wise shuffled minibatches of the training set; its position lives in the checkpoint."""

    def __init__(self, size: int) -> None:
        self.size = size

    def next(self, run: OptimizerRun) -> list[Example]:
        state = run.state.minibatch
        ids = [ex.doc_id for ex in run.trainset]
        batch: list[str] = []
        while len(batch) < min(self.size, len(ids)):
            if state.pos >= len(state.order):
                order = list(ids)
                run.rng.shuffle(order)
                state.order, state.pos = order, 0
            doc = state.order[state.pos]
            state.pos += 1
            if doc not in batch:
                batch.append(doc)
        by_id = {ex.doc_id: ex for ex in run.trainset}
        return [by_id[d] for d in batch]


class FailingFieldChooser:
    """Choose the component to change from the fields that fail most on the minibatch.

    A field's weight is its failure mass (sum of 1 - score) divided by 1 + the number of proposals
    already tried for it on this parent, so a field that resists edits yields to the next one.
    With some probability (and always when nothing fails field-wise but answers fail to parse)
    the instruction or the demos are chosen instead.
    """

    def __init__(self, demo_rate: float = 0.2, instruction_rate: float = 0.1, max_demos: int = 2) -> None:
        self.demo_rate = demo_rate
        self.instruction_rate = instruction_rate
        self.max_demos = max_demos

    def choose(self, run: OptimizerRun, parent: Candidate, results: list[ExampleResult]) -> str | None:
        tried = run.state.tried_on(parent.program.hash)
        if any(r.error for r in results) and run.rng.random() < 0.5:
            return INSTRUCTION
        roll = run.rng.random()
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
        return run.rng.choices(names, weights=[weights[n] for n in names], k=1)[0]


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


class Merger:
    """Combine two front candidates that changed different components since a common ancestor."""

    def pick(self, run: OptimizerRun) -> tuple[Candidate, Candidate, dict[str, Any]] | None:
        pool = sorted(run.candidates, key=lambda c: -c.val_score)[:6]
        tried = set(run.state.merges_tried)
        for i, a in enumerate(pool):
            for b in pool[i + 1 :]:
                pair = tuple(sorted((a.index, b.index)))
                if pair in tried:
                    continue
                ancestor = _common_ancestor(run, a.index, b.index)
                if ancestor is None or ancestor in (a.index, b.index):
                    continue
                base = run.candidates[ancestor].program
                changes_a = _changed(base, a.program)
                changes_b = _changed(base, b.program)
                if not changes_a or not changes_b or set(changes_a) & set(changes_b):
                    continue
                run.state.merges_tried.append(pair)
                texts = {k: v for k, v in changes_b.items() if k not in (DEMOS, FORMATS)}
                merged = a.program.replace(components=texts)
                if DEMOS in changes_b:
                    merged = merged.replace(demos=b.program.demos)
                if FORMATS in changes_b:
                    merged = merged.replace(formats={**a.program.formats, **b.program.formats})
                return a, b, {"program": merged, "ancestor": ancestor}
        return None


def _changed(base: Any, program: Any) -> dict[str, str]:
    """Components changed since `base`; demos and formats count as one component each."""
    out = {k: v for k, v in program.components.items() if base.components.get(k) != v}
    if program.demos != base.demos:
        out[DEMOS] = ""
    if program.formats != base.formats:
        out[FORMATS] = ""
    return out


def _ancestors(run: OptimizerRun, index: int) -> list[int]:
    seen, stack = [], [index]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.append(current)
            stack.extend(run.candidates[current].parents)
    return seen


def _common_ancestor(run: OptimizerRun, a: int, b: int) -> int | None:
    shared = set(_ancestors(run, a)) & set(_ancestors(run, b))
    return max(shared) if shared else None


# -- the optimizer ---------------------------------------------------------------------------------


@dataclass
class GEPAConfig:
    minibatch_size: int = 6
    max_demos: int = 2
    demo_max_tokens: int = 350
    merge_every: int = 4
    max_steps: int | None = None
    temperature: float = 0.7
    propose_formats: bool = True  # try "copy as printed, convert in code" where the data supports it
    check: ProposalCheck = field(default_factory=ProposalCheck)


class GEPA(Optimizer):
    name = "gepa"
    State = GEPAState

    def __init__(
        self,
        config: GEPAConfig | None = None,
        *,
        parent_selector: Any = None,
        component_chooser: Any = None,
        acceptance: Any = None,
        merger: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.config = config or GEPAConfig()
        self.parent_selector = parent_selector or ParetoParentSelector()
        self.sampler = MinibatchSampler(self.config.minibatch_size)
        self.chooser = component_chooser or FailingFieldChooser(max_demos=self.config.max_demos)
        self.acceptance = acceptance or MinibatchAcceptance()
        self.merger = merger if merger is not None else Merger()
        self._facts: tuple[OptimizerRun, dict[str, FieldFacts]] | None = None

    def slack_calls(self) -> int:
        return self.config.minibatch_size

    def optimize(self, run: OptimizerRun) -> None:
        cfg = self.config
        while True:
            if run.stopping(cfg.max_steps):
                return
            run.tracker.check(cfg.minibatch_size)
            run.step += 1
            if self.merger and cfg.merge_every and run.step % cfg.merge_every == 0 and self._merge(run):
                run.checkpoint()
                continue
            self._reflective_step(run)
            run.checkpoint()

    def _reflective_step(self, run: OptimizerRun) -> None:
        parent = self.parent_selector.select(run)
        batch = self.sampler.next(run)
        parent_results = run.evaluate(parent.program, batch)
        component = self.chooser.choose(run, parent, parent_results)
        if component is None:
            run.emit(Skipped(parent=parent.index, reason="parent is perfect on the minibatch"))
            return
        tried = run.state.tried_on(parent.program.hash)
        tried[component] = tried.get(component, 0) + 1
        proposal = self.propose(run, parent, component, batch, parent_results)
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

    def _ask_text(self, run: OptimizerRun, messages: list[dict]) -> tuple[str, bool]:
        # The seed varies per step so a repeated question gets a fresh answer, and replays exactly
        # (from the LM cache) when a killed run resumes.
        response = self.ask_reflection_model(
            run, messages, temperature=self.config.temperature, seed=self.seed * 100_000 + run.step
        )
        if response is None:
            return "", False
        return clean_reply(response.text), response.finish_reason == "length"

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
        examples = {ex.doc_id: ex for ex in batch}
        failures = failure_lines(path, results, examples)
        tried = run.lessons.edits_that_did_not_help(component)
        fact = self._field_facts(run).get(path)
        facts, from_facts = (fact.text(), fact.rule()) if fact else ("", "")
        if tried and from_facts and not any(from_facts in t for t in tried):
            # The reflection model's own rule for this field did not help: try the value-free fact
            # computed from the training data as the rule (weak models garble it when rephrasing).
            rule, truncated = from_facts, False
        else:
            rule, truncated = self._ask_text(
                run, field_rule_messages(parent.program, path, failures, tried, facts)
            )
        old = parent.program.components.get(component, "")
        reason = self.config.check.check_text(rule, old, run.trainset, truncated)
        if reason:
            return Rejection(component, reason)
        program = with_rule(parent.program, path, rule)
        reason = self.config.check.check_growth(run.seed_program, program)
        if reason:
            return Rejection(component, reason)
        return Proposal(component, program, f'rule "{rule}"', rule)

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
        tried = run.lessons.edits_that_did_not_help(INSTRUCTION)
        text, truncated = self._ask_text(run, instruction_messages(parent.program, summary, tried))
        old = parent.program.components.get(INSTRUCTION, "")
        reason = self.config.check.check_text(text, old, run.trainset, truncated)
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
        picked = self.merger.pick(run)
        if picked is None:
            return False
        a, b, info = picked
        merged = info["program"]
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
        run.emit(MergeTried(parents=[a.index, b.index], ancestor=info["ancestor"], accepted=accepted))
        if accepted:
            run.add_candidate(merged, [a.index, b.index], "merge", f"merge of {a.index} and {b.index}")
        return True


__all__ = ["GEPA", "BestParentSelector", "FailingFieldChooser", "GEPAConfig", "Merger", "MinibatchAcceptance"]
