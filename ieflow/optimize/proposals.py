"""Shared pieces of the instruction- and demo-searching optimizers (MIPROv2, SIMBA, BootstrapFewShot,
OPRO, APE): grounding facts about the data, short proposal prompts, one checked proposal call, and
demo-set building.

Small local proposal models copy what they are shown and drift when asked open questions
(ENVIRONMENT.md), so the grounding given to them is computed in code and names no training value
(`data_summary`: "date is printed day-first in 6 of 6 documents"), each prompt asks for one
instruction, and every reply goes through `clean_reply` and `ProposalCheck` before it costs a
metric call. Reusable parts that already exist live in `reflection.py` and are imported from there.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ieflow.datasets import Example
from ieflow.formats import amount_printed, date_notation, suggest_date_format
from ieflow.optimize.base import Optimizer, OptimizerRun
from ieflow.optimize.evaluator import ExampleResult
from ieflow.optimize.reflection import ProposalCheck, clean_reply, excerpt, value_renderings
from ieflow.program import INSTRUCTION, Demo, ExtractionProgram
from ieflow.schema import field_schema, types_of

_WORD = re.compile(r"\w+", re.UNICODE)
SYSTEM = "You write short, precise instructions for a data-extraction model. Reply with the instruction only."

# MIPROv2-style tips: each proposal call gets one, so the candidates differ in kind, not only in wording.
TIPS = (
    "Say how the trickiest field must be read and written.",
    "Be concise and concrete.",
    "Name the most common mistake and how to avoid it.",
    "Say where in the document the values are usually found.",
)


# -- facts about the data, with no training value in them -------------------------------------------


def values_at(record: Any, path: str) -> list[Any]:
    """The values at a field path (`lines[].name` gives one per item); lists are returned whole."""
    current: list[Any] = [record]
    for part in path.split("."):
        many = part.endswith("[]")
        key = part[:-2] if many else part
        nxt: list[Any] = []
        for value in current:
            if not isinstance(value, dict):
                continue
            child = value.get(key)
            if many and isinstance(child, list):
                nxt.extend(child)
            else:
                nxt.append(child)
        current = nxt
    return current


def field_kind(schema: dict[str, Any], path: str) -> str:
    node = field_schema(schema, path)
    label = " or ".join(t for t in types_of(node) if t != "null") or "value"
    if node.get("format") == "date":
        label += ", YYYY-MM-DD"
    return label


def field_list(program: ExtractionProgram, width: int = 90, limit: int = 14) -> list[str]:
    """One line per field (type and description), capped so long schemas keep prompts short."""
    fields = list(program.field_descriptions().items())
    lines = [
        f"- {path} ({field_kind(program.schema, path)}): {text.strip()[:width]}".rstrip(": ")
        for path, text in fields[:limit]
    ]
    if len(fields) > limit:
        lines.append(f"- ... and {len(fields) - limit} more fields")
    return lines


@dataclass(frozen=True)
class FieldFacts:
    """What the training data says about one field, with no value in it: rendered as text for the
    proposal prompts (`text`), and as a rule the student can follow (`rule`). One structure for
    both, so the rule never has to parse the text."""

    path: str
    n_documents: int
    absent: int | None = None  # documents with no value (None: not counted, as for lists)
    sizes: tuple[int, int] | None = None  # items per document, for a list
    notations: tuple[tuple[str, int], ...] = ()  # every date notation seen, most common first
    n_dates: int = 0
    date_unit: str = "documents"
    is_date: bool = False
    copied: tuple[int, int] | None = None  # (values printed verbatim in the document, values)
    amounts: tuple[int, int] | None = None  # number fields: (printed as two-decimal amounts, values)

    def phrases(self) -> list[str]:
        parts = self._absence() + self._shape()
        if self.copied:
            parts.append(f"printed in the document in {self.copied[0]} of {self.copied[1]} cases")
        return parts

    def text(self) -> str:
        """E.g. "printed day-first (DD/MM/YYYY) in 12 of 12 documents; answer as YYYY-MM-DD."."""
        parts = self.phrases()
        return "; ".join(parts) + "." if parts else ""

    def rule(self) -> str:
        """The facts that prescribe something, as a rule; "" if none does.

        Notations and sizes are kept as stated ("In these documents it is printed day-first ...");
        a verbatim-copy rate becomes "copy it as printed" only when most values are copies, and an
        absence rate becomes "answer null" only when absence is common. "Printed in 0 of 40 cases"
        is a fact for the reflection model, not an instruction: seen on sroie, a rule made of it
        won a 6-example minibatch by chance and cost a validation pass.
        """
        shape = self._shape()
        sentences = [f"In these documents it is {'; '.join(shape)}."] if shape else []
        if self.copied and self.copied[1] and self.copied[0] >= 0.8 * self.copied[1]:
            sentences.append("Copy it exactly as printed in the document.")
        if self.absent and self.absent >= 0.2 * self.n_documents:
            n = self.n_documents
            sentences.append(f"It is absent in {self.absent} of {n} documents: then answer null.")
        return " ".join(sentences)

    def _absence(self) -> list[str]:
        return [f"absent (null) in {self.absent} of {self.n_documents} documents"] if self.absent else []

    def _shape(self) -> list[str]:
        if self.sizes:
            return [f"{self.sizes[0]} to {self.sizes[1]} items per document"]
        if not self.is_date:
            return []
        of = f"of {self.n_dates} {self.date_unit}"
        printed = [f"printed {name} in {count} {of}" for name, count in self.notations[:2]]
        return [*printed, "answer as YYYY-MM-DD"]


def field_facts(program: ExtractionProgram, examples: list[Example]) -> list[FieldFacts]:
    """How gold values relate to the documents, per leaf field (absence, date notation, verbatim
    copies, list sizes). Patterns only: no value is quoted, so a proposer cannot leak one."""
    facts: list[FieldFacts] = []
    n = len(examples)
    for path in program.field_descriptions():
        node = field_schema(program.schema, path)
        kinds = types_of(node)
        if "object" in kinds and "properties" in node:
            continue  # its leaves have their own facts
        per_doc = [(ex, values_at(ex.gold, path)) for ex in examples]
        is_list = "array" in kinds and "[]" not in path
        absent = sum(1 for _, vs in per_doc if all(v in (None, "", []) for v in vs))
        fact = FieldFacts(path, n, absent=None if is_list else absent)
        if is_list:  # lists get a size range instead of an absence count
            sizes = [len(vs[0]) if vs and isinstance(vs[0], list) else 0 for _, vs in per_doc]
            fact = replace(fact, sizes=(min(sizes), max(sizes)) if sizes else (0, 0))
        elif node.get("format") == "date" or _looks_iso(per_doc):
            dates = [(ex, v) for ex, vs in per_doc for v in vs if isinstance(v, str) and v]
            notations: dict[str, int] = {}
            for ex, v in dates:
                if found := date_notation(ex.text, v):
                    notations[found] = notations.get(found, 0) + 1
            ranked = tuple(sorted(notations.items(), key=lambda kv: -kv[1]))
            fact = replace(
                fact,
                is_date=True,
                notations=ranked,
                n_dates=len(dates),
                date_unit="items" if "[]" in path else "documents",
            )
        elif {"string", "number", "integer"} & set(kinds):
            present = [(ex, v) for ex, vs in per_doc for v in vs if v not in (None, "", [])]
            if present:
                copies = sum(1 for ex, v in present if _printed(ex.text, v))
                fact = replace(fact, copied=(copies, len(present)))
            if "number" in kinds and "string" not in kinds:
                numbers = [(ex, v) for ex, vs in per_doc for v in vs if isinstance(v, int | float)]
                fact = replace(
                    fact, amounts=(sum(1 for ex, v in numbers if amount_printed(ex.text, v)), len(numbers))
                )
        if fact.phrases():
            facts.append(fact)
    return facts


def data_summary(program: ExtractionProgram, examples: list[Example], limit: int = 8) -> list[str]:
    """`field_facts` as prompt lines: "- date: printed day-first (DD/MM/YYYY) in 6 of 6 documents; ..."."""
    return [f"- {fact.path}: {fact.text()}" for fact in field_facts(program, examples)][:limit]


def suggest_formats(program: ExtractionProgram, examples: list[Example]) -> dict[str, str]:
    """Output formats the training data supports, per field path (see ieflow/formats.py)."""
    return formats_from_facts(field_facts(program, examples))


def formats_from_facts(facts: Iterable[FieldFacts]) -> dict[str, str]:
    """A date field gets "date:day-first" when most documents print its date day-first, a number
    field "amount:printed" when at least 80% of its values are printed as two-decimal amounts."""
    out: dict[str, str] = {}
    for fact in facts:
        if fact.amounts and fact.amounts[1] and fact.amounts[0] >= 0.8 * fact.amounts[1]:
            out[fact.path] = "amount:printed"
        elif fact.is_date and (name := suggest_date_format(dict(fact.notations))):
            out[fact.path] = name
    return out


def _looks_iso(per_doc: list[tuple[Example, list[Any]]]) -> bool:
    values = [v for _, vs in per_doc for v in vs if isinstance(v, str) and v]
    return bool(values) and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) for v in values)


def _printed(text: str, value: Any) -> bool:
    lowered = text.lower()
    return any(r.lower() in lowered for r in value_renderings(value) if r)


def error_summary(program: ExtractionProgram, results: list[ExampleResult], limit: int = 5) -> list[str]:
    """How a program fails on some examples, one line per failing field with the scorer's feedback
    (which often names the fix, e.g. "day and month are swapped")."""
    lines = []
    errors = sum(1 for r in results if r.error)
    if errors:
        lines.append(f"- {errors} of {len(results)} answers were not valid JSON for the schema")
    for path in program.field_descriptions():
        wrong = [r for r in results if r.fields.get(path, 1.0) < 1.0]
        if wrong:
            feedback = next((f for r in wrong if (f := r.field_details.get(path, {}).get("feedback"))), "")
            hint = _hint(feedback)
            lines.append(f"- {path} wrong in {len(wrong)} of {len(results)}" + (f": {hint}" if hint else ""))
    return lines[:limit]


def _hint(feedback: str) -> str:
    """The scorer's closing "(what is wrong: how to fix it)" clause, only when it quotes no value
    (feedback sentences are "path: predicted X but expected Y (hint).")."""
    found = re.search(r"\(([^()]*)\)\.?$", feedback)
    hint = found.group(1).strip() if found else ""
    return "" if any(q in hint for q in "'\"") or re.search(r"\d", hint) else hint[:140]


def input_output_pair(example: Example, max_tokens: int, max_chars: int = 400) -> str:
    """A short input -> output pair: the head of the document, plus a short window around each
    value the head does not show (so the pair shows where values sit, e.g. a total at the bottom),
    and the gold record (cut for long records: the pair shows the task's shape, not every value)."""
    from ieflow.extraction import head

    text = " ".join(head(example.text, max_tokens).split())
    for value in _leaves(example.gold)[:6]:
        if excerpt(text, value, width=0) is None and len(text) < 4 * max_tokens + 200:
            near = excerpt(example.text, value, width=25)
            text += f" ... {near}" if near else ""
    record = json.dumps(example.gold, ensure_ascii=False)
    if len(record) > max_chars:
        record = record[:max_chars] + " ..."
    return f'Input: "{text}"\nOutput: {record}'


def _leaves(record: Any) -> list[Any]:
    if isinstance(record, dict):
        return [v for value in record.values() for v in _leaves(value)]
    if isinstance(record, list):
        return [v for value in record for v in _leaves(value)]
    return [] if record is None else [record]


# -- the prompts (each asks for one instruction) ------------------------------------------------------


def grounded_instruction_messages(
    program: ExtractionProgram, summary: list[str], errors: list[str], pairs: list[str], tip: str
) -> list[dict[str, str]]:
    """MIPROv2's grounded proposal, cut down for small models: the fields, facts about the data,
    how the current instruction fails, one short example, and one tip."""
    prompt = [
        "A model reads documents and answers with one JSON object with these fields:",
        *field_list(program),
    ]
    if summary:
        prompt += ["", "What the labelled documents show:", *summary]
    if errors:
        prompt += ["", "Mistakes made with the current instruction:", *errors]
    if pairs:
        prompt += ["", "Example:", *pairs]
    prompt += [
        "",
        f'Current instruction: "{program.components.get(INSTRUCTION, "")}"',
        f"Write a better instruction of 1 or 2 sentences. {tip} "
        "Do not copy names, numbers or dates from the example.",
    ]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(prompt)}]


