"""Pareto fronts: per validation example (for GEPA's parent selection) and over quality and cost."""

from __future__ import annotations

import random
from collections.abc import Sequence


def per_example_front(scores: Sequence[dict[str, float]], eps: float = 1e-9) -> dict[str, list[int]]:
    """For each example, the candidates that reach the best score on it."""
    front: dict[str, list[int]] = {}
    doc_ids = {doc for candidate in scores for doc in candidate}
    for doc in sorted(doc_ids):
        best = max(candidate.get(doc, 0.0) for candidate in scores)
        front[doc] = [i for i, candidate in enumerate(scores) if candidate.get(doc, 0.0) >= best - eps]
    return front


def _dominated(i: int, j: int, scores: Sequence[dict[str, float]], eps: float = 1e-9) -> bool:
    """True when candidate j is at least as good as i everywhere and better somewhere."""
    better = False
    for doc, value in scores[i].items():
        other = scores[j].get(doc, 0.0)
        if other < value - eps:
            return False
        if other > value + eps:
            better = True
    return better


def front_weights(scores: Sequence[dict[str, float]]) -> dict[int, int]:
    """Candidates on the per-example front, minus dominated ones, weighted by examples they win."""
    front = per_example_front(scores)
    members = {i for winners in front.values() for i in winners}
    survivors = {i for i in members if not any(_dominated(i, j, scores) for j in members if j != i)}
    weights: dict[int, int] = {}
    for winners in front.values():
        kept = [i for i in winners if i in survivors]
        # An example every candidate ties on says nothing about who is better.
        if len(kept) == len(scores) and len(scores) > 1:
            continue
        for i in kept:
            weights[i] = weights.get(i, 0) + 1
    return weights


def sample_from_front(scores: Sequence[dict[str, float]], rng: random.Random) -> int:
    """Pick a candidate with probability proportional to the number of examples it wins."""
    weights = front_weights(scores)
    if not weights:
        return max(range(len(scores)), key=lambda i: sum(scores[i].values()))
    ids = sorted(weights)
    return rng.choices(ids, weights=[weights[i] for i in ids], k=1)[0]


def quality_cost_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of (quality, cost) points not dominated: no other is as good and cheaper, or better
    and as cheap. Sorted by cost."""
    keep = []
    for i, (quality, cost) in enumerate(points):
        dominated = any(
            (q >= quality and c <= cost) and (q > quality or c < cost)
            for j, (q, c) in enumerate(points)
            if j != i
        )
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: (points[i][1], -points[i][0]))
