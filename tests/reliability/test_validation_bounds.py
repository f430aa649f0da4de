"""Issue 16, what hangs: the great-expectations validation of records stays bounded in time for a
schema `pattern` built to backtrack and for a schema of 5,000 fields, and still names every failure."""

from __future__ import annotations

import time

import ieflow  # noqa: F401  (offline env defaults first)
from ieflow.validation import RecordValidator

EVIL = "^(a+)+$"  # Python's `re` backtracks 2^n times on n a's and a character that fails the match


def test_a_backtracking_pattern_is_matched_in_linear_time() -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL}}}
    validator = RecordValidator(schema)
    validator.validate({"warm-up": {"code": "a"}})  # GE's context and suite, built once
    answer = "a" * 39 + "!"  # 40 characters: hours for `re`
    started = time.perf_counter()
    report = validator.validate({"evil": {"code": answer}, "good": {"code": "aaaa"}, "none": {"code": None}})
    elapsed = time.perf_counter() - started
    assert elapsed < 30, elapsed
    assert report.errors == []
    assert report.row_failures == {"evil": ["expect_column_values_to_match_regex(code, pattern)"]}


def test_a_format_regex_is_matched_in_linear_time_too() -> None:
    # ieflow's own email regex backtracks quadratically in `re`: 30 s for this value (measured).
    schema = {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}
    validator = RecordValidator(schema)
    validator.validate({"warm-up": {"email": "a@b.c"}})
    long_value = "a@" + "b." * 40_000 + " "
    started = time.perf_counter()
    report = validator.validate(
        {"long": {"email": long_value}, "good": {"email": "x@y.org"}, "bad": {"email": "x@y"}}
    )
    assert time.perf_counter() - started < 20
    assert report.row_failures == {
        "bad": ["expect_column_values_to_match_regex(email)"],
        "long": ["expect_column_values_to_match_regex(email)"],
    }


def test_a_pattern_checks_strings_only_as_json_schema_does() -> None:
    schema = {
        "type": "object",
        "properties": {"id": {"type": ["string", "integer"], "pattern": "^[A-Z]{2}-"}},
    }
    report = RecordValidator(schema).validate(
        {"ok": {"id": "AB-1"}, "number": {"id": 12}, "bad": {"id": "ab-1"}}
    )
    assert report.row_failures == {"bad": ["expect_column_values_to_match_regex(id, pattern)"]}


def test_five_thousand_fields_validate_in_bounded_time_and_every_failure_is_named() -> None:
    n_fields = 5_000
    names = [f"f{i:05d}" for i in range(n_fields)]
    schema = {
        "type": "object",
        "required": names[::2],  # every other field must be there and not null
        "properties": {name: {"type": "string" if i % 3 else "number"} for i, name in enumerate(names)},
    }
    good = {name: (f"v{i}" if i % 3 else float(i)) for i, name in enumerate(names)}
    bad = dict(good, f00001=7, f00003="3.5", f00004=None, f04998=None)
    started = time.perf_counter()
    validator = RecordValidator(schema)
    report = validator.validate({"good": good, "bad": bad})
    elapsed = time.perf_counter() - started
    assert elapsed < 120, elapsed
    assert report.errors == [] and report.batch_failures == []
    assert report.row_failures == {
        "bad": [
            "expect_column_values_to_be_in_type_list(raw:f00001)",  # a number where a string belongs
            "expect_column_values_to_be_in_type_list(raw:f00003)",  # a string where a number belongs
            "expect_column_values_to_not_be_null(raw:f00004)",  # required, null
            "expect_column_values_to_not_be_null(raw:f04998)",
        ]
    }
    assert report.counts["expect_column_values_to_not_be_null(raw:f04998)"] == 1
