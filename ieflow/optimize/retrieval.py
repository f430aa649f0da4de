"""Strategy edits from failures: when a field fails because its answer was never read.

On a long document the student reads only what the strategy picks (`ieflow.longdoc`). A field
whose gold value is printed in the document (located by `ieflow.grounding`) but in none of the
parts its group read is a *retrieval miss*: no rule or instruction can fix it, only reading more or
other windows can. `retrieval_misses` finds them (no model calls: the reading is recomputed, BM25
is deterministic) and `propose_strategy` turns them into one strategy edit computed in code, whose
extra cost shows on the Pareto front like any candidate's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ieflow.datasets import Example
from ieflow.grounding.ground import ground_value, leaf_values
from ieflow.grounding.index import DocumentIndex
from ieflow.longdoc import plan_reading
from ieflow.optimize.edits import Proposal, Rejection
from ieflow.optimize.evaluator import ExampleResult
from ieflow.program import ExtractionProgram
from ieflow.strategy import STRATEGY

MAX_TOP_K = 6  # beyond this a group's reading costs more than map_merge would on most documents


@dataclass(frozen=True)
class RetrievalMiss:
    """A failing field whose answer is printed at `position` (0 start .. 1 end) of the document but
    was in none of the parts its call read."""

    doc_id: str
    field: str
    position: float


def retrieval_misses(
    program: ExtractionProgram, examples: list[Example], results: list[ExampleResult]
) -> list[RetrievalMiss]:
    """The retrieval misses of `program` on the failing fields of `results` (same order as `examples`)."""
    misses: list[RetrievalMiss] = []
    for example, result in zip(examples, results, strict=True):
        failing = {path.split(".")[0].removesuffix("[]") for path, s in result.fields.items() if s < 1.0}
        if not failing or not example.text:
            continue
        reading = plan_reading(program, example.text)
        if reading.strategy == "single":
            continue
        parts = {name: g.parts for g in reading.groups for name in g.fields}
        index = DocumentIndex(example.text)
        for name in sorted(failing):
            read = parts.get(name, reading.parts)
            position = _unread_answer(program, example, name, read, index)
            if position is not None:
                misses.append(RetrievalMiss(example.doc_id, name, position))
    return misses


def _unread_answer(
    program: ExtractionProgram, example: Example, name: str, read: list[str], index: DocumentIndex
) -> float | None:
    """Where the first located gold value of field `name` is printed, if no part read contains it."""
    for path, node, value in leaf_values({name: example.gold.get(name)}, program.schema):
        evidence = ground_value(path, node, value, index, program.formats)
        if evidence.char_start is None or evidence.char_end is None:
            continue
        printed = example.text[evidence.char_start : evidence.char_end]
        if any(printed in part for part in read):
            return None
        return evidence.char_start / max(len(example.text), 1)
    return None


def propose_strategy(program: ExtractionProgram, misses: list[RetrievalMiss]) -> Proposal | Rejection:
    """One strategy edit that reads what the misses show was not read, in order of cost: the head
    plus each field's best windows (`select`), then each field group's windows read one by one
    (`retrieve_merge`), then one more window per field (`top_k`)."""
    strategy = program.strategy
    if not misses:
        return Rejection(STRATEGY, "no field failed for want of reading its answer")
    if strategy.kind == "map_merge":
        return Rejection(STRATEGY, "map_merge already reads every window")
    if strategy.kind == "truncate":  # the head only: also read each field's best windows, one call
        changed = dataclasses.replace(strategy, kind="select")
        change = "kind truncate -> select"
    elif strategy.kind == "select":  # one budget for all fields: read each field's windows apart
        changed = dataclasses.replace(strategy, kind="retrieve_merge", merge="typed")
        change = "kind select -> retrieve_merge (typed merge)"
    elif strategy.top_k < MAX_TOP_K:
        changed = dataclasses.replace(strategy, top_k=strategy.top_k + 1)
        change = f"top_k {strategy.top_k} -> {strategy.top_k + 1}"
    else:
        return Rejection(STRATEGY, f"top_k is already {MAX_TOP_K}")
    fields = sorted({m.field for m in misses})
    where = ", ".join(f"{m.field} in {m.doc_id} at {m.position:.0%}" for m in misses[:4])
    summary = f"strategy {change}: answers not read for {', '.join(fields)} ({where})"
    return Proposal(STRATEGY, program.replace(strategy=changed), summary, changed.to_json())
