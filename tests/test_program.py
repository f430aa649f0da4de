"""ExtractionProgram: identity, persistence, prompt assembly, grammar schema, long documents."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ieflow.extraction import extract
from ieflow.longdoc import (
    count_tokens,
    demo_tokens,
    document_budget,
    merge_records,
    select_chunks,
    split_windows,
)
from ieflow.program import Demo, ExtractionProgram, LongDocStrategy, grammar_schema
from ieflow.program_diff import changed_components
from ieflow_cli.main import app
from tests.support.scripted_lm import ScriptedLM

SCHEMA = {
    "title": "NDA",
    "type": "object",
    "properties": {
        "effective_date": {"type": ["string", "null"], "format": "date", "description": "Start date."},
        "jurisdiction": {"type": ["string", "null"], "description": "Governing law."},
        "party": {"type": "array", "items": {"type": "string"}, "description": "Parties."},
    },
    "required": ["effective_date", "jurisdiction", "party"],
}


def program(**kwargs) -> ExtractionProgram:
    return ExtractionProgram.from_schema(SCHEMA, model="scripted/lm", **kwargs)


def test_components_come_from_the_schema_and_the_hash_tracks_content() -> None:
    p = program()
    assert p.components["field:jurisdiction"] == "Governing law."
    assert set(p.components) == {"instruction", "field:effective_date", "field:jurisdiction", "field:party"}
    same = program()
    assert p.hash == same.hash
    changed = p.replace(components={"field:jurisdiction": "US state of the governing law."})
    assert changed.hash != p.hash and p.components["field:jurisdiction"] == "Governing law."
    # Lessons and metadata ride along but do not change what the model sees.
    assert p.replace(lessons=["x"], metadata={"a": 1}).hash == p.hash
    with pytest.raises(KeyError):
        p.replace(components={"field:nope": "x"})


def test_save_load_roundtrip_and_hand_edits_are_caught(tmp_path) -> None:
    p = program().replace(
        demos=[Demo("d1", "text", {"effective_date": None, "jurisdiction": "Ohio", "party": []})]
    )
    p.save(tmp_path / "p.json")
    loaded = ExtractionProgram.load(tmp_path / "p.json")
    assert loaded.hash == p.hash and loaded.demos == p.demos
    data = json.loads((tmp_path / "p.json").read_text())
    data["components"]["instruction"] = "edited"
    (tmp_path / "edited.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="edited by hand"):
        ExtractionProgram.load(tmp_path / "edited.json")
    del data["hash"]
    (tmp_path / "accepted.json").write_text(json.dumps(data))
    assert ExtractionProgram.load(tmp_path / "accepted.json").components["instruction"] == "edited"


def test_diff_names_the_changed_components(tmp_path) -> None:
    a = program()
    b = a.replace(components={"field:party": "Every party, as named."})
    assert changed_components(a, b) == ["field:party"]
    a.save(tmp_path / "a.json")
    b.save(tmp_path / "b.json")
    result = CliRunner().invoke(app, ["program", "diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert result.exit_code == 0
    assert "component field:party" in result.output and "+Every party, as named." in result.output


def test_grammar_schema_keeps_formats_of_nullable_fields_and_bounds_arrays() -> None:
    g = grammar_schema(SCHEMA)
    date = g["properties"]["effective_date"]
    assert date == {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]}
    assert g["properties"]["party"]["maxItems"] == 25
    assert "description" not in g["properties"]["jurisdiction"]["anyOf"][0]


def test_prompt_lists_fields_with_types_and_demos_come_as_turns() -> None:
    p = program().replace(
        demos=[Demo("d1", "Demo doc", {"effective_date": None, "jurisdiction": "Ohio", "party": []})]
    )
    messages = p.messages("The document")
    assert "- effective_date (string, YYYY-MM-DD, or null): Start date." in messages[0]["content"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert json.loads(messages[2]["content"])["jurisdiction"] == "Ohio"
    assert messages[-1]["content"] == "Document:\nThe document"


def test_extract_returns_the_record_and_a_trace_and_records_garbage_without_raising() -> None:
    good = ScriptedLM(lambda m, p: '{"effective_date": "2020-01-02", "jurisdiction": "Ohio", "party": ["A"]}')
    record, trace = extract(program(), "doc", good)
    assert record["jurisdiction"] == "Ohio" and trace.error is None and trace.calls == 1
    garbage = ScriptedLM(lambda m, p: "I cannot help with that")
    record, trace = extract(program(), "doc", garbage)
    assert record is None
    assert "invalid structured output" in trace.error and trace.raw == "I cannot help with that"
    assert trace.calls == 2  # the answer and one repair attempt


def long_document() -> str:
    filler = " ".join(f"clause{i} of the agreement text." for i in range(400))
    return (
        "MUTUAL NONDISCLOSURE AGREEMENT between Acme Corp and Beta LLC.\n"
        + filler
        + "\nThis agreement is governed by the laws of the State of Ohio.\n"
        + filler
    )


def test_split_windows_cover_the_text_with_overlap() -> None:
    text = long_document()
    windows = split_windows(text, chunk_tokens=300, overlap_tokens=30)
    assert len(windows) > 3
    assert all(count_tokens(w) <= 300 for w in windows)
    assert windows[0].startswith("MUTUAL") and text.rstrip().endswith(windows[-1].rstrip()[-40:])
    with pytest.raises(ValueError):
        split_windows(text, 10, 10)


def test_select_strategy_keeps_the_chunks_that_answer_each_field() -> None:
    p = program(
        strategy=LongDocStrategy(kind="select", max_input_tokens=900, chunk_tokens=300, overlap_tokens=0)
    )
    chunks = split_windows(long_document(), 300, 0)
    chosen = select_chunks(p, chunks)
    assert chosen[0] == 0  # the head, where titles and parties are
    assert any("governed by the laws" in chunks[i] for i in chosen)
    assert sum(count_tokens(chunks[i]) for i in chosen) <= 900


def test_map_merge_merges_per_field_rules() -> None:
    p = program(
        strategy=LongDocStrategy(kind="map_merge", merge="majority", merge_rules={"effective_date": "first"})
    )
    records = [
        {"effective_date": None, "jurisdiction": "Ohio", "party": ["A"]},
        {"effective_date": "2020-01-01", "jurisdiction": "Texas", "party": ["B", "A"]},
        {"effective_date": "2021-01-01", "jurisdiction": "Texas", "party": []},
    ]
    merged = merge_records(p, records)
    assert merged == {"effective_date": "2020-01-01", "jurisdiction": "Texas", "party": ["A", "B"]}


def test_long_documents_go_through_the_chosen_strategy() -> None:
    seen = []

    def script(messages, params):
        seen.append(messages[-1]["content"])
        return '{"effective_date": null, "jurisdiction": "Ohio", "party": ["Acme Corp"]}'

    text = long_document()
    mapped = program(strategy=LongDocStrategy(kind="map_merge", max_input_tokens=500, chunk_tokens=400))
    record, trace = extract(mapped, text, ScriptedLM(script))
    assert trace.strategy == "map_merge" and trace.calls == len(seen) > 3
    assert record["party"] == ["Acme Corp"]
    seen.clear()
    selected = program(strategy=LongDocStrategy(kind="select", max_input_tokens=900, chunk_tokens=300))
    record, trace = extract(selected, text, ScriptedLM(script))
    assert trace.strategy == "select" and len(seen) == 1 and count_tokens(seen[0]) < 1000
    truncated = program(strategy=LongDocStrategy(kind="truncate", max_input_tokens=200))
    _, trace = extract(truncated, text, ScriptedLM(script))
    assert trace.strategy == "truncate"
    with pytest.raises(ValueError):
        LongDocStrategy(kind="nope")


def test_demos_count_against_the_document_budget_so_the_prompt_does_not_grow() -> None:
    # Found on deepform: two demos on top of a full 2000-token document overflowed the local
    # model's 4096-token context. The demos now share `max_input_tokens` with the document.
    seen = []

    def script(messages, params):
        seen.append(messages)
        return '{"effective_date": null, "jurisdiction": "Ohio", "party": []}'

    strategy = LongDocStrategy(kind="select", max_input_tokens=900, chunk_tokens=300, overlap_tokens=30)
    bare = program(strategy=strategy)
    demo_text = " ".join(f"word{i}" for i in range(300))
    record = {"effective_date": None, "jurisdiction": "Ohio", "party": ["Acme"]}
    shown = bare.replace(demos=[Demo("d1", demo_text, record)])
    assert document_budget(bare) == 900
    assert document_budget(shown) == 900 - demo_tokens(shown) < 900 - 300
    for p in (bare, shown):
        seen.clear()
        _, trace = extract(p, long_document(), ScriptedLM(script))
        assert trace.strategy == "select" and len(seen) == 1
        document_parts = [m["content"] for m in seen[0] if m["role"] != "system"]
        assert sum(count_tokens(part) for part in document_parts) <= 900 + 3 * len(document_parts)
    # A document that fits without demos but not beside them is read in part, not sent whole.
    text = " ".join(f"term{i}." for i in range(400))  # 800 tokens
    seen.clear()
    _, trace = extract(shown, text, ScriptedLM(script))
    assert trace.strategy == "select" and count_tokens(seen[0][-1]["content"]) <= document_budget(shown)


def test_a_demo_of_a_long_document_shows_the_chunks_that_answer_the_fields() -> None:
    from ieflow.datasets import Example
    from ieflow.optimize.edits import make_demo

    p = program(strategy=LongDocStrategy(kind="select", max_input_tokens=900, chunk_tokens=300))
    gold = {"effective_date": None, "jurisdiction": "Ohio", "party": ["Acme Corp", "Beta LLC"]}
    example = Example(doc_id="nda-1", text=long_document(), gold=gold)
    demo = make_demo(p, example, max_tokens=120)
    assert count_tokens(demo.text) <= 120 + 3  # the "..." joins between chunks
    assert "governed by the laws of the State of Ohio" in demo.text  # deep in the document
    assert demo.text.startswith("MUTUAL NONDISCLOSURE AGREEMENT")  # the head is always kept
    short = Example(doc_id="nda-2", text="NDA between A and B, governed by Ohio law.", gold=gold)
    assert make_demo(p, short, max_tokens=120).text == short.text
