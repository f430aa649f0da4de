"""Scripted proposal models for EvoPrompt and PromptBreeder on the synthetic receipt task (see
tests/support/receipts.py): each answers by the request it is sent, and writes the fix only through
the mechanism under test (GA mutation, DE's mutated difference, a hyper-mutated mutation prompt)."""

from __future__ import annotations

from tests.support.receipts import DAY_FIRST_RULE


def evo_proposer(messages: list[dict], params: dict) -> str:
    """EvoPrompt: paraphrases and crossovers never fix the dates; every other GA mutation does, and
    DE's mutated difference of two members names the day-first reading, which the combination with
    the best member turns into the fix."""
    prompt = messages[-1]["content"]
    seed = params.get("seed", 0)
    if prompt.startswith("Rewrite the following instruction"):
        return f"Extract every field of the document as JSON, version {seed % 1000}."
    if prompt.startswith("Cross over"):
        first = prompt.split('Instruction 1: "')[1].split('"')[0]
        if "day-first" in first:
            return f"{first} Check every field, pass {seed % 1000}."
        return f"Extract each field exactly as printed, mix {seed % 1000}."
    if prompt.startswith("Mutate the instruction"):
        return DAY_FIRST_RULE if (seed // 10) % 2 == 1 else f"Read each field with care, try {seed % 10_000}."
    if prompt.startswith("Which parts"):
        return "the wording; the order of the fields"
    if prompt.startswith("Rewrite each of these phrases"):
        return "dates are printed day-first; write dates as YYYY-MM-DD"
    if prompt.startswith("Work these phrases"):
        if "day-first" in prompt:
            return f"{DAY_FIRST_RULE} Keep each field as printed, merge {seed % 1000}."
        return f"Extract the fields, merged {seed % 1000}."
    return f"Extract the fields as printed, reply {seed % 1000}."


HYPER_REPLY = "Add a rule that says how dates are printed and how to write them."


def breeder_proposer(messages: list[dict], params: dict) -> str:
    """PromptBreeder: only a mutation prompt about dates (which only hyper-mutation writes) leads
    direct mutation to the fix."""
    prompt = messages[-1]["content"]
    seed = params.get("seed", 0)
    if "Reply with the new request only" in prompt:
        return HYPER_REPLY
    if "Reply with the new instruction only" in prompt:
        mutation_prompt = prompt.splitlines()[0]
        return (
            DAY_FIRST_RULE if "dates" in mutation_prompt else f"Extract each field exactly, variant {seed}."
        )
    if "Write the next instruction in this list" in prompt:
        return f"Copy the fields as printed, next {seed}."
    if "from worst to best" in prompt:
        return f"Extract the fields exactly, new {seed}."
    return f"Extract the fields carefully, style {seed}."


__all__ = ["HYPER_REPLY", "breeder_proposer", "evo_proposer"]
