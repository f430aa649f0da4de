"""Output formats: the student copies a value as printed (constrained to what the document prints),
code converts it; GEPA proposes a format when the training data shows how a field is printed."""

from __future__ import annotations

import json

import pytest

from ieflow.datasets import Example
from ieflow.formats import convert_record, date_notation, get_format, render_record
from ieflow.optimize import Budget
from ieflow.optimize.facts import suggest_formats
from ieflow.optimize.gepa import GEPA, GEPAConfig
from ieflow.program import Demo, ExtractionProgram
from tests.support.scripted_lm import ScriptedLM

SCHEMA = {
    "type": "object",
    "properties": {
        "date": {"type": ["string", "null"], "format": "date", "description": "Receipt date."},
        "total": {"type": ["number", "null"], "description": "Total paid."},
    },
    "required": ["date", "total"],
}
RECEIPT = "SHOP 12\nDATE: 03/02/2018 10:01\nSUBTOTAL 1,200.00\nTOTAL 1,234.50\nPAID 2018-01-01 ref 12.5"


def program(**formats: str) -> ExtractionProgram:
    return ExtractionProgram.from_schema(SCHEMA, model="scripted/lm").replace(formats=formats)


def test_date_format_constrains_the_field_to_dates_the_document_prints() -> None:
    schema = program(date="date:day-first").response_schema(RECEIPT)
    date_node = schema["properties"]["date"]["anyOf"][0]
    assert date_node == {"type": "string", "enum": ["03/02/2018"]}
    # Without a document the printed shape is enforced by a pattern instead.
    assert "pattern" in program(date="date:day-first").response_schema()["properties"]["date"]["anyOf"][0]
    # Without a format the ISO format stays.
    assert program().response_schema(RECEIPT)["properties"]["date"]["anyOf"][0]["format"] == "date"


def test_amount_format_offers_the_printed_amounts_as_strings() -> None:
    node = program(total="amount:printed").response_schema(RECEIPT)["properties"]["total"]["anyOf"][0]
    assert node == {"type": "string", "enum": ["1,200.00", "1,234.50"]}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("date:day-first", "03/02/2018", "2018-02-03"),
        ("date:month-first", "03/02/2018", "2018-03-02"),
        ("date:day-first", "3-2-18", "2018-02-03"),
        ("date:day-first", "2018-01-31", "2018-01-31"),
        ("date:day-first", "not a date", "not a date"),  # kept: validation quarantines it
        ("date:day-first", None, None),
        ("amount:printed", "1,234.50", 1234.5),
        ("amount:printed", "12.5x", "12.5x"),
    ],
)
def test_convert(name: str, value: object, expected: object) -> None:
    assert get_format(name).convert(value) == expected


def test_convert_record_maps_nested_and_list_paths() -> None:
    record = {"lines": [{"d": "03/02/2018"}, {"d": None}], "head": {"d": "01/12/2019"}, "x": 1}
    out = convert_record(record, {"lines[].d": "date:day-first", "head.d": "date:day-first"})
    assert out == {"lines": [{"d": "2018-02-03"}, {"d": None}], "head": {"d": "2019-12-01"}, "x": 1}
    assert record["lines"][0]["d"] == "03/02/2018"  # the input is not mutated


def test_demos_show_the_value_as_the_document_prints_it() -> None:
    demo = Demo(doc_id="d1", text=RECEIPT, record={"date": "2018-02-03", "total": 1234.5})
    prog = program(date="date:day-first", total="amount:printed").replace(demos=[demo])
    shown = json.loads(prog.messages("other document")[2]["content"])
    assert shown == {"date": "03/02/2018", "total": "1,234.50"}
    assert render_record({"date": "2019-12-01"}, {"date": "date:day-first"}, "no date here") == {
        "date": "01/12/2019"
    }


def test_formats_are_part_of_the_hash_and_survive_a_round_trip(tmp_path) -> None:
    plain, formatted = program(), program(date="date:day-first")
    assert plain.hash != formatted.hash
    assert "formats" not in plain.to_dict()  # programs without formats keep their old hashes
    formatted.save(tmp_path / "p.json")
    loaded = ExtractionProgram.load(tmp_path / "p.json")
    assert loaded.formats == {"date": "date:day-first"} and loaded.hash == formatted.hash


def test_unknown_format_or_field_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        program(date="date:sideways")
    with pytest.raises(ValueError, match="unknown field"):
        program(when="date:day-first")


def test_date_notation_and_suggestions_come_from_the_training_data() -> None:
    assert date_notation("DATE: 03/02/2018", "2018-02-03") == "day-first (DD/MM/YYYY)"
    assert date_notation("DATE: 02/03/2018", "2018-02-03") == "month-first (MM/DD/YYYY)"
    examples = [
        Example(
            doc_id=f"d{i}",
            text=f"DATE: {10 + i}/02/2018\nTOTAL {i}.50",
            gold={"date": f"2018-02-{10 + i}", "total": i + 0.5},
        )
        for i in range(5)
    ]
    assert suggest_formats(program(), examples) == {"date": "date:day-first", "total": "amount:printed"}


# -- GEPA proposes a format where no written rule helps -------------------------------------------


def _examples(n: int, offset: int) -> list[Example]:
    out = []
    for i in range(n):
        day, month = 1 + (i + offset) % 12, 1 + (i + offset + 5) % 12  # swapped, still a valid date
        text = f"Shop {i}\nDate: {day:02d}/{month:02d}/2021\nTOTAL: {10 + i}.50"
        out.append(
            Example(
                doc_id=f"d{i + offset}",
                text=text,
                gold={"date": f"2021-{month:02d}-{day:02d}", "total": 10 + i + 0.5},
            )
        )
    return out


def constrained_student(messages: list[dict], params: dict) -> str:
    """A weak student: it ignores written rules and pours printed digits into the ISO shape, but
    when the grammar offers only printed values (a format), it copies one."""
    document = next(m["content"] for m in reversed(messages) if m["content"].startswith("Document:"))
    date_node = params["response_schema"]["properties"]["date"]["anyOf"][0]
    day, month = document.split("Date: ")[1][:5].split("/")
    date = date_node["enum"][0] if "enum" in date_node else f"2021-{day}-{month}"
    total = float(document.split("TOTAL: ")[1])
    return json.dumps({"date": date, "total": total})


def test_gepa_proposes_the_date_format_when_rules_do_not_help(tmp_path) -> None:
    gepa = GEPA(
        GEPAConfig(minibatch_size=3, merge_every=0),
        run_dir=tmp_path / "run",
        reflection_model=ScriptedLM(lambda m, p: "Read the date carefully.", "scripted/reflector"),
        student_client=ScriptedLM(constrained_student),
        seed=1,
    )
    result = gepa.compile(program(), _examples(8, 0), _examples(6, 100), Budget(max_metric_calls=60))
    assert result.seed_score == pytest.approx(0.5)
    assert result.best_score == pytest.approx(1.0)
    assert result.best_program.formats["date"] == "date:day-first"
    assert any("format date:day-first" in lesson for lesson in result.best_program.lessons)
