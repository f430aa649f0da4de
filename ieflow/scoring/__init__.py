"""Scoring of extracted records against gold records, with feedback sentences for the optimizers.

```python
scorer = Scorer(schema)
rs = scorer.score(predicted, gold)   # rs.score, rs.fields[path], rs.feedback
agg = aggregate([rs, ...])           # agg.per_field, agg.micro, agg.macro, agg.mean_record_score
```
Aggregates: `per_field` is the mean score of each field path over the records (accuracy for
scalars); `per_field_f1` is the F1 of each path from pooled soft counts (a value where gold is null
is a false positive, a null where gold has a value a false negative, both null counts for nothing);
`micro` pools those counts over every top-level field, `macro` averages the top-level `per_field_f1`.
An all-null prediction therefore scores accuracy on fields that are often absent, but F1 0.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ieflow.scoring.compare import ERROR_KINDS, register_comparator
from ieflow.scoring.kleister import KleisterScore, kleister_labels, kleister_score
from ieflow.scoring.scorer import FieldScore, RecordScore, Scorer
from ieflow.scoring.silver import ExampleScorer, LabelScorer

__all__ = [
    "ERROR_KINDS",
    "Aggregate",
    "ExampleScorer",
    "FieldScore",
    "KleisterScore",
    "LabelScorer",
    "RecordScore",
    "Scorer",
    "aggregate",
    "kleister_labels",
    "kleister_score",
    "register_comparator",
]


@dataclass
class Aggregate:
    n: int
    mean_record_score: float
    micro: float
    macro: float
    per_field: dict[str, float]
    per_field_f1: dict[str, float]
    top_level: list[str]
    error_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean_record_score": self.mean_record_score,
            "micro": self.micro,
            "macro": self.macro,
            "per_field": dict(self.per_field),
            "per_field_f1": dict(self.per_field_f1),
            "top_level": list(self.top_level),
            "error_counts": {p: dict(c) for p, c in self.error_counts.items()},
        }


def _f1_from_counts(tp: float, fp: float, fn: float) -> float:
    if tp + fp + fn <= 1e-12:
        return 1.0  # nothing to find and nothing found
    return 2 * tp / (2 * tp + fp + fn)


def aggregate(scores: Iterable[RecordScore]) -> Aggregate:
    """Aggregate record scores (of one schema) into per-field, micro and macro figures."""
    records = list(scores)
    if not records:
        return Aggregate(0, 0.0, 0.0, 0.0, {}, {}, [])
    top_level = list(records[0].top_level)
    sums: dict[str, float] = defaultdict(float)
    seen: Counter[str] = Counter()
    counts: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    errors: dict[str, Counter[str]] = defaultdict(Counter)
    for rs in records:
        for path, fs in rs.fields.items():
            sums[path] += fs.score
            seen[path] += 1
            c = counts[path]
            c[0] += fs.tp
            c[1] += fs.fp
            c[2] += fs.fn
            if fs.error_kind:
                errors[path][fs.error_kind] += 1
    order = list(records[0].fields)
    order += [p for p in seen if p not in order]
    per_field = {p: sums[p] / seen[p] for p in order}
    per_field_f1 = {p: _f1_from_counts(*counts[p]) for p in order}
    tp = sum(counts[p][0] for p in top_level)
    fp = sum(counts[p][1] for p in top_level)
    fn = sum(counts[p][2] for p in top_level)
    macro = sum(per_field_f1[p] for p in top_level) / len(top_level) if top_level else 1.0
    return Aggregate(
        n=len(records),
        mean_record_score=sum(rs.score for rs in records) / len(records),
        micro=_f1_from_counts(tp, fp, fn),
        macro=macro,
        per_field=per_field,
        per_field_f1=per_field_f1,
        top_level=top_level,
        error_counts={p: dict(errors[p]) for p in order if errors[p]},
    )