def induction_messages(program: ExtractionProgram, pairs: list[str]) -> list[dict[str, str]]:
    """APE's induction template: the instruction is inferred from input -> output pairs."""
    prompt = [
        "I gave a friend an instruction and some documents. The friend read the instruction and wrote "
        "an output for every document. Here are the input-output pairs:",
        "",
        *pairs,
        "",
        f"The output fields are: {', '.join(program.field_descriptions())}.",
        "What was the instruction? Reply with 1 or 2 sentences that say how to read and write the fields. "
        "Do not copy names, numbers or dates from the pairs.",
    ]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(prompt)}]


def variation_messages(instruction: str) -> list[dict[str, str]]:
    """APE's resampling template: a variation of a good instruction with the same meaning."""
    prompt = (
        "Write a variation of the following instruction that keeps its meaning and every rule in it.\n"
        f'Instruction: "{instruction}"'
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def opro_messages(
    program: ExtractionProgram, history: list[tuple[str, float]], summary: list[str]
) -> list[dict[str, str]]:
    """OPRO's meta-prompt: earlier instructions with their scores, worst first, so the best ones are
    read last; plus facts about the data in place of raw exemplars (shorter, and nothing to copy)."""
    prompt = [
        "A model extracts one JSON record with these fields from each document:",
        *field_list(program, 60),
    ]
    if summary:
        prompt += ["", "What the labelled documents show:", *summary]
    prompt += ["", "Instructions tried so far, with their accuracy (0-100), lowest first:"]
    for text, score in history:
        prompt += [f'text: "{text}"', f"score: {round(100 * score)}"]
    prompt += [
        "",
        "Write a new instruction (1 or 2 sentences) that is different from all of the above and scores "
        "higher than all of them.",
    ]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(prompt)}]


# -- one checked proposal ----------------------------------------------------------------------------


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
    if reason is None and _norm(text) in {_norm(a) for a in avoid or []}:
        reason = "proposal repeats an earlier candidate"
    return text, reason


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def with_instruction(program: ExtractionProgram, text: str) -> ExtractionProgram:
    return program.replace(components={INSTRUCTION: text})


# -- demos ---------------------------------------------------------------------------------------------


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


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


__all__ = [
    "TIPS",
    "FieldFacts",
    "data_summary",
    "error_summary",
    "field_facts",
    "formats_from_facts",
    "grounded_instruction_messages",
    "induction_messages",
    "input_output_pair",
    "make_demo",
    "opro_messages",
    "propose_text",
    "sample_train",
    "values_at",
    "variation_messages",
    "with_demo",
    "with_demos",
    "with_instruction",
]
