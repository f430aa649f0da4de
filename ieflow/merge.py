"""Merging the records a program extracted from several parts of one document, field by field.

The rule of a top-level field is `strategy.merge_rules[name]`, else the strategy's `merge`, except
that lists default to a deduplicated union. `typed` picks by the field's type: scalars by majority
(the first value seen wins a tie), lists by union (party names across pages), booleans by `any` (a
clause flag is true if any passage says so). Each field's value is traced to the part that decided
it (`merge_with_sources`).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from ieflow.program import ExtractionProgram
from ieflow.schema import kind_of, resolve, top_level_fields, types_of

__all__ = ["field_rule", "merge_records", "merge_with_sources"]


def merge_records(program: ExtractionProgram, records: list[dict]) -> dict:
    """Merge per-chunk records field by field (see the module docstring for the rules)."""
    merged, _ = merge_with_sources(program, records, list(range(len(records))))
    return merged


def merge_with_sources(
    program: ExtractionProgram, records: list[dict], sources: list[int]
) -> tuple[dict[str, Any], dict[str, int]]:
    """The merged record and, for each field with a value, the source (`sources[i]` names record i,
    e.g. its chunk) whose value decided it: the first that agreed with the majority, the first true
    for `any`, the first false for `all`, the first contributor to a union."""
    merged: dict[str, Any] = {}
    decided: dict[str, int] = {}
    for name in top_level_fields(program.schema):
        rule, is_list = field_rule(program, name)
        values = [
            (r.get(name), source)
            for r, source in zip(records, sources, strict=True)
            if r.get(name) not in (None, [], "")
        ]
        merged[name], source = _merge_values(values, rule, is_list)
        if source is not None:
            decided[name] = source
    return merged, decided


def field_rule(program: ExtractionProgram, name: str) -> tuple[str, bool]:
    """The merge rule of a top-level field, and whether the field is a list."""
    node = resolve(program.schema, program.schema["properties"][name])
    is_list = kind_of(program.schema, node) in ("scalar_array", "object_array")
    default = program.strategy.merge
    if default == "typed":
        is_bool = [t for t in types_of(node) if t != "null"] == ["boolean"]
        default = "union" if is_list else "any" if is_bool else "majority"
    elif is_list:
        default = "union"
    return program.strategy.merge_rules.get(name, default), is_list


def _merge_values(values: list[tuple[Any, int]], rule: str, is_list: bool) -> tuple[Any, int | None]:
    if not values:
        return ([] if is_list else None), None
    if rule == "union" and is_list:
        seen: dict[str, Any] = {}
        for value, _ in values:
            for item in value:
                seen.setdefault(json.dumps(item, sort_keys=True), item)
        return list(seen.values()), values[0][1]
    if rule == "majority":
        counts = Counter(json.dumps(v, sort_keys=True) for v, _ in values)
        best = max(counts.values())
        return next((v, s) for v, s in values if counts[json.dumps(v, sort_keys=True)] == best)
    if rule in ("any", "all"):
        # any: true if one part says true; all: false if one part says false.
        decisive = rule == "any"
        return next(((v, s) for v, s in values if v is decisive), values[0])
    return values[0]
