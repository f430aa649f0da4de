"""Property tests of the scorer (hypothesis), on every shared dataset schema plus a nested one."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ieflow.schema import kind_of, resolve, types_of
from ieflow.scoring import Scorer, aggregate

DATASETS = Path("/work/shared/datasets")
EXTRA_SCHEMA = {
    "type": "object",
    "properties": {
        "flag": {"type": ["boolean", "null"]},
        "count": {"type": "integer"},
        "status": {"enum": ["open", "closed"]},
        "when": {"type": ["string", "null"], "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string", "x-ieflow-match": "fuzzy"}},
        "amounts": {"type": "array", "items": {"type": "number"}},
        "address": {
            "type": "object",
            "properties": {"city": {"type": ["string", "null"]}, "zip": {"type": "string"}},
        },
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "sizes": {"type": "array", "items": {"type": "string"}},
                    "dims": {"type": "object", "properties": {"w": {"type": "number"}}},
                },
            },
        },
    },
}
SCHEMAS = {p.parent.name: json.loads(p.read_text()) for p in sorted(DATASETS.glob("*/schema.json"))}
SCHEMAS["nested"] = EXTRA_SCHEMA
SCORERS = {name: Scorer(schema) for name, schema in SCHEMAS.items()}

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
numbers = st.floats(allow_nan=False, allow_infinity=False, width=32) | st.integers(-(10**9), 10**9)
junk = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


def values_for(schema: dict[str, Any], node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that a record of this schema could hold (gold-like, not always schema-valid strings)."""
    node = resolve(schema, node)
    kind = kind_of(schema, node)
    if kind == "object":
        return st.fixed_dictionaries({k: values_for(schema, v) for k, v in node["properties"].items()})
    if kind in ("object_array", "scalar_array"):
        return st.lists(values_for(schema, node.get("items", {})), max_size=4)
    types = types_of(node)
    options: list[st.SearchStrategy[Any]] = [st.none()] if "null" in types else []
    if isinstance(node.get("enum"), list):
        options.append(st.sampled_from(node["enum"]))
    elif node.get("format") == "date":
        options.append(st.dates(date(1900, 1, 1), date(2100, 1, 1)).map(date.isoformat))
    elif node.get("format") == "date-time":
        options.append(st.datetimes().map(lambda d: d.isoformat(timespec="seconds")))
    if "string" in types and not node.get("format"):
        options.append(texts)
    if "number" in types or "integer" in types:
        options.append(numbers if "number" in types else st.integers(-(10**6), 10**6))
    if "boolean" in types:
        options.append(st.booleans())
    return st.one_of(options or [texts])


def records(name: str) -> st.SearchStrategy[dict[str, Any]]:
    return values_for(SCHEMAS[name], SCHEMAS[name])


def perturbed(name: str) -> st.SearchStrategy[Any]:
    """Predictions: another record, a record with junk values and missing keys, or not a record at all."""
    keys = list(SCHEMAS[name]["properties"])
    partial = st.dictionaries(st.sampled_from(keys), junk, max_size=len(keys))
    return records(name) | partial | junk


names = st.sampled_from(sorted(SCHEMAS))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.data())
def test_a_record_scored_against_itself_is_one(data: st.DataObject) -> None:
    name = data.draw(names)
    gold = data.draw(records(name))
    rs = SCORERS[name].score(gold, gold)
    assert rs.score == 1.0, rs.feedback
    assert rs.feedback == [] and all(fs.score == 1.0 for fs in rs.fields.values())


@SETTINGS
@given(st.data())
def test_scores_are_in_unit_interval_and_never_raise(data: st.DataObject) -> None:
    name = data.draw(names)
    gold = data.draw(records(name))
    pred = data.draw(perturbed(name))
    rs = SCORERS[name].score(pred, gold)
    assert 0.0 <= rs.score <= 1.0
    for fs in rs.fields.values():
        assert 0.0 <= fs.score <= 1.0 + 1e-9
        assert (fs.feedback is None) == fs.correct
        assert fs.tp >= -1e-9 and fs.fp >= -1e-9 and fs.fn >= -1e-9
    assert list(rs.fields) == SCORERS[name].paths  # every top-level and nested path, in schema order
    json.dumps(rs.to_dict())
    agg = aggregate([rs])
    assert 0.0 <= agg.micro <= 1.0 and 0.0 <= agg.macro <= 1.0


@SETTINGS
@given(st.data())
def test_set_fields_are_order_invariant(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["kleister_nda", "invoice2data", "nested"]))
    gold = data.draw(records(name))
    pred = data.draw(records(name))
    shuffled = {
        key: data.draw(st.permutations(value)) if isinstance(value, list) else value
        for key, value in pred.items()
    }
    scorer = SCORERS[name]
    a, b = scorer.score(pred, gold), scorer.score(shuffled, gold)
    assert a.score == pytest.approx(b.score, abs=1e-9)
    for key in pred:
        assert a.fields[key].score == pytest.approx(b.fields[key].score, abs=1e-9)


@SETTINGS
@given(st.data())
def test_missing_fields_never_raise_and_count_as_null(data: st.DataObject) -> None:
    name = data.draw(names)
    gold = data.draw(records(name))
    keys = data.draw(st.sets(st.sampled_from(list(gold))))
    pred = {k: v for k, v in gold.items() if k in keys}
    rs = SCORERS[name].score(pred, gold)
    for key in gold:
        if key in keys or gold[key] in (None, []):
            assert rs.fields[key].score == 1.0
        assert 0.0 <= rs.fields[key].score <= 1.0
