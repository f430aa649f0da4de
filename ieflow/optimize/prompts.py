"""The prompts to the proposal model: each asks for one small thing (one rule for one field, one
instruction), shows the failures with the document text where the value sits, and names no
training value of its own.
"""

from __future__ import annotations

import json
import re

from ieflow.datasets import Example
from ieflow.optimize.evaluator import ExampleResult
from ieflow.optimize.facts import excerpt, field_kind, leaf_values
from ieflow.program import FIELD_PREFIX, INSTRUCTION, ExtractionProgram
from ieflow.schema import field_schema, types_of
from ieflow.scoring.invented import NOWHERE

SYSTEM = "You write short, precise instructions for a data-extraction model. Reply with the instruction only."

# MIPROv2-style tips: each proposal call gets one, so the candidates differ in kind, not only in wording.
TIPS = (
    "Say how the trickiest field must be read and written.",
    "Be concise and concrete.",
    "Name the most common mistake and how to avoid it.",
    "Say where in the document the values are usually found.",
)


# -- what the proposer is shown -------------------------------------------------------------------


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
    for value in leaf_values(example.gold)[:6]:
        if excerpt(text, value, width=0) is None and len(text) < 4 * max_tokens + 200:
            near = excerpt(example.text, value, width=25)
            text += f" ... {near}" if near else ""
    record = json.dumps(example.gold, ensure_ascii=False)
    if len(record) > max_chars:
        record = record[:max_chars] + " ..."
    return f'Input: "{text}"\nOutput: {record}'


def failure_lines(
    path: str, results: list[ExampleResult], examples: dict[str, Example], limit: int = 3
) -> list[str]:
    """One numbered block per failure of `path`: the document excerpt, the answer and the fix."""
    lines = []
    failing = [r for r in results if r.fields.get(path, 1.0) < 1.0]
    for number, result in enumerate(failing[:limit], 1):
        detail = result.field_details.get(path, {})
        expected, predicted = detail.get("expected"), detail.get("predicted")
        example = examples.get(result.doc_id)
        near = (excerpt(example.text, expected) or excerpt(example.text, predicted)) if example else None
        block = f"{number}."
        if near:
            block += f' Document text: "...{near[:220]}..."\n  '
        block += f"The model answered {json.dumps(predicted, ensure_ascii=False)[:80]}; "
        block += f"correct is {json.dumps(expected, ensure_ascii=False)[:80]}."
        if detail.get("feedback"):
            block += f" ({detail['feedback'][:160]})"
        if detail.get("invented"):
            block += f" {NOWHERE}"
        lines.append(block)
    return lines


# -- the prompts ----------------------------------------------------------------------------------


def field_rule_messages(
    program: ExtractionProgram, path: str, failures: list[str], tried: list[str], facts: str = ""
) -> list[dict[str, str]]:
    node = field_schema(program.schema, path)
    description = program.components.get(FIELD_PREFIX + path, "")
    kind = "/".join(types_of(node)) if "type" in node else ""  # declared types, null included
    prompt = [
        f'A model extracts the field "{path}" ({kind or "value"}) from documents.',
        f'Its current instruction for this field: "{description}"',
        "",
        "It made these mistakes:",
        *failures,
    ]
    if facts:
        prompt += ["", f"What the training documents show about this field: {facts}"]
    if tried:
        prompt += ["", "Rules already tried that did NOT help:", *[f"- {t}" for t in tried[-2:]]]
    prompt += [
        "",
        f'Write ONE short rule (one sentence, at most 30 words) for the field "{path}" that fixes these '
        "mistakes on any similar document. Say where the value is found or how to write it. "
        "Do not copy names, numbers or dates from the examples.",
    ]
    return [
        {"role": "system", "content": "You write precise data-extraction rules. Reply with the rule only."},
        {"role": "user", "content": "\n".join(prompt)},
    ]


def instruction_messages(
    program: ExtractionProgram, error_summary: list[str], tried: list[str]
) -> list[dict[str, str]]:
    prompt = [
        "A model extracts a JSON record from documents with this instruction:",
        f'"{program.components.get(INSTRUCTION, "")}"',
        "",
        "Its most common mistakes:",
        *[f"- {line}" for line in error_summary],
    ]
    if tried:
        prompt += ["", "Instructions already tried that did NOT help:", *[f"- {t}" for t in tried[-2:]]]
    prompt += [
        "",
        "Write an improved instruction of at most 2 sentences that keeps the task and avoids these mistakes. "
        "Do not copy names, numbers or dates from the mistakes.",
    ]
    return [
        {
            "role": "system",
            "content": "You write short, precise instructions. Reply with the instruction only.",
        },
        {"role": "user", "content": "\n".join(prompt)},
    ]


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


__all__ = [
    "SYSTEM",
    "TIPS",
    "error_summary",
    "failure_lines",
    "field_list",
    "field_rule_messages",
    "grounded_instruction_messages",
    "induction_messages",
    "input_output_pair",
    "instruction_messages",
    "opro_messages",
    "variation_messages",
]
