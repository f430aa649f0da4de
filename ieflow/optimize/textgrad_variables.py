"""TextGrad's forward pass and loss for an extraction program: which variables of the program caused
failures on a minibatch, each with the failure lines (the scorer's per-field feedback) it is
responsible for.

The variables are the program's parts: the instruction (responsible for every failure), the
description of each failing field (its own failures), the output format of a failing date or
amount field (when another format exists for it), and the worked demos (when the program has them).
A variable without failures gets no critique.
"""

from __future__ import annotations

import json

from ieflow.datasets import Example
from ieflow.optimize.evaluator import ExampleResult
from ieflow.optimize.prompts import error_summary, failure_lines
from ieflow.optimize.prompts_textgrad import Variable
from ieflow.program import (
    DEFAULT_INSTRUCTION,
    DEMOS,
    FIELD_PREFIX,
    INSTRUCTION,
    OUTPUT_FORMATS,
    ExtractionProgram,
)
from ieflow.schema import field_schema, types_of

NO_FORMAT = "none (the model writes the value in the schema's form itself)"


def failure_mass(program: ExtractionProgram, results: list[ExampleResult]) -> dict[str, float]:
    """Per field path, the sum of (1 - score) over the minibatch; only fields that failed."""
    out = {}
    for path in program.field_descriptions():
        mass = sum(1.0 - r.fields.get(path, 1.0) for r in results)
        if mass > 1e-9:
            out[path] = mass
    return out


def format_options(program: ExtractionProgram, path: str) -> tuple[str, ...]:
    """The output formats the field could take instead of its current one."""
    node = field_schema(program.schema, path)
    if node.get("format") == "date":
        names: tuple[str, ...] = ("date:day-first", "date:month-first")
    elif {"number", "integer"} & set(types_of(node)):
        names = ("amount:printed",)
    else:
        names = ()
    return tuple(n for n in names if n != program.formats.get(path))


def variables_with_failures(
    program: ExtractionProgram, batch: list[Example], results: list[ExampleResult], max_fields: int
) -> list[Variable]:
    """The variables to critique, in a fixed order: instruction, the `max_fields` worst fields,
    the format of the worst failing field that can take one, the demos."""
    if all(r.score >= 1.0 - 1e-9 for r in results):
        return []
    examples = {ex.doc_id: ex for ex in batch}
    mass = failure_mass(program, results)
    ranked = sorted(mass, key=lambda p: (-mass[p], p))
    out = []
    summary = error_summary(program, results)
    if summary:
        instruction = program.components.get(INSTRUCTION, DEFAULT_INSTRUCTION)
        out.append(Variable(INSTRUCTION, "the instruction", instruction, tuple(summary)))
    for path in ranked[:max_fields]:
        key = FIELD_PREFIX + path
        lines = tuple(failure_lines(path, results, examples))
        out.append(
            Variable(key, f'the description of the field "{path}"', program.components.get(key, ""), lines)
        )
    formattable = [p for p in ranked if format_options(program, p)]
    if formattable:
        path = formattable[0]
        out.append(
            Variable(
                OUTPUT_FORMATS,
                f'the output format of the field "{path}"',
                program.formats.get(path, NO_FORMAT),
                tuple(failure_lines(path, results, examples)),
                options=format_options(program, path),
                target=path,
            )
        )
    if program.demos and summary:
        out.append(
            Variable(
                DEMOS,
                "the worked examples shown before each document",
                demo_summary(program),
                tuple(summary),
                options=tuple(str(i) for i in range(1, len(program.demos) + 1)),
            )
        )
    return out


def demo_summary(program: ExtractionProgram, width: int = 90) -> str:
    """The demos as one line each: the head of the document and the answer shown for it."""
    parts = []
    for number, demo in enumerate(program.demos, 1):
        head = " ".join(demo.text.split())[:width]
        answer = json.dumps(demo.record, ensure_ascii=False)[:width]
        parts.append(f'demo {number}: document "{head}..." answered {answer}')
    return "; ".join(parts)


def worst_failing(batch: list[Example], results: list[ExampleResult], exclude: set[str]) -> Example | None:
    """The minibatch example the program handled worst, not already a demo."""
    ranked = sorted(
        (r for r in results if r.score < 1.0 and r.doc_id not in exclude), key=lambda r: (r.score, r.doc_id)
    )
    if not ranked:
        return None
    return next(ex for ex in batch if ex.doc_id == ranked[0].doc_id)


__all__ = [
    "NO_FORMAT",
    "demo_summary",
    "failure_mass",
    "format_options",
    "variables_with_failures",
    "worst_failing",
]
