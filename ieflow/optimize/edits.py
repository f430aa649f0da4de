"""Edits to a program, and the proposal that carries one: a rule added to a field, a new
instruction, a worked demo; plus the one checked call that asks the proposal model for a text.

A `Proposal` carries the edited program and what changed as data (component, summary, text), so the
run log and the lessons never parse a sentence back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ieflow.datasets import Example
from ieflow.optimize.checks import WORD, ProposalCheck, clean_reply, normalized_words
from ieflow.optimize.facts import FieldFacts
from ieflow.optimize.prompts import field_rule_messages
from ieflow.program import FIELD_PREFIX, INSTRUCTION, Demo, ExtractionProgram
from ieflow.schema import field_schema

if TYPE_CHECKING:  # base imports the optimizers' shared pieces; these are only annotations here
    from ieflow.optimize.base import Candidate, Optimizer, OptimizerRun


@dataclass(frozen=True)
class Proposal:
    component: str
    program: ExtractionProgram
    summary: str  # what changed, one line (goes into the history and the lesson log)
    text: str = ""  # the new rule or instruction text, empty for demo changes
    grounded: bool = False  # computed from the training data (an output format), not model-written


@dataclass(frozen=True)
class Rejection:
    component: str
    reason: str


# -- edits ----------------------------------------------------------------------------------------


def with_rule(program: ExtractionProgram, path: str, rule: str, max_words: int = 70) -> ExtractionProgram:
    """The field's description with `rule` appended; when too long, the newest rule replaces older
    learned ones (the schema's own description is always kept)."""
    key = FIELD_PREFIX + path
    original = str(field_schema(program.schema, path).get("description", "")).strip()
    current = program.components.get(key, "").strip()
    combined = f"{current} {rule}".strip()
    if len(WORD.findall(combined)) > max_words:
        combined = f"{original} {rule}".strip()
    return program.replace(components={key: combined})


def with_instruction(program: ExtractionProgram, text: str) -> ExtractionProgram:
    return program.replace(components={INSTRUCTION: text})


def make_demo(program: ExtractionProgram, example: Example, max_tokens: int) -> Demo:
    """A worked demo: the document as `program` reads it, within `max_tokens` (so prompts stay short:
    for a long document under the `select` strategy, the chunks that answer the fields, not only its
    head, which may not hold the values the gold record shows), and its gold record."""
    from ieflow.extraction import document_view

    text, _ = document_view(program, example.text, max_tokens)
    return Demo(doc_id=example.doc_id, text=text, record=example.gold)


def with_demos(program: ExtractionProgram, examples: list[Example], max_tokens: int) -> ExtractionProgram:
    return program.replace(demos=[make_demo(program, ex, max_tokens) for ex in examples])


def with_demo(
    program: ExtractionProgram, example: Example, max_demos: int, max_tokens: int, slot: int
) -> ExtractionProgram:
    """Add `example` as a worked demo (see `make_demo`), replacing demo `slot` when full."""
    demo = make_demo(program, example, max_tokens)
    demos = [d for d in program.demos if d.doc_id != example.doc_id]
    if len(demos) >= max_demos:
        demos[slot % len(demos)] = demo
    else:
        demos.append(demo)
    return program.replace(demos=demos)


def sample_train(
    rng: random.Random, trainset: list[Example], size: int, exclude: set[str] | None = None
) -> list[Example]:
    pool = [ex for ex in trainset if ex.doc_id not in (exclude or set())]
    return rng.sample(pool, min(size, len(pool)))


# -- proposing ------------------------------------------------------------------------------------


def propose_text(
    optimizer: Optimizer,
    run: OptimizerRun,
    messages: list[dict[str, str]],
    *,
    old: str,
    check: ProposalCheck,
    seed: int,
    temperature: float,
    avoid: list[str] | None = None,
) -> tuple[str, str | None]:
    """Ask once, clean the reply, check it. Returns (text, rejection reason or None).

    `seed` must differ per call (fresh answers) and be a pure function of the run's position
    (a resumed run replays the same calls from the LM cache)."""
    response = optimizer.ask_reflection_model(run, messages, temperature=temperature, seed=seed)
    if response is None:
        return "", "proposal model failed"
    text = clean_reply(response.text)
    reason = check.check_text(text, old, run.trainset, response.finish_reason == "length")
    if reason is None and normalized_words(text) in {normalized_words(a) for a in avoid or []}:
        reason = "proposal repeats an earlier candidate"
    return text, reason


def propose_field_rule(
    optimizer: Optimizer,
    run: OptimizerRun,
    parent: Candidate,
    path: str,
    failures: list[str],
    *,
    check: ProposalCheck,
    temperature: float,
    fact: FieldFacts | None = None,
) -> Proposal | Rejection:
    """One rule for the field at `path`, from the reflection model shown `failures` (and the
    value-free `fact` about the field, when given), checked and applied to the parent.

    When rules the model wrote for this field already failed, the fact's own rule is tried instead
    of asking again (weak models garble a fact when rephrasing it)."""
    component = FIELD_PREFIX + path
    tried = run.lessons.edits_that_did_not_help(component)
    facts, from_facts = (fact.text(), fact.rule()) if fact else ("", "")
    old = parent.program.components.get(component, "")
    if tried and from_facts and not any(from_facts in t for t in tried):
        rule, reason = from_facts, check.check_text(from_facts, old, run.trainset, False)
    else:
        messages = field_rule_messages(parent.program, path, failures, tried, facts)
        seed = optimizer.seed * 100_000 + run.step
        rule, reason = propose_text(
            optimizer, run, messages, old=old, check=check, seed=seed, temperature=temperature
        )
    if reason:
        return Rejection(component, reason)
    program = with_rule(parent.program, path, rule)
    reason = check.check_growth(run.seed_program, program)
    if reason:
        return Rejection(component, reason)
    return Proposal(component, program, f'rule "{rule}"', rule)


__all__ = [
    "Proposal",
    "Rejection",
    "make_demo",
    "propose_field_rule",
    "propose_text",
    "sample_train",
    "with_demo",
    "with_demos",
    "with_instruction",
    "with_rule",
]
