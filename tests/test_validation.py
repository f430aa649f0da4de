"""ieflow.validation: the great-expectations suite from a JSON Schema, per-row failures, Data Docs."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

import ieflow  # noqa: F401  (offline env defaults first)
from ieflow.schema import load_schema
from ieflow.validation import (
    RecordValidator,
    build_data_docs,
    flatten,
    load_expectations,
    schema_expectations,
)

ROOT = Path(__file__).resolve().parents[1]
PO_SCHEMA = load_schema(ROOT / "schemas" / "purchase_order.json")
GOLD = {
    json.loads(line)["doc_id"]: json.loads(line)["record"]
    for line in (ROOT / "data" / "purchase_orders" / "labels.jsonl").read_text().splitlines()
}


@pytest.fixture(scope="module")
def validator() -> RecordValidator:
    # One per module: building the suite and a GE context is the slow part, not validating.
    return RecordValidator(PO_SCHEMA)


def names(schema: dict) -> dict[str, str]:
    return {spec.name: spec.table for spec in schema_expectations(schema)}


def test_the_suite_covers_types_required_enums_formats_ranges_and_lengths() -> None:
    suite = names(PO_SCHEMA)
    expected = {
        "expect_column_values_to_not_be_null(raw:po_number)": "",  # required and not nullable
        "expect_column_values_to_be_in_type_list(raw:total)": "",
        "expect_column_values_to_be_in_set(currency)": "",
        "expect_column_values_to_match_strftime_format(po_date)": "",
        "expect_column_values_to_match_regex(buyer.email)": "",
        "expect_column_values_to_match_regex(buyer.address.country, pattern)": "",
        "expect_column_value_lengths_to_be_between(po_number)": "",
        "expect_column_values_to_be_between(len:line_items)": "",
        "expect_column_values_to_be_null(missing:)": "",
        "expect_column_values_to_be_null(extra:buyer)": "",
        "expect_column_values_to_be_between(line_items[].quantity)": "line_items[]",
        "expect_column_values_to_be_between(line_items[].tax_rate)": "line_items[]",
        "expect_column_values_to_not_be_null(raw:line_items[].description)": "line_items[]",
        "expect_column_values_to_be_in_type_list(raw:approved_by[])": "approved_by[]",
    }
    for name, table in expected.items():
        assert suite.get(name) == table, name
    # Nullable fields are not required to be non-null, and a nullable object's children neither.
    assert "expect_column_values_to_not_be_null(raw:po_date)" not in suite
    assert "expect_column_values_to_not_be_null(raw:ship_to.city)" not in suite


def test_gold_records_pass(validator: RecordValidator) -> None:
    report = validator.validate(GOLD)
    assert report.row_failures == {} and report.errors == [] and report.batch_failures == []
    assert {r["meta"]["active_batch_definition"]["data_asset_name"] for r in report.results} == {"records"}
    assert len(report.results) == len(validator.tables)


def test_each_violation_is_named_on_its_own_document(validator: RecordValidator) -> None:
    records = {}
    bad_date = copy.deepcopy(GOLD["po-1001"])
    bad_date["po_date"] = "2024-02-30"  # the right shape, not a calendar date
    records["bad-date"] = bad_date
    bad_item = copy.deepcopy(GOLD["po-1002"])
    bad_item["line_items"][1]["quantity"] = -3
    bad_item["line_items"][0]["unit"] = "crate"
    records["bad-item"] = bad_item
    shape = copy.deepcopy(GOLD["po-1003"])
    del shape["total"]
    shape["comment"] = "not in the schema"
    shape["subtotal"] = "708.00"  # a string where a number belongs
    shape["currency"] = "YEN"
    records["bad-shape"] = shape
    records["not-an-object"] = ["po", 1]
    records["ok"] = GOLD["po-1001"]
    report = validator.validate(records)
    failures = report.row_failures
    assert failures["bad-date"] == ["expect_column_values_to_match_strftime_format(po_date)"]
    assert failures["bad-item"] == [
        "expect_column_values_to_be_between(line_items[].quantity)",
        "expect_column_values_to_be_in_set(line_items[].unit)",
    ]
    assert failures["bad-shape"] == [
        "expect_column_values_to_be_in_set(currency)",
        "expect_column_values_to_be_in_type_list(raw:subtotal)",
        "expect_column_values_to_be_null(extra:)",
        "expect_column_values_to_be_null(missing:)",
    ]
    assert "expect_column_values_to_not_be_null(raw:po_number)" in failures["not-an-object"]
    assert "ok" not in failures
    assert report.counts["expect_column_values_to_be_null(missing:)"] == 2


def test_a_wrong_type_does_not_break_range_or_format_checks() -> None:
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": ["string", "null"], "format": "date"},
            "amount": {"type": ["number", "null"], "minimum": 0},
        },
    }
    report = RecordValidator(schema).validate(
        {"a": {"when": 20240101, "amount": "12"}, "b": {"when": "2024-01-01", "amount": 3}}
    )
    assert report.errors == []
    assert report.row_failures == {
        "a": [
            "expect_column_values_to_be_in_type_list(raw:amount)",
            "expect_column_values_to_be_in_type_list(raw:when)",
        ]
    }


def test_user_expectations_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "expectations.json"
    path.write_text(
        json.dumps(
            [
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": "total", "max_value": 2000},
                    "meta": {"name": "total under 2000"},
                },
                {
                    "expectation_type": "expect_column_values_to_be_between",
                    "kwargs": {"column": "line_items[].unit_price", "max_value": 100},
                },
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "no_such_column"}},
            ]
        )
    )
    specs = load_expectations(path)
    assert [s.table for s in specs] == ["", "line_items[]", ""]
    assert specs[1].name == "expect_column_values_to_be_between(line_items[].unit_price, max_value=100)"
    report = RecordValidator(PO_SCHEMA, specs).validate(GOLD)
    assert report.row_failures == {
        "po-1002": ["total under 2000"],
        "po-1003": ["expect_column_values_to_be_between(line_items[].unit_price, max_value=100)"],
    }
    # A broken user expectation is reported, not turned into a failure of every row.
    assert len(report.errors) == 1 and "no_such_column" in report.errors[0]


def test_bad_user_expectations_are_refused() -> None:
    with pytest.raises(ValueError, match="'type' must name"):
        load_expectations([{"kwargs": {"column": "total"}}])
    twice = [
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "total"},
            "meta": {"name": "same"},
        }
    ] * 2
    with pytest.raises(ValueError, match="unique"):
        RecordValidator(PO_SCHEMA, load_expectations(twice))


def test_validate_a_polars_frame_of_typed_records(validator: RecordValidator) -> None:
    record = copy.deepcopy(GOLD["po-1001"])
    record["po_date"] = dt.date(2024, 3, 4)  # typed columns hold dates, not text
    record["delivery_date"] = dt.date(2024, 3, 18)
    broken = copy.deepcopy(record)
    broken["line_items"][0]["tax_rate"] = 1.5
    frame = pl.DataFrame([{"doc_id": "a", **record}, {"doc_id": "b", **broken}])
    assert isinstance(frame.schema["buyer"], pl.Struct)
    report = validator.validate_frame(frame)
    assert report.row_failures == {"b": ["expect_column_values_to_be_between(line_items[].tax_rate)"]}


def test_flatten_makes_one_table_per_array_keyed_by_doc_id() -> None:
    tables = flatten(PO_SCHEMA, {"x": GOLD["po-1001"]})
    assert set(tables) == {"", "line_items[]", "approved_by[]"}
    assert len(tables["line_items[]"]) == 3 and {r["doc_id"] for r in tables["line_items[]"]} == {"x"}
    root = tables[""][0]
    assert root["buyer.address.city"] == "Oakland" and root["len:line_items"] == 3
    assert root["missing:"] is None and root["extra:buyer"] is None


def test_data_docs_render_offline(tmp_path: Path, validator: RecordValidator) -> None:
    bad = copy.deepcopy(GOLD["po-1001"])
    bad["currency"] = "XXX"
    report = validator.validate({**GOLD, "bad": bad})
    index = build_data_docs(validator, [("shard-1", r) for r in report.results], tmp_path / "docs")
    assert Path(index).is_file()
    pages = list((tmp_path / "docs" / "validations").rglob("*.html"))
    assert len(pages) == len(report.results)
    assert (tmp_path / "docs" / "expectations" / "purchaseorder.html").is_file()
    text = "".join(p.read_text() for p in pages)
    assert "XXX" in text and "currency" in text


def test_data_docs_under_a_relative_output_folder(
    tmp_path: Path, validator: RecordValidator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ieflow demo` writes under runs/demo: GE's site store takes only absolute folders."""
    monkeypatch.chdir(tmp_path)
    report = validator.validate(GOLD)
    index = build_data_docs(validator, [("shard-1", r) for r in report.results], "runs/demo/data_docs")
    assert Path(index).is_absolute() and Path(index).is_file()
    assert (tmp_path / "runs" / "demo" / "data_docs" / "index.html").is_file()
