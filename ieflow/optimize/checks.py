"""Checks on a proposal before it costs a metric call: reply cleaning, length, repetition, growth
and leaks of training values.

Weak reflection models wrap their answer in labels and fences, cut off mid-sentence, repeat the
current text or paste a training document into a rule; each of these is caught here, with the
reason recorded in the run log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ieflow.datasets import Example
from ieflow.optimize.facts import leaf_values
from ieflow.program import Demo, ExtractionProgram

WORD = re.compile(r"\w+", re.UNICODE)
_DIGITS = re.compile(r"\d{2}")


def normalized_words(text: str) -> str:
    """Lower-cased words joined by single spaces: text compared without case or punctuation."""
    return " ".join(WORD.findall(text.lower()))


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
        if normalized_words(text) == normalized_words(old) or normalized_words(text) in normalized_words(old):
            return "proposal repeats the current text"
        if len(WORD.findall(text)) > self.max_words:
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


def leaked_value(text: str, examples: list[Example]) -> str | None:
    """A gold value (4+ chars) or a 8-word run of a training document found in `text`."""
    normalized = normalized_words(text)
    for example in examples:
        for value in leaf_values(example.gold):
            candidate = normalized_words(str(value))
            if len(candidate) >= 4 and not candidate.replace(" ", "").isdigit() and candidate in normalized:
                return str(value)
            # Dates and codes normalize to digits only ("2021-03-05" -> "2021 03 05"): match them as printed.
            if isinstance(value, str) and len(value) >= 6 and _DIGITS.search(value) and value in text:
                return value
            if isinstance(value, int | float) and len(str(value)) >= 4 and str(value) in text:
                return str(value)
        words = normalized_words(example.text).split()
        for i in range(0, max(0, len(words) - 8), 4):
            if " ".join(words[i : i + 8]) in normalized:
                return " ".join(words[i : i + 8])
    return None


def copied_from_demos(demos: list[Demo], example: Example, record: Any) -> list[str]:
    """Text values of `record` that a demo's answer holds and `example`'s document does not print:
    the student copied them from its prompt into another document's answer (the failure that sank
    the reference gepa library on receipts, where a training receipt's values rode in the prompt)."""
    shown = {
        normalized_words(v): v
        for demo in demos
        if demo.doc_id != example.doc_id
        for v in leaf_values(demo.record)
        if isinstance(v, str)
    }
    shown = {k: v for k, v in shown.items() if len(k) >= 4 and not k.replace(" ", "").isdigit()}
    if not shown:
        return []
    text = normalized_words(example.text)
    return [
        v
        for v in leaf_values(record)
        if isinstance(v, str) and (n := normalized_words(v)) in shown and n not in text
    ]


def clean_reply(text: str) -> str:
    """The first real line of a reply: no code fences, labels, bullets or quotes."""
    text = re.sub(r"```.*?```", " ", text, flags=re.DOTALL) if text.count("```") >= 2 else text
    for line in text.splitlines():
        line = line.strip().strip("`").strip()
        line = re.sub(
            r"^(\*\*)?(rule|new rule|instruction|answer)\s*\d*\s*[:.-]\s*(\*\*)?", "", line, flags=re.I
        )
        line = re.sub(r"^([-*•]|\d+[.)])\s+", "", line).strip().strip('"').strip("'").strip()
        if len(WORD.findall(line)) >= 3:
            sentences = re.split(r"(?<=[.!?])\s+", line)
            return " ".join(sentences[:2]).strip()
    return ""


def copies_of_added_demos(
    program: ExtractionProgram, seed: ExtractionProgram, valset: list[Example], results: list[Any]
) -> list[str]:
    """Values the demos `program` adds to the seed's show up in other validation answers (`results`:
    ExampleResults of `program` on `valset`)."""
    added = [d for d in program.demos if d not in seed.demos]
    if not added:
        return []
    examples = {ex.doc_id: ex for ex in valset}
    return [v for r in results for v in copied_from_demos(added, examples[r.doc_id], r.record)]


__all__ = [
    "WORD",
    "ProposalCheck",
    "clean_reply",
    "copied_from_demos",
    "copies_of_added_demos",
    "leaked_value",
    "normalized_words",
]
