"""PromptAgent's messages to the reflection model: an error analysis of a batch, then revisions.

As in the paper, the analysis ("why did the prompt fail on these examples?") is written first and
every revision is asked with it in view; for a small model each call asks for one short thing (one
analysis of two sentences, one revised instruction or one field rule) and names no training value.
"""

from __future__ import annotations

from ieflow.optimize.prompts import SYSTEM
from ieflow.program import FIELD_PREFIX, INSTRUCTION, ExtractionProgram


def analysis_messages(
    program: ExtractionProgram, summary: list[str], failures: list[str]
) -> list[dict[str, str]]:
    """Ask why the current prompt fails on the batch (the paper's error feedback)."""
    prompt = [
        "A model extracts a JSON record from documents with this instruction:",
        f'"{program.components.get(INSTRUCTION, "")}"',
        "",
        "On a batch of documents it made these mistakes:",
        *summary,
    ]
    if failures:
        prompt += ["", "Some of them in detail:", *failures]
    prompt += [
        "",
        "In at most two sentences, say what the instruction or the field rules fail to tell the model. "
        "Do not copy names, numbers or dates from the mistakes.",
    ]
    return [
        {"role": "system", "content": "You analyse the mistakes of a data-extraction model. Be brief."},
        {"role": "user", "content": "\n".join(prompt)},
    ]


def revision_messages(
    program: ExtractionProgram, component: str, analysis: str, summary: list[str]
) -> list[dict[str, str]]:
    """Ask for a revision of `component` (the instruction, or one field's rule) that follows the analysis."""
    prompt = [f'Current instruction: "{program.components.get(INSTRUCTION, "")}"', "", "Mistakes:", *summary]
    if analysis:
        prompt += ["", f"Analysis of the mistakes: {analysis}"]
    if component == INSTRUCTION:
        prompt += [
            "",
            "Write an improved instruction of at most 2 sentences that keeps the task and fixes these "
            "mistakes. Do not copy names, numbers or dates from the mistakes.",
        ]
    else:
        path = component.removeprefix(FIELD_PREFIX)
        prompt += [
            f'Current rule for the field "{path}": "{program.components.get(component, "")}"',
            "",
            f'Write ONE short rule (one sentence, at most 30 words) for the field "{path}" that fixes '
            "these mistakes on any similar document. Do not copy names, numbers or dates from the mistakes.",
        ]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(prompt)}]


__all__ = ["analysis_messages", "revision_messages"]
