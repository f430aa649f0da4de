"""TextGrad's two prompts to the reflection model: the backward pass (a critique of one variable
given the failures it caused, the "textual gradient") and the update step (the variable rewritten
from that critique, with the earlier critiques of the same variable shown: momentum).

Both ask for one short thing and name no training value of their own; the failures they show are
the scorer's per-field feedback on the training minibatch.
"""

from __future__ import annotations

from dataclasses import dataclass

CRITIC_SYSTEM = (
    "You review one part of the prompt of a data-extraction model. "
    "Reply with a short critique only: what in this part caused the mistakes."
)
UPDATE_SYSTEM = "You improve one part of the prompt of a data-extraction model. Reply with the new text only."


@dataclass(frozen=True)
class Variable:
    """One optimizable part of a program, as the backward pass sees it: its component name
    ("instruction", "field:<path>", "formats", "demos"), what it is in words, its current value
    as text, and the loss lines (failures on the minibatch) it is responsible for."""

    name: str
    role: str
    value: str
    failures: tuple[str, ...]
    options: tuple[str, ...] = ()  # formats: the names the update may choose; demos: slot numbers
    target: str = ""  # formats: the field path whose format is the variable

    @property
    def key(self) -> str:
        """What its gradient history (momentum) is kept under: a format's per field."""
        return f"{self.name}:{self.target}" if self.target else self.name


def critique_messages(variable: Variable) -> list[dict[str, str]]:
    """The backward pass for one variable: why did it cause these failures?"""
    prompt = [
        f"The model's prompt has this part: {variable.role}.",
        f'Its current value: "{variable.value}"',
        "",
        "On labelled documents, the model made these mistakes:",
        *variable.failures,
        "",
        f"In at most 3 sentences, say what is wrong or missing in {variable.role} that led to these "
        "mistakes, and what it should say instead. Do not copy names, numbers or dates from the mistakes.",
    ]
    return [{"role": "system", "content": CRITIC_SYSTEM}, {"role": "user", "content": "\n".join(prompt)}]


def _feedback_block(variable: Variable, critique: str, earlier: list[str]) -> list[str]:
    lines = [
        f"The model's prompt has this part: {variable.role}.",
        f'Its current value: "{variable.value}"',
        "",
        f"Critique of this part: {critique}",
    ]
    if earlier:
        lines += ["", "Earlier critiques of this variable:", *[f"- {c}" for c in earlier]]
    return lines


def update_messages(variable: Variable, critique: str, earlier: list[str]) -> list[dict[str, str]]:
    """The update step for a text variable (the instruction, a field description)."""
    prompt = [
        *_feedback_block(variable, critique, earlier),
        "",
        f"Rewrite {variable.role} so that it fixes what the critiques point out. Keep its task; at most "
        "2 sentences. Do not copy names, numbers or dates from documents.",
    ]
    return [{"role": "system", "content": UPDATE_SYSTEM}, {"role": "user", "content": "\n".join(prompt)}]


def choice_messages(variable: Variable, critique: str, earlier: list[str]) -> list[dict[str, str]]:
    """The update step for a variable whose values are a fixed set (a format name, a demo slot)."""
    prompt = [
        *_feedback_block(variable, critique, earlier),
        "",
        f"Following the critiques, choose the new value of {variable.role}. "
        f"Reply with exactly one of: {', '.join(variable.options)}, or none to keep it.",
    ]
    return [{"role": "system", "content": UPDATE_SYSTEM}, {"role": "user", "content": "\n".join(prompt)}]


__all__ = [
    "CRITIC_SYSTEM",
    "UPDATE_SYSTEM",
    "Variable",
    "choice_messages",
    "critique_messages",
    "update_messages",
]
