"""The scorer: comparators per type, nulls, sets, arrays of objects, feedback and aggregates."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ieflow.schema import SchemaError
from ieflow.scoring import Scorer, aggregate, kleister_labels, kleister_score
from ieflow.scoring.compare import parse_date_readings, parse_number

DATASETS = Path("/work/shared/datasets")

RECEIPT = {
    "type": "object",
    "properties": {
        "company": {"type": ["string", "null"]},
        "date": {"type": ["string", "null"], "format": "date"},
        "total": {"type": ["number", "null"]},
        "subtotal": {"type": ["number", "null"]},
        "status": {"type": ["string", "null"], "enum": ["paid", "due", None]},
        "note": {"type": ["string", "null"], "x-ieflow-match": "fuzzy"},
    },
}
GOLD = {
    "company": "C W Khoo Hardware Sdn Bhd",
    "date": "2018-03-01",
    "total": 1800.0,
    "subtotal": 1700.0,
    "status": "paid",
    "note": None,
}


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer(RECEIPT)


def field(scorer: Scorer, **changes: object):
    return scorer.score({**GOLD, **changes}, GOLD)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("$1,800.00", 1800.0),
        ("1.234,56 €", 1234.56),
        ("RM 9.30", 9.3),
        ("(12.50)", -12.5),
        ("12,5", 12.5),
        ("1,234,567", 1234567.0),
        ("USD 4.11", 4.11),
        ("-3", -3.0),
        (7, 7.0),
        ("abc", None),
        ("12 months", None),
    ],
)
def test_parse_number(text: object, value: float | None) -> None:
    assert parse_number(text) == value


def test_parse_date_readings_keeps_both_ambiguous_readings() -> None:
    readings, iso = parse_date_readings("03/01/2018")
    assert {str(d) for d in readings} == {"2018-03-01", "2018-01-03"} and not iso
    assert parse_date_readings("2018-03-01")[1] is True
    assert parse_date_readings("March 2018")[0] == []  # no day: not silently the 1st
    assert [str(d) for d in parse_date_readings("1 March 2018")[0]] == ["2018-03-01"]


def test_gold_scores_one_with_no_feedback(scorer: Scorer) -> None:
    rs = scorer.score(GOLD, GOLD)
    assert rs.score == 1.0 and rs.feedback == []
    assert all(fs.correct and fs.feedback is None for fs in rs.fields.values())


def test_strings_are_normalized(scorer: Scorer) -> None:
    rs = field(scorer, company="  c w  KHOO hardware sdn bhd. ")
    assert rs.fields["company"].score == 1.0


def test_date_in_other_notation_is_a_format_error(scorer: Scorer) -> None:
    fs = field(scorer, date="03/01/2018").fields["date"]
    assert fs.score == 0.5 and fs.error_kind == "format"
    assert fs.feedback == (
        "date: predicted '03/01/2018' but expected '2018-03-01' (format: dates must be ISO YYYY-MM-DD)."
    )


def test_wrong_date_and_swapped_day_month(scorer: Scorer) -> None:
    fs = field(scorer, date="2018-01-03").fields["date"]
    assert fs.score == 0.0 and fs.error_kind == "wrong_value" and "day and month are swapped" in fs.feedback
    assert field(scorer, date="next week").fields["date"].error_kind == "invalid"


def test_numbers_with_currency_and_tolerance(scorer: Scorer) -> None:
    assert field(scorer, total=1800.004).fields["total"].score == 1.0
    fs = field(scorer, total="$1,800.00").fields["total"]
    assert fs.error_kind == "format" and "without currency symbols" in fs.feedback
    fs = field(scorer, total=18000.0).fields["total"]
    assert fs.score == 0 and "factor of 10" in fs.feedback


def test_value_of_another_field_is_named(scorer: Scorer) -> None:
    fs = field(scorer, total=1700.0).fields["total"]
    assert fs.error_kind == "wrong_entity" and "the value of 'subtotal'" in fs.feedback


def test_string_error_kinds(scorer: Scorer) -> None:
    assert field(scorer, company="C W Khoo").fields["company"].error_kind == "partial"
    assert (
        field(scorer, company="C W Khoo Hardware Sdn Bhd, Selangor").fields["company"].error_kind
        == "near_miss"
    )
    fs = field(scorer, company="Guardian Health").fields["company"]
    assert fs.error_kind == "wrong_entity" and "different entity" in fs.feedback


def test_nulls_both_ways(scorer: Scorer) -> None:
    fs = field(scorer, note="a note").fields["note"]
    assert (fs.score, fs.error_kind, fs.fp, fs.fn) == (0.0, "extra", 1.0, 0.0)
    assert "answer null when it is absent" in fs.feedback
    fs = field(scorer, company=None).fields["company"]
    assert (fs.score, fs.error_kind, fs.fp, fs.fn) == (0.0, "missing", 0.0, 1.0)
    assert field(scorer, company="N/A").fields["company"].error_kind == "missing"
    assert field(scorer, note="N/A").fields["note"].error_kind == "format"  # null written as text


def test_missing_keys_and_unknown_keys(scorer: Scorer) -> None:
    pred = {k: v for k, v in GOLD.items() if k != "total"} | {"total_amount": 1800.0}
    rs = scorer.score(pred, GOLD)
    assert rs.fields["total"].error_kind == "missing"
    assert "unknown key 'total_amount'" in rs.fields["total"].feedback
    assert rs.unknown_keys == ["total_amount"]


def test_enum_and_fuzzy(scorer: Scorer) -> None:
    assert field(scorer, status="PAID").fields["status"].error_kind == "format"
    assert field(scorer, status="refunded").fields["status"].error_kind == "invalid"
    assert field(scorer, status="due").fields["status"].error_kind == "wrong_value"
    gold = {**GOLD, "note": "delivered to the back door"}
    assert scorer.score({**gold, "note": "delivered to the back-door!"}, gold).fields["note"].score == 1.0


def test_unparseable_output_misses_every_field(scorer: Scorer) -> None:
    rs = scorer.score(None, GOLD)
    assert rs.score == 0.0 and len(rs.feedback) == len(RECEIPT["properties"])
    assert all(fs.error_kind == "missing" for fs in rs.fields.values())
    assert "could not be parsed" in rs.feedback[0]
    assert "JSON list" in scorer.score([1, 2], GOLD).feedback[0]  # type: ignore[arg-type]


def test_sets_score_f1_with_feedback() -> None:
    scorer = Scorer(json.loads((DATASETS / "kleister_nda/schema.json").read_text()))
    gold = {
        "effective_date": None,
        "jurisdiction": "Oregon",
        "party": ["Eric Dean Sprunk", "Nike Inc."],
        "term": None,
    }
    fs = scorer.score({**gold, "party": ["Nike Inc", "Adidas AG", "Puma SE"]}, gold).fields["party"]
    assert (fs.precision, fs.recall) == pytest.approx((1 / 3, 1 / 2))
    assert fs.score == pytest.approx(0.4) and fs.error_kind == "wrong_count"
    assert "'Eric Dean Sprunk'" in fs.feedback and "not expected" in fs.feedback
    assert (
        scorer.score({**gold, "party": ["nike inc.", "eric dean sprunk"]}, gold).fields["party"].score == 1.0
    )
    assert scorer.score({**gold, "party": []}, gold).fields["party"].error_kind == "missing"
    wrapped = scorer.score({**gold, "party": "Nike Inc."}, {**gold, "party": ["Nike Inc."]}).fields["party"]
    assert wrapped.score == 0.5 and "must be a JSON list" in wrapped.feedback


def test_arrays_of_objects_are_matched_before_comparing() -> None:
    scorer = Scorer(json.loads((DATASETS / "invoice2data/schema.json").read_text()))
    lines = [
        {"name": "Office Chair", "qty": 1.0, "price_unit": 70.0},
        {"name": "Olive Oil", "qty": 2.0, "price_unit": 1.0},
        {"name": "Truffles", "qty": 15.0, "price_unit": 10.0},
    ]
    gold = {"issuer": "Azure", "invoice_number": "1", "date": "2023-03-20", "amount": 1.0, "lines": lines}
    shuffled = scorer.score({**gold, "lines": lines[::-1]}, gold)
    assert shuffled.score == 1.0 and shuffled.fields["lines[].name"].score == 1.0
    wrong = [dict(lines[2], price_unit=11.0), lines[0]]
    rs = scorer.score({**gold, "lines": wrong}, gold)
    fs = rs.fields["lines"]
    assert fs.error_kind == "wrong_count" and "predicted 2 items but expected 3" in fs.feedback
    assert "Olive Oil" in fs.feedback  # the item not found is shown
    price = rs.fields["lines[].price_unit"]
    assert (
        "1 of 2 matched items wrong" in price.feedback
        and "predicted 11.0 but expected 10.0" in price.feedback
    )
    assert rs.fields["lines[].name"].recall == pytest.approx(2 / 3)


def test_nested_objects_have_leaf_paths() -> None:
    schema = {
        "type": "object",
        "properties": {
            "address": {
                "type": "object",
                "properties": {"city": {"type": ["string", "null"]}, "zip": {"type": ["string", "null"]}},
            }
        },
    }
    rs = Scorer(schema).score(
        {"address": {"city": "Paris", "zip": "75002"}}, {"address": {"city": "Paris", "zip": "75001"}}
    )
    assert rs.fields["address.city"].score == 1.0 and rs.fields["address.zip"].score == 0.0
    assert rs.fields["address"].score == 0.5 and rs.feedback[0].startswith("address: 1 of 2 sub-fields wrong")


def test_unknown_comparator_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="unknown x-ieflow-match"):
        Scorer({"type": "object", "properties": {"a": {"type": "string", "x-ieflow-match": "telepathy"}}})


def test_aggregate_micro_macro_and_per_field(scorer: Scorer) -> None:
    scores = [scorer.score(GOLD, GOLD), field(scorer, company=None), field(scorer, note="x")]
    agg = aggregate(scores)
    assert agg.n == 3 and agg.per_field["company"] == pytest.approx(2 / 3)
    assert agg.per_field_f1["company"] == pytest.approx(2 * 2 / (2 * 2 + 1))
    assert agg.per_field_f1["note"] == 0.0  # only a false positive
    assert 0 < agg.micro < 1 and 0 < agg.macro < 1
    assert agg.error_counts == {"company": {"missing": 1}, "note": {"extra": 1}}
    json.dumps(agg.to_dict())
    json.dumps(scores[1].to_dict())


def test_feedback_truncates_long_values(scorer: Scorer) -> None:
    fs = field(scorer, company="x" * 500).fields["company"]
    assert len(fs.feedback) < 260 and "…" in fs.feedback


def test_kleister_score_matches_the_challenge_metric() -> None:
    gold = {
        "effective_date": "2001-04-18",
        "jurisdiction": "Oregon",
        "party": ["Nike Inc.", "Eric Sprunk"],
        "term": None,
    }
    assert kleister_labels(gold) == {
        "effective_date=2001-04-18",
        "jurisdiction=OREGON",
        "party=NIKE_INC.",
        "party=ERIC_SPRUNK",
    }
    pred = {
        "effective_date": "04/18/2001",
        "jurisdiction": "oregon",
        "party": ["Nike Inc."],
        "term": "2 years",
    }
    result = kleister_score([pred, gold], [gold, gold])
    # pred: tp 2 (jurisdiction, Nike), fp 2 (date notation, term), fn 2; gold vs gold: tp 4.
    assert (result.precision, result.recall) == pytest.approx((6 / 8, 6 / 8))
    assert result.per_field["term"] == 0.0 and result.mean_f1 == pytest.approx((0.5 + 1) / 2)
    assert kleister_score([None], [gold]).f1 == 0.0


def test_scoring_is_cheap_for_flat_schemas(scorer: Scorer) -> None:
    wrong = {**GOLD, "company": "Other Shop", "date": "03/01/2018"}
    start = time.perf_counter()
    for _ in range(2000):
        scorer.score(wrong, GOLD)
    assert 2000 / (time.perf_counter() - start) > 1000  # records per second, with feedback
