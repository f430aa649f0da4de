"""Kleister-style score: multi-label F1 over normalized `key=VALUE` labels.

This mirrors the metric of the Kleister-NDA challenge (GEval `MultiLabel-F1:u`, the headline
"F1(UC)"), so results on `kleister_nda` can be set beside published numbers:
- a record becomes a set of labels `key=value`, one per value (one per item of a list), nulls and
  empty lists giving none;
- spaces and colons in values become underscores (the challenge's expected.tsv format) and values are
  upper-cased (pass `uppercase=False` for the auxiliary true-case F1);
- true positives, false positives and false negatives are summed over all documents (micro F1);
  `mean_f1` is the per-document mean (GEval's `Mean/MultiLabel-F1`).
No other normalization is applied: '03/01/2018' does not match '2018-03-01' here, as in the original.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def kleister_value(value: Any, *, uppercase: bool = True) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    text = " ".join(str(value).split()).replace(" ", "_").replace(":", "_")
    return text.upper() if uppercase else text


def kleister_labels(record: dict[str, Any] | None, *, uppercase: bool = True) -> set[str]:
    """The record's `key=VALUE` labels; None (no output) gives no labels."""
    labels: set[str] = set()
    if not isinstance(record, dict):
        return labels
    for key, value in record.items():
        for item in value if isinstance(value, list) else [value]:
            if item is None or isinstance(item, dict | list) or (isinstance(item, str) and not item.strip()):
                continue
            labels.add(f"{key}={kleister_value(item, uppercase=uppercase)}")
    return labels


@dataclass
class KleisterScore:
    f1: float
    precision: float
    recall: float
    mean_f1: float
    n: int
    per_field: dict[str, float] = field(default_factory=dict)  # F1 of each key's labels alone

    def to_dict(self) -> dict[str, Any]:
        return {
            "f1": self.f1,
            "precision": self.precision,
            "recall": self.recall,
            "mean_f1": self.mean_f1,
            "n": self.n,
            "per_field": dict(self.per_field),
        }


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    if tp + fp + fn == 0:
        return 1.0, 1.0, 1.0
    return precision, recall, 2 * tp / (2 * tp + fp + fn)


def kleister_score(
    predictions: Iterable[dict[str, Any] | None], golds: Iterable[dict[str, Any]], *, uppercase: bool = True
) -> KleisterScore:
    """Micro multi-label F1 over all documents (pairs of prediction and gold, in the same order)."""
    preds, gold_list = list(predictions), list(golds)
    if len(preds) != len(gold_list):
        raise ValueError(f"{len(preds)} predictions but {len(gold_list)} gold records")
    totals = [0, 0, 0]
    per_key: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    doc_f1s = []
    for pred, gold in zip(preds, gold_list, strict=True):
        p_labels = kleister_labels(pred, uppercase=uppercase)
        g_labels = kleister_labels(gold, uppercase=uppercase)
        tp, fp, fn = len(p_labels & g_labels), len(p_labels - g_labels), len(g_labels - p_labels)
        totals[0] += tp
        totals[1] += fp
        totals[2] += fn
        doc_f1s.append(_prf(tp, fp, fn)[2])
        for slot, labels in enumerate((p_labels & g_labels, p_labels - g_labels, g_labels - p_labels)):
            for label in labels:
                per_key[label.split("=", 1)[0]][slot] += 1
        for key in gold or {}:
            per_key.setdefault(key, [0, 0, 0])  # a key with no labels anywhere still gets its F1 (1.0)
    precision, recall, f1 = _prf(*totals)
    return KleisterScore(
        f1=f1,
        precision=precision,
        recall=recall,
        mean_f1=sum(doc_f1s) / len(doc_f1s) if doc_f1s else 0.0,
        n=len(preds),
        per_field={key: _prf(*c)[2] for key, c in sorted(per_key.items())},
    )
