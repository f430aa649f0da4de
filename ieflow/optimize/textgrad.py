"""TextGrad for extraction: textual gradients, a textual gradient-descent (TGD) step, and momentum.

The paper (Yuksekgonul et al., 2024) treats a prompt as a variable in a computation graph: the
forward pass runs it, a loss says in words what went wrong, the backward pass asks an LLM for a
critique of each variable given that loss (the "textual gradient"), and the optimizer's step asks
an LLM to rewrite the variable from its critique; with momentum, the update prompt also shows the
variable's earlier gradients.

Adapted to extraction programs: the variables are the program's parts (the instruction, each
field's description, a date or amount field's output format, the worked demos when the program
has them; `textgrad_variables`). The forward pass is the best program so far on a training
minibatch; the loss is the scorer's per-field feedback on it. Each variable that caused a failure
gets one critique (none for variables without failures); each critique drives one update of its
variable, shown the variable's last `momentum` critiques ("earlier critiques of this variable").
All updates of a step form one child program (TGD updates every parameter with a gradient), which
is accepted when it beats its parent on the same minibatch and then gets a validation pass
(`run.add_candidate`).

Small-model adaptations: only the `max_fields` worst fields are differentiated per step (one
reflection call per variable, twice), critiques are cut to `critique_max_words` words, the rewrite
is one or two sentences checked by `ProposalCheck` (empty, cut off, unchanged, too long, copies a
training value), and formats and demos are updated by choosing from a closed list (a format name,
a demo slot to replace by the worst failing example), not by free text. Ties on the minibatch are
not accepted by default: a tie costs a full validation pass and shows nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ieflow.datasets import Example
from ieflow.optimize.base import Candidate, Optimizer, OptimizerRun
from ieflow.optimize.checkpoint import CheckpointError
from ieflow.optimize.checks import WORD, ProposalCheck
from ieflow.optimize.edits import Proposal, Rejection, propose_text, with_demo
from ieflow.optimize.evaluator import ExampleResult, mean
from ieflow.optimize.lessons import Lesson, Verdict
from ieflow.optimize.prompts_textgrad import Variable, choice_messages, critique_messages, update_messages
from ieflow.optimize.run_log import EditTried, Rejected, RunEvent, Skipped
from ieflow.optimize.state import MinibatchPosition
from ieflow.optimize.strategies import EpochMinibatches, MinibatchAcceptance
from ieflow.optimize.textgrad_variables import variables_with_failures, worst_failing
from ieflow.program import DEMOS, FIELD_PREFIX, INSTRUCTION, OUTPUT_FORMATS, ExtractionProgram


@dataclass
class TextGradConfig:
    minibatch_size: int = 4
    max_fields: int = 2  # field descriptions differentiated per step (the worst on the minibatch)
    momentum: int = 2  # earlier critiques of a variable shown in its update prompt
    critique_max_words: int = 60
    max_demos: int = 2
    demo_max_tokens: int = 350
    max_steps: int | None = None
    max_idle_steps: int = 10  # stop after this many steps in a row that scored nothing new
    temperature: float = 0.7
    accept_ties: bool = False
    check: ProposalCheck = field(default_factory=ProposalCheck)


@dataclass
class TextGradState:
    minibatch: MinibatchPosition = field(default_factory=MinibatchPosition)
    gradients: dict[str, list[str]] = field(default_factory=dict)  # per variable, its last critiques
    idle: int = 0  # steps in a row that spent no metric call

    def to_json(self) -> dict[str, Any]:
        return {
            "minibatch": self.minibatch.to_json(),
            "gradients": {name: list(texts) for name, texts in self.gradients.items()},
            "idle": self.idle,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextGradState:
        gradients = {name: list(texts) for name, texts in data.get("gradients", {}).items()}
        return cls(MinibatchPosition.from_json(data.get("minibatch")), gradients, int(data.get("idle", 0)))

    @classmethod
    def from_v1(cls, state: dict[str, Any]) -> TextGradState:
        raise CheckpointError("no version-1 checkpoints exist for textgrad")


@dataclass
class GradientComputed(RunEvent):
    """The backward pass's critique of one variable (its textual gradient)."""

    KIND: ClassVar[str] = "gradient"
    variable: str
    critique: str

    @property
    def component(self) -> str | None:
        return self.variable


