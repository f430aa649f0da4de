"""Deterministic train/val/test assignment: a pure function of `hash(seed, content hash or doc_id)`.

A document never changes split when others are added, and documents with the same content always
share a split (no leakage). `find_leaks` reports the content hashes that sit in more than one split
anyway (when given assignments say so).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}


def hash_unit(seed: int | str, key: str) -> float:
    """A uniform number in [0, 1) from (seed, key): the same on every machine and Python version."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _normalize_ratios(ratios: Mapping[str, float] | None) -> dict[str, float]:
    ratios = dict(DEFAULT_RATIOS if ratios is None else ratios)
    if not ratios or any(not isinstance(v, int | float) or v < 0 for v in ratios.values()):
        raise ValueError(f"split ratios must be non-negative numbers, got {ratios}")
    total = sum(ratios.values())
    if total <= 0:
        raise ValueError(f"split ratios must not all be zero, got {ratios}")
    return {name: value / total for name, value in ratios.items()}


def _bucket(u: float, ratios: dict[str, float]) -> str:
    cumulative = 0.0
    for name, ratio in ratios.items():
        cumulative += ratio
        if u < cumulative:
            return name
    return next(name for name, ratio in reversed(ratios.items()) if ratio > 0)


def assign_splits(
    doc_ids: Sequence[str],
    *,
    seed: int = 0,
    ratios: Mapping[str, float] | None = None,
    content_hashes: Mapping[str, str | None] | None = None,
    strata: Mapping[str, Any] | None = None,
    existing: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """Assign each document to a split; returns {doc_id: split} in input order.

    - A document is keyed by its content hash when known, else its doc_id; documents sharing a key
      share a split. A non-empty `existing` split is kept, and new documents with the same content as
      an existing one join that split.
    - Without `strata`, a key's split is `bucket(hash_unit(seed, key))`: independent of every other
      document, so adding documents never moves one.
    - With `strata` ({doc_id: value}), each stratum is filled in hash order towards the exact ratios
      (counting existing assignments). That balance depends on the other documents, so the stratified
      mode is stable only for documents passed in `existing`: the split flow passes its previous output.
    """
    weights = _normalize_ratios(ratios)
    content_hashes, existing = content_hashes or {}, existing or {}
    groups: dict[str, list[str]] = {}
    for doc_id in doc_ids:
        groups.setdefault(content_hashes.get(doc_id) or f"id:{doc_id}", []).append(doc_id)
    result: dict[str, str] = {}
    pending: list[tuple[str, list[str]]] = []
    for key, members in groups.items():
        kept = [existing[d] for d in members if existing.get(d)]
        if kept:
            for doc_id in members:
                result[doc_id] = existing.get(doc_id) or kept[0]  # type: ignore[assignment]
        else:
            pending.append((key, members))
    if strata is None:
        for key, members in pending:
            split = _bucket(hash_unit(seed, key), weights)
            result.update(dict.fromkeys(members, split))
    else:
        _assign_stratified(pending, weights, seed, strata, result)
    return {doc_id: result[doc_id] for doc_id in doc_ids}


def _assign_stratified(
    pending: list[tuple[str, list[str]]],
    weights: dict[str, float],
    seed: int,
    strata: Mapping[str, Any],
    result: dict[str, str],
) -> None:
    def stratum(doc_id: str) -> str:
        value = strata.get(doc_id)
        return "<none>" if value is None else json.dumps(value, sort_keys=True, default=str)

    counts: dict[str, dict[str, int]] = {}
    for doc_id, split in result.items():
        counts.setdefault(stratum(doc_id), {}).setdefault(split, 0)
        counts[stratum(doc_id)][split] += 1
    by_stratum: dict[str, list[tuple[str, list[str]]]] = {}
    for key, members in pending:
        by_stratum.setdefault(stratum(members[0]), []).append((key, members))
    for name, items in by_stratum.items():
        have = counts.setdefault(name, {})
        done = sum(have.values())
        for key, members in sorted(items, key=lambda item: (hash_unit(seed, item[0]), item[0])):
            done += len(members)
            # The split furthest below its share of the documents placed so far; ties broken by hash,
            # not by ratio order, which would favour val over test in every small stratum.
            split = max(
                weights,
                key=lambda s: (
                    round(weights[s] * done - have.get(s, 0), 9),
                    hash_unit(seed, f"{key}\x00{s}"),
                ),
            )
            have[split] = have.get(split, 0) + len(members)
            result.update(dict.fromkeys(members, split))


def find_leaks(
    assignments: Mapping[str, str], content_hashes: Mapping[str, str | None]
) -> dict[str, dict[str, list[str]]]:
    """Content hashes whose documents sit in more than one split: {hash: {split: [doc_id, ...]}}."""
    by_hash: dict[str, dict[str, list[str]]] = {}
    for doc_id, split in assignments.items():
        digest = content_hashes.get(doc_id)
        if digest:
            by_hash.setdefault(digest, {}).setdefault(split, []).append(doc_id)
    return {digest: splits for digest, splits in by_hash.items() if len(splits) > 1}
