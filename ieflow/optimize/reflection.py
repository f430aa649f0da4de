"""Proposals: small, targeted edits of one component, written by the reflection model or taken from data.

Local reflection models are weak (ENVIRONMENT.md): asked to rewrite a whole instruction they write
vague text or copy training documents into it. So each proposer asks for one small thing (one rule
for one failing field, shown the failures with the document excerpt where the value sits), and every
proposal passes `ProposalCheck` before it costs a single metric call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from ieflow.datasets import Example
from ieflow.optimize.evaluator import ExampleResult
from ieflow.program import FIELD_PREFIX, INSTRUCTION, ExtractionProgram
from ieflow.schema import field_schema

_WORD = re.compile(r"\w+", re.UNICODE)
_DIGITS = re.compile(r"\d{2}")
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


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


# -- finding where a value sits in the document --------------------------------------------------


def value_renderings(value: Any) -> list[str]:
    """Ways a gold value may be printed in a document (dates in common notations, amounts)."""
    if value is None or value == [] or isinstance(value, dict):
        return []
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, int | float):
        out = [f"{value:,.2f}", f"{value:.2f}", str(value)]
        return list(dict.fromkeys(out))
    text = str(value).strip()
    renderings = [text]
    try:
        d = date.fromisoformat(text[:10])
    except ValueError:
        d = None
    if d is not None:
        dd, mm, yyyy, yy = f"{d.day:02d}", f"{d.month:02d}", f"{d.year}", f"{d.year % 100:02d}"
        mon = _MONTHS[d.month - 1]
        for sep in ("/", "-", "."):
            renderings += [
                f"{dd}{sep}{mm}{sep}{yyyy}",
                f"{dd}{sep}{mm}{sep}{yy}",
                f"{mm}{sep}{dd}{sep}{yyyy}",
            ]
            renderings += [f"{mm}{sep}{dd}{sep}{yy}"]
        renderings += [f"{d.day} {mon}", f"{mon} {d.day}", f"{dd} {mon}", f"{d.day}{mon.upper()}"]
    return renderings


def excerpt(text: str, value: Any, width: int = 70) -> str | None:
    """A window of the document around the first place `value` appears (case-insensitive)."""
    lowered = text.lower()
    for rendering in value_renderings(value):
        if len(rendering) < 2:
            continue
        at = lowered.find(rendering.lower())
        if at >= 0:
            start, end = max(0, at - width), min(len(text), at + len(rendering) + width)
            return " ".join(text[start:end].split())
    return None


# -- checking proposals ----------------------------------------------------------------------------


@dataclass
class ProposalCheck:
    """Rejects proposals that are empty, truncated, unchanged, too long, or leak training data."""

    max_words: int = 45
    max_prompt_growth: float = 1.8  # new system prompt length / seed system prompt length

    def check_text(self, text: str, old: str, examples: list[Example], truncated: bool) -> str | None:
        """The reason to reject `text`, or None when it may be tried."""
        if not text.strip():
            return "empty proposal"
        if truncated:
            return "proposal was cut off (model hit its token limit)"
        if _norm(text) == _norm(old) or _norm(text) in _norm(old):
            return "proposal repeats the current text"
        if len(_WORD.findall(text)) > self.max_words:
            return f"proposal longer than {self.max_words} words"
        leak = leaked_value(text, examples)
        if leak:
            return f"proposal copies a training value ({leak!r})"
        return None

    def check_growth(self, seed: ExtractionProgram, program: ExtractionProgram) -> str | None:
        seed_len = len(seed.system_prompt())
        if len(program.system_prompt()) > self.max_prompt_growth * seed_len + 400:
            return "prompt would grow past the length bound"
        return None


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def leaked_value(text: str, examples: list[Example]) -> str | None:
    """A gold value (4+ chars) or a 8-word run of a training document found in `text`."""
    normalized = _norm(text)
    for example in examples:
        for value in _leaf_values(example.gold):
            candidate = _norm(str(value))
            if len(candidate) >= 4 and not candidate.replace(" ", "").isdigit() and candidate in normalized:
                return str(value)
            # Dates and codes normalize to digits only ("2021-03-05" -> "2021 03 05"): match them as printed.
            if isinstance(value, str) and len(value) >= 6 and _DIGITS.search(value) and value in text:
                return value
            if isinstance(value, int | float) and len(str(value)) >= 4 and str(value) in text:
                return str(value)
        words = _norm(example.text).split()
        for i in range(0, max(0, len(words) - 8), 4):
            if " ".join(words[i : i + 8]) in normalized:
                return " ".join(words[i : i + 8])
    return None


def _leaf_values(record: Any) -> list[Any]:
    if isinstance(record, dict):
        return [v for value in record.values() for v in _leaf_values(value)]
    if isinstance(record, list):
        return [v for value in record for v in _leaf_values(value)]
    return [] if record is None else [record]


def clean_reply(text: str) -> str:
    """The first real line of a reply: no code fences, labels, bullets or quotes."""
    text = re.sub(r"```.*?```", " ", text, flags=re.DOTALL) if text.count("```") >= 2 else text
    for line in text.splitlines():
        line = line.strip().strip("`").strip()
        line = re.sub(
            r"^(\*\*)?(rule|new rule|instruction|answer)\s*\d*\s*[:.-]\s*(\*\*)?", "", line, flags=re.I
        )
        line = re.sub(r"^([-*•]|\d+[.)])\s+", "", line).strip().strip('"').strip("'").strip()
        if len(_WORD.findall(line)) >= 3:
            sentences = re.split(r"(?<=[.!?])\s+", line)
            return " ".join(sentences[:2]).strip()
    return ""


# -- the prompts -----------------------------------------------------------------------------------


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
        lines.append(block)
    return lines


def field_rule_messages(
    program: ExtractionProgram, path: str, failures: list[str], tried: list[str], facts: str = ""
) -> list[dict[str, str]]:
    node = field_schema(program.schema, path)
    description = program.components.get(FIELD_PREFIX + path, "")
    kind = "/".join(
        t for t in (node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]) if t
    )
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


def with_rule(program: ExtractionProgram, path: str, rule: str, max_words: int = 70) -> ExtractionProgram:
    """The field's description with `rule` appended; when too long, the newest rule replaces older
    learned ones (the schema's own description is always kept)."""
    key = FIELD_PREFIX + path
    original = str(field_schema(program.schema, path).get("description", "")).strip()
    current = program.components.get(key, "").strip()
    combined = f"{current} {rule}".strip()
    if len(_WORD.findall(combined)) > max_words:
        combined = f"{original} {rule}".strip()
    return program.replace(components={key: combined})