class TextGrad(Optimizer):
    name = "textgrad"
    State = TextGradState

    def __init__(self, config: TextGradConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config or TextGradConfig()
        self.sampler = EpochMinibatches(self.config.minibatch_size)
        self.acceptance = MinibatchAcceptance(grounded_ties=False)

    def slack_calls(self) -> int:
        return self.config.minibatch_size

    def optimize(self, run: OptimizerRun[TextGradState]) -> None:
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
            self._step(run)
            run.state.idle = 0 if run.tracker.metric_calls > calls_before else run.state.idle + 1
            run.checkpoint()

    def _step(self, run: OptimizerRun[TextGradState]) -> None:
        """Forward on a minibatch, backward (critiques), one TGD update, acceptance, validation."""
        parent = run.best()
        batch = self.sampler.next(run.trainset, run.rng, run.state.minibatch)
        results = run.evaluate(parent.program, batch)
        variables = variables_with_failures(parent.program, batch, results, self.config.max_fields)
        if not variables:
            run.emit(Skipped(parent=parent.index, reason="parent is perfect on the minibatch"))
            return
        gradients = self.backward(run, variables)
        proposals = [
            self.update(run, parent, batch, results, variable, gradients[variable.key], number)
            for number, variable in enumerate(variables)
            if variable.key in gradients
        ]
        self._remember(run.state, gradients)
        kept = [p for p in proposals if isinstance(p, Proposal)]
        for rejection in (p for p in proposals if isinstance(p, Rejection)):
            run.emit(
                Rejected(parent=parent.index, component_name=rejection.component, reason=rejection.reason)
            )
        if kept:
            self._try(run, parent, batch, results, kept)

    # -- backward pass ----------------------------------------------------------------------------

    def backward(self, run: OptimizerRun[TextGradState], variables: list[Variable]) -> dict[str, str]:
        """One critique per variable (its textual gradient); a failed or empty reply gives none."""
        out = {}
        for number, variable in enumerate(variables):
            seed = self.seed * 100_000 + run.step * 100 + 2 * number
            response = self.ask_reflection_model(
                run, critique_messages(variable), temperature=self.config.temperature, seed=seed
            )
            critique = clean_critique(response.text if response else "", self.config.critique_max_words)
            if not critique:
                run.emit(Rejected(component_name=variable.key, reason="empty critique"))
                continue
            out[variable.key] = critique
            run.emit(GradientComputed(variable=variable.key, critique=critique))
        return out

    def _remember(self, state: TextGradState, gradients: dict[str, str]) -> None:
        """Momentum: keep each variable's last `momentum` critiques (after this step's updates)."""
        for name, critique in gradients.items():
            state.gradients[name] = [*state.gradients.get(name, []), critique][
                -max(1, self.config.momentum) :
            ]

    # -- update step ------------------------------------------------------------------------------

    def update(
        self,
        run: OptimizerRun[TextGradState],
        parent: Candidate,
        batch: list[Example],
        results: list[ExampleResult],
        variable: Variable,
        critique: str,
        number: int,
    ) -> Proposal | Rejection:
        """The variable rewritten from its critique and the momentum history, applied to `parent`.
        `number` is the variable's place in this step (its critique was call 2 * number)."""
        momentum = self.config.momentum
        earlier = run.state.gradients.get(variable.key, [])[-momentum:] if momentum else []
        seed = self.seed * 100_000 + run.step * 100 + 2 * number + 1
        if variable.options:
            return self._choose(run, parent, batch, results, variable, critique, earlier, seed)
        messages = update_messages(variable, critique, earlier)
        cfg = self.config
        text, reason = propose_text(
            self, run, messages, old=variable.value, check=cfg.check, seed=seed, temperature=cfg.temperature
        )
        if reason:
            return Rejection(variable.name, reason)
        program = parent.program.replace(components={variable.name: text})
        what = (
            "instruction"
            if variable.name == INSTRUCTION
            else f"description of {variable.name[len(FIELD_PREFIX) :]}"
        )
        return Proposal(variable.name, program, f'{what} "{text}"', text)

    def _choose(
        self,
        run: OptimizerRun[TextGradState],
        parent: Candidate,
        batch: list[Example],
        results: list[ExampleResult],
        variable: Variable,
        critique: str,
        earlier: list[str],
        seed: int,
    ) -> Proposal | Rejection:
        """A format name or a demo slot, chosen by the reflection model from the variable's options."""
        messages = choice_messages(variable, critique, earlier)
        response = self.ask_reflection_model(run, messages, temperature=self.config.temperature, seed=seed)
        if response is None:
            return Rejection(variable.name, "proposal model failed")
        choice = chosen_option(response.text, variable.options)
        if choice is None:
            return Rejection(variable.name, "no option chosen")
        if variable.name == OUTPUT_FORMATS:
            program = parent.program.replace(formats={**parent.program.formats, variable.target: choice})
            return Proposal(OUTPUT_FORMATS, program, f"format {choice} for {variable.target}", choice)
        example = worst_failing(batch, results, {d.doc_id for d in parent.program.demos})
        if example is None:
            return Rejection(DEMOS, "no failing example to show as a demo")
        cfg = self.config
        program = with_demo(parent.program, example, cfg.max_demos, cfg.demo_max_tokens, int(choice) - 1)
        return Proposal(DEMOS, program, f"demo {example.doc_id} (slot {choice})")

    # -- acceptance -------------------------------------------------------------------------------

    def _try(
        self,
        run: OptimizerRun[TextGradState],
        parent: Candidate,
        batch: list[Example],
        results: list[ExampleResult],
        proposals: list[Proposal],
    ) -> None:
        """Apply every update to the parent; keep the child if it wins on the minibatch."""
        program = combine(parent.program, proposals)
        names = "+".join(p.component for p in proposals)
        if reason := self.config.check.check_growth(run.seed_program, program):
            run.emit(Rejected(parent=parent.index, component_name=names, reason=reason))
            return
        child = run.evaluate(program, batch)
        before, after = mean([r.score for r in results]), mean([r.score for r in child])
        accepted = self.acceptance.accept(results, child, None) or (
            self.config.accept_ties and after >= before - 1e-9
        )
        for proposal in proposals:
            run.record_lesson(
                Lesson(proposal.component, proposal.summary, Verdict.of(accepted), before, after)
            )
        summary = "; ".join(p.summary for p in proposals)
        run.emit(
            EditTried(
                parent=parent.index,
                component_name=names,
                summary=summary,
                minibatch_before=before,
                minibatch_after=after,
                accepted=accepted,
            )
        )
        if accepted:
            run.add_candidate(program, [parent.index], names, summary)


def combine(program: ExtractionProgram, proposals: list[Proposal]) -> ExtractionProgram:
    """The parent with every proposal's change applied (each changes a different variable)."""
    for proposal in proposals:
        changed = proposal.program
        if proposal.component == OUTPUT_FORMATS:
            program = program.replace(formats=changed.formats)
        elif proposal.component == DEMOS:
            program = program.replace(demos=changed.demos)
        else:
            program = program.replace(components={proposal.component: changed.components[proposal.component]})
    return program


def clean_critique(text: str, max_words: int) -> str:
    """The critique on one line, at most `max_words` words; empty when it says nothing (< 3 words)."""
    text = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    words = text.split()
    if len(WORD.findall(text)) < 3:
        return ""
    return " ".join(words[:max_words])


def chosen_option(reply: str, options: tuple[str, ...]) -> str | None:
    """The first of `options` the reply names (as a whole word), or None ("none", or nothing)."""
    found = [
        (m.start(), o) for o in options if (m := re.search(rf"(?<![\w:-]){re.escape(o)}(?![\w:-])", reply))
    ]
    return min(found)[1] if found else None


__all__ = [
    "GradientComputed",
    "TextGrad",
    "TextGradConfig",
    "TextGradState",
    "chosen_option",
    "clean_critique",
]
