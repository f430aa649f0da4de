"""Source grounding: each value's span in the ingested text, found through its type, in bounded time."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ieflow.grounding import DocumentIndex, Evidence, GroundingLimits, ground_record, schema_path
from ieflow.grounding.match import find_date, find_number, find_text

DATA = Path(__file__).resolve().parents[1] / "data" / "receipts"
SCHEMA = {
    "type": "object",
    "properties": {
        "company": {"type": ["string", "null"]},
        "date": {"type": ["string", "null"], "format": "date"},
        "total": {"type": ["number", "null"]},
        "paid": {"type": ["boolean", "null"]},
        "tax_code": {"type": ["string", "null"], "x-ieflow-derived": True},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "amount": {"type": "number"}},
            },
        },
        "parties": {"type": "array", "items": {"type": "string"}},
    },
}


def _by_path(evidence: list[Evidence]) -> dict[str, Evidence]:
    return {e.path: e for e in evidence}


def test_a_real_receipt_grounds_each_value_at_its_printed_span() -> None:
    row = json.loads((DATA / "labels.jsonl").read_text().splitlines()[0])
    text = (DATA / row["file"]).read_text()
    schema = json.loads((DATA / "schema.json").read_text())
    found = _by_path(ground_record(row["record"], DocumentIndex(text), schema))
    assert found["company"].method == "exact"
    assert found["address"].method == "normalized"  # same words, other spacing and line breaks
    assert found["address"].matched_text.startswith("NO.2&4,JALAN") and "\n" in found["address"].matched_text
    assert (found["date"].method, found["date"].matched_text) == ("normalized", "09/01/2019")
    assert (found["total"].method, found["total"].matched_text) == ("normalized", "31.00")
    for e in found.values():
        assert text[e.char_start : e.char_end] == e.matched_text and e.page == 1


def test_nested_objects_and_arrays_are_grounded_leaf_by_leaf_and_nulls_have_no_row() -> None:
    text = "Invoice\nWidget A 1,234.50\nGadget 7.00\nParties: Acme Corp and Beta LLC\n"
    record = {
        "company": None,
        "lines": [{"name": "Widget A", "amount": 1234.5}, {"name": "Gadget", "amount": 7}],
        "parties": ["Acme Corp", "Beta LLC"],
        "paid": True,
        "tax_code": "GST-6",
    }
    found = _by_path(ground_record(record, DocumentIndex(text), SCHEMA))
    assert set(found) == {
        "lines[0].name",
        "lines[0].amount",
        "lines[1].name",
        "lines[1].amount",
        "parties[0]",
        "parties[1]",
        "paid",
        "tax_code",
    }
    assert found["lines[0].amount"].matched_text == "1,234.50"
    assert found["lines[1].amount"].matched_text == "7.00"
    assert found["parties[1]"].method == "exact"
    assert found["paid"].method == "derived" and found["tax_code"].method == "derived"
    assert schema_path("lines[1].amount") == "lines[].amount" and schema_path("parties[1]") == "parties"


def test_numbers_are_found_through_the_notations_documents_print() -> None:
    index = DocumentIndex("Gesamt: 1.234,50 EUR; count 12; refund (3.10)")
    assert index.text[slice(*_span(find_number(index, 1234.5)))] == "1.234,50"
    assert find_number(index, 12)[1] == "exact"
    assert find_number(index, -3.1)[1] == "normalized"
    assert find_number(index, 99.0) is None


def test_a_date_is_read_in_the_programs_day_month_order() -> None:
    index = DocumentIndex("Issued 07/01/18, due 3rd March 2018, shipped Jan 9, 2018")
    assert find_date(index, "2018-01-07", dayfirst=True)[0].char_start == 7
    assert find_date(index, "2018-07-01", dayfirst=True) is None  # month-first reading refused
    assert find_date(index, "2018-07-01", dayfirst=False) is not None
    assert index.text[slice(*_span(find_date(index, "2018-03-03")))] == "3rd March 2018"
    assert index.text[slice(*_span(find_date(index, "2018-01-09")))] == "Jan 9, 2018"


def test_ocr_slips_match_fuzzily_with_a_score_and_inventions_are_not_found() -> None:
    index = DocumentIndex("SYARIKAT PERNIAGAAN G1N KEE\nNO 290 JALAN AIR PANAS")
    span, method = find_text(index, "SYARIKAT PERNIAGAAN GIN KEE")
    assert method == "fuzzy" and 0.8 <= span.score < 1.0
    assert index.text[span.char_start : span.char_end].startswith("SYARIKAT")
    assert find_text(index, "TESCO EXTRA STORES") is None


def test_pages_come_from_the_ingested_page_offsets() -> None:
    text = "page one\n\npage two holds ACME"
    evidence = ground_record({"company": "ACME"}, DocumentIndex(text, page_offsets=[0, 10]), SCHEMA)
    assert evidence[0].page == 2


def test_unknown_pages_are_null_not_page_one() -> None:
    """A documents table from before ingest kept page offsets: the span is known, the page not."""
    (evidence,) = ground_record({"company": "ACME"}, DocumentIndex("ACME", page_offsets=None), SCHEMA)
    assert (evidence.char_start, evidence.page) == (0, None)


def test_an_enum_code_the_text_does_not_print_is_derived_but_a_free_string_is_not_found() -> None:
    schema = {
        "type": "object",
        "properties": {
            "method": {"type": "string", "enum": ["bank_transfer", "card"]},
            "note": {"type": "string"},
        },
    }
    index = DocumentIndex("Payment: by wire to our account. Paid by card.")
    found = _by_path(ground_record({"method": "bank_transfer", "note": "bank_transfer"}, index, schema))
    assert found["method"].method == "derived" and found["note"].method == "not_found"
    printed = _by_path(ground_record({"method": "card"}, index, schema))["method"]
    assert printed.method == "exact" and index.text[printed.char_start : printed.char_end] == "card"


def test_a_300_page_document_grounds_a_wide_record_in_bounded_time() -> None:
    page = (
        "Section {n}. The parties agree that the Supplier shall deliver goods worth 1,{n:03d}.00 USD.\n" * 40
    )
    text = "\n\n".join(page.format(n=n) for n in range(300))
    record = {"parties": [f"party missing {i}" for i in range(200)] + ["the Supplier shall deliver"]}
    index = DocumentIndex(text)
    started = time.perf_counter()
    evidence = ground_record(record, index, SCHEMA, limits=GroundingLimits(max_seconds=30))
    elapsed = time.perf_counter() - started
    assert evidence[-1].method == "normalized" or evidence[-1].method == "exact"
    assert all(e.method == "not_found" for e in evidence[:-1])
    assert elapsed < 30  # typically well under a second; the bound guards against quadratic work


def test_the_per_document_budget_marks_what_it_did_not_look_for_as_skipped() -> None:
    record = {"parties": [f"p{i}" for i in range(10)]}
    evidence = ground_record(record, DocumentIndex("p1 p2"), SCHEMA, limits=GroundingLimits(max_values=3))
    assert [e.method for e in evidence].count("skipped") == 7


def _span(found: tuple) -> tuple[int, int]:
    return found[0].char_start, found[0].char_end
