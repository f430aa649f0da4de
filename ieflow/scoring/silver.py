"""Scoring an example against its labels, gold or silver.

A teacher's label (`label_source` "teacher") carries per-field `agreement`: the share of teacher
samples that agreed on the field's value. A field the teacher was unsure of should move an
optimizer less, so its score counts with that weight in the record's mean: agreement 0.5 halves
the field's say. Gold and human labels weigh every field alike (the plain `Scorer`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from ieflow.scoring.scorer import RecordScore, Scorer

if TYPE_CHECKING:
    from ieflow.datasets import Example


class ExampleScorer(Protocol):
    """What the evaluator needs: a record's score on one example (gold scorer, silver, judge)."""

    def score_example(self, example: Example, record: dict[str, Any] | None) -> RecordScore: ...


def field_weights(example: Example) -> dict[str, float] | None:
    """Per top-level field weights of a teacher label (its agreement), None for gold and human."""
    if example.label_source != "teacher" or not example.agreement:
        return None
    return {name: max(0.0, min(1.0, float(value))) for name, value in example.agreement.items()}


def weighted(scored: RecordScore, weights: dict[str, float]) -> RecordScore:
    """`scored` with its record score the weighted mean of the top-level field scores (a field
    without a weight weighs 1). When every weight is 0 the plain mean stands: no field is trusted
    more than another."""
    pairs = [(weights.get(name, 1.0), scored.fields[name].score) for name in scored.top_level]
    total_weight = sum(w for w, _ in pairs)
    if total_weight <= 0:
        return scored
    return replace(scored, score=sum(w * s for w, s in pairs) / total_weight)


class LabelScorer:
    """The gold `Scorer` on an example's labels, weighted by agreement when they are silver."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.label = "gold"

    def score_example(self, example: Example, record: dict[str, Any] | None) -> RecordScore:
        scored = self.scorer.score(record, example.gold)
        weights = field_weights(example)
        return weighted(scored, weights) if weights else scored


def label_source_name(examples: list[Example]) -> str:
    """How a set of examples is labelled, as the report says it: "gold", "silver (teacher,
    weighted by agreement)", or both with their counts when mixed."""
    teacher = sum(1 for ex in examples if ex.label_source == "teacher")
    if not teacher:
        return "gold"
    if teacher == len(examples):
        return "silver (teacher, weighted by agreement)"
    return f"gold and silver ({len(examples) - teacher} gold/human, {teacher} teacher, weighted by agreement)"
