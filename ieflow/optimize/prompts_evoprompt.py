"""EvoPrompt's requests to the proposal model: the paper's one-shot evolution templates split into
one small request each (small models follow one step per call, not a four-step recipe)."""

from __future__ import annotations

from ieflow.optimize.prompts import SYSTEM

PARTS_SYSTEM = "You compare and rewrite short phrases. Reply with the phrases only, on one line."


def _facts(summary: list[str]) -> list[str]:
    return ["", "What the labelled documents show:", *summary] if summary else []


def paraphrase_messages(instruction: str, attempt: int) -> list[dict[str, str]]:
    """The initial population: paraphrases of the seed instruction."""
    styles = ("in other words", "more precisely", "more briefly", "as a step-by-step request")
    prompt = (
        f"Rewrite the following instruction for a data-extraction model {styles[attempt % len(styles)]}; "
        "keep its task and every rule in it.\n"
        f'Instruction: "{instruction}"'
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def crossover_messages(first: str, second: str) -> list[dict[str, str]]:
    """GA crossover (and DE's last step): one child from two parents' instructions."""
    prompt = (
        "Cross over the following two instructions: write ONE new instruction (1 or 2 sentences) that "
        "combines parts of both.\n"
        f'Instruction 1: "{first}"\n'
        f'Instruction 2: "{second}"'
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def mutation_messages(instruction: str, summary: list[str]) -> list[dict[str, str]]:
    """GA mutation of the crossover child; facts computed from the data ground the change."""
    prompt = [
        "Mutate the instruction below for a data-extraction model: change or add one detail so that it "
        "extracts better, and keep its task.",
        f'Instruction: "{instruction}"',
        *_facts(summary),
        "",
        "Reply with the new instruction only (1 or 2 sentences). Do not copy names, numbers or dates.",
    ]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(prompt)}]


def difference_messages(first: str, second: str) -> list[dict[str, str]]:
    """DE step 1: the parts in which two members differ (the "difference vector")."""
    prompt = (
        "Which parts of Instruction 1 differ from Instruction 2? List those parts of Instruction 1 as "
        "short phrases separated by semicolons.\n"
        f'Instruction 1: "{first}"\n'
        f'Instruction 2: "{second}"'
    )
    return [{"role": "system", "content": PARTS_SYSTEM}, {"role": "user", "content": prompt}]


def mutate_parts_messages(parts: str, summary: list[str]) -> list[dict[str, str]]:
    """DE step 2: mutate the differing parts."""
    prompt = [
        "Rewrite each of these phrases from a data-extraction instruction so that it says something "
        "new and useful; keep them short and separated by semicolons.",
        f"Phrases: {parts}",
        *_facts(summary),
    ]
    return [{"role": "system", "content": PARTS_SYSTEM}, {"role": "user", "content": "\n".join(prompt)}]


def combine_messages(parts: str, best: str) -> list[dict[str, str]]:
    """DE step 3: the mutated parts combined with the current best member."""
    prompt = (
        "Work these phrases into the instruction below: write ONE new instruction (1 or 2 sentences).\n"
        f"Phrases: {parts}\n"
        f'Instruction: "{best}"'
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


__all__ = [
    "combine_messages",
    "crossover_messages",
    "difference_messages",
    "mutate_parts_messages",
    "mutation_messages",
    "paraphrase_messages",
]
