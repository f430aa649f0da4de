"""PromptBreeder's texts: thinking styles, initial mutation prompts and hyper-mutation prompts (our
own wording, a dozen each as in the paper's spirit, short for small models), and one request per
mutation operator."""

from __future__ import annotations

from ieflow.optimize.prompts import SYSTEM

THINKING_STYLES = (
    "Think about where in the document each value is usually printed.",
    "Think about how each value is written and how it must be written in the answer.",
    "Think about the most common mistake and how to avoid it.",
    "Break the task into small steps, one per field.",
    "Think about which values look alike and how to tell them apart.",
    "Focus on what makes an answer exactly right, not nearly right.",
    "Imagine explaining the task to a careful new clerk.",
    "Think about what to do when a value is missing from the document.",
    "Be as concrete and brief as possible.",
    "Think about the labels printed next to each value.",
    "Question every assumption about the order of numbers in dates and amounts.",
    "Think about how a person checks a record against the document.",
)

MUTATION_PROMPTS = (
    "Make this instruction more specific.",
    "Rewrite this instruction so that a beginner could follow it.",
    "Add one rule that prevents a common extraction mistake.",
    "Say the same thing in fewer words.",
    "Change the instruction so that it says how values must be written.",
    "Rephrase this instruction as a clear step-by-step request.",
    "Improve this instruction by saying where the values are found.",
    "Rewrite this instruction to be stricter about exact copying.",
    "Make the instruction clearer about what to leave empty.",
    "Modify the instruction to focus on the hardest field.",
    "Rewrite the instruction in a different style with the same task.",
    "Add a short hint about formats to this instruction.",
)

HYPER_MUTATION_PROMPTS = (
    "Improve the following request so that it produces better instructions.",
    "Rewrite the following request to be more specific and useful.",
    "Write a variation of the following request that leads to more careful instructions.",
    "Summarize and improve the following request.",
)

MUTATION_SYSTEM = "You write short requests that improve instructions. Reply with the request only."


def _user(system: str, lines: list[str]) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]


def problem_description(fields: list[str], summary: list[str]) -> list[str]:
    """The task the prompts solve: the fields, and facts about the data computed in code."""
    lines = ["A model extracts one JSON record with these fields from each document:", *fields]
    return lines + (["", "What the labelled documents show:", *summary] if summary else [])


def direct_mutation_messages(mutation_prompt: str, task_prompt: str) -> list[dict[str, str]]:
    """First-order direct mutation: the unit's mutation prompt applied to its task prompt."""
    return _user(
        SYSTEM,
        [
            mutation_prompt,
            f'Instruction: "{task_prompt}"',
            "Reply with the new instruction only (1 or 2 sentences).",
        ],
    )


def zero_order_messages(problem: list[str], thinking_style: str) -> list[dict[str, str]]:
    """Zero-order generation (also the initial population): a new task prompt from the problem
    description and a thinking style, with no parent prompt."""
    return _user(
        SYSTEM,
        [
            *problem,
            "",
            thinking_style,
            "Write an instruction (1 or 2 sentences) for this model. Do not copy names, numbers or dates.",
        ],
    )


def hyper_mutation_messages(hyper_prompt: str, mutation_prompt: str) -> list[dict[str, str]]:
    """Hyper-mutation: a meta-mutation prompt rewrites the unit's mutation prompt."""
    return _user(
        MUTATION_SYSTEM,
        [
            hyper_prompt,
            f'Request: "{mutation_prompt}"',
            "Reply with the new request only (one sentence).",
        ],
    )


def lineage_messages(problem: list[str], elites: list[str]) -> list[dict[str, str]]:
    """Lineage-based mutation: the elites found so far, in order, best last."""
    return _user(
        SYSTEM,
        [
            *problem,
            "",
            "Instructions that were each the best so far, in order (the best is last):",
            *[f"{n}. {text}" for n, text in enumerate(elites, 1)],
            "",
            "Write the next instruction in this list, better than the last one (1 or 2 sentences).",
        ],
    )


def eda_messages(problem: list[str], task_prompts: list[str]) -> list[dict[str, str]]:
    """First-order estimation-of-distribution mutation: the population's task prompts (worst to
    best) to a new one."""
    return _user(
        SYSTEM,
        [
            *problem,
            "",
            "A list of instructions, from worst to best:",
            *[f"- {text}" for text in task_prompts],
            "",
            "Write a new instruction (1 or 2 sentences) that is different from all of them and better.",
        ],
    )


__all__ = [
    "HYPER_MUTATION_PROMPTS",
    "MUTATION_PROMPTS",
    "THINKING_STYLES",
    "direct_mutation_messages",
    "eda_messages",
    "hyper_mutation_messages",
    "lineage_messages",
    "problem_description",
    "zero_order_messages",
]
