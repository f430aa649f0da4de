"""The optimizer benchmark's per-document costs: calls, tokens and failures come from each
extraction's trace, are kept beside the test ledger, and survive a re-run without a model call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.doc_costs import DocTrace, TraceLog, cost_summary, score_test
from benchmarks.optimizers import per_field_lines
from ieflow.datasets import Example
from ieflow.program import ExtractionProgram, LongDocStrategy
from tests.support.scripted_lm import ScriptedLM

SCHEMA = {
    "type": "object",
    "properties": {
        "company": {"type": ["string", "null"]},
        "total": {"type": ["number", "null"]},
    },
    "required": ["company", "total"],
}


def examples() -> list[Example]:
    return [
        Example(f"doc{i}", f"SHOP {i}\nTOTAL: {i}.50", {"company": f"SHOP {i}", "total": i + 0.5})
        for i in range(3)
    ]


def student(messages: list[dict], params: dict) -> str:
    """Answers only the fields its call asks for (one per call here); doc2's total is unreadable."""
    asked = list(params["response_schema"]["properties"])
    document = next(m["content"] for m in reversed(messages) if "TOTAL:" in m["content"])
    lines = document.splitlines()[-2:]
    if asked == ["company"]:
        return json.dumps({"company": lines[0]})
    if "SHOP 2" in document:
        return "no idea"
    return json.dumps({"total": float(lines[1].split()[-1])})


def program() -> ExtractionProgram:
    strategy = LongDocStrategy(kind="select", fields_per_call=1)
    return ExtractionProgram.from_schema(SCHEMA, model="scripted/lm", strategy=strategy)


def test_calls_tokens_and_failures_per_document_come_from_the_traces(tmp_path: Path) -> None:
    lm = ScriptedLM(student)
    ledger, traces = tmp_path / "test_evaluations.jsonl", tmp_path / "test_traces.jsonl"
    result = score_test(program(), examples(), ledger, traces, client=lm)

    assert result["n"] == 3 and result["traced_docs"] == 3
    # A failed field group fails the whole record: doc2 scores 0 on both fields.
    assert result["per_field"] == pytest.approx({"company": 2 / 3, "total": 2 / 3})
    log = TraceLog(traces)
    # doc0, doc1: one call per field group; doc2's total group fails (answer and repair, twice:
    # the evaluator asks a failed document once more), so its record fails.
    assert [log.get(program().hash, f"doc{i}").calls for i in range(2)] == [2, 2]
    assert result["failed"] == [{"doc_id": "doc2", "reason": log.get(program().hash, "doc2").error}]
    assert result["failed"][0]["reason"].startswith("fields total:")
    calls = [t.calls for t in (log.get(program().hash, f"doc{i}") for i in range(3))]
    assert result["calls_per_doc"] == pytest.approx(sum(calls) / 3)
    assert result["max_calls_per_doc"] == max(calls)
    assert (result["context_overflow"], result["head_only"], result["answer_cut_off"]) == (0, 0, 0)
    assert result["tokens_per_doc"] > 0


def test_a_rerun_reads_ledger_and_traces_without_calling_the_model(tmp_path: Path) -> None:
    ledger, traces = tmp_path / "test_evaluations.jsonl", tmp_path / "test_traces.jsonl"
    first = score_test(program(), examples(), ledger, traces, client=ScriptedLM(student))
    silent = ScriptedLM(lambda messages, params: pytest.fail("the model was called again"))
    again = score_test(program(), examples(), ledger, traces, client=silent)
    assert again == first
    assert silent.calls == []


def test_overflow_and_head_only_readings_are_counted() -> None:
    error = "ContextWindowExceededError 400: too long"
    overflow = DocTrace("p", "a", "select", 1, 10, 0, 2, error, "request")
    head = DocTrace("p", "b", "truncate", 1, 10, 5, 0)
    summary = cost_summary([overflow, head, None])
    assert summary["traced_docs"] == 2
    assert (summary["context_overflow"], summary["head_only"]) == (1, 1)
    assert summary["failed"] == [{"doc_id": "a", "reason": overflow.error}]
    assert summary["readings"] == {"select": 1, "truncate": 1}
    assert cost_summary([None]) == {}


def test_a_failed_answer_that_used_every_allowed_token_counts_as_cut_off() -> None:
    cut = DocTrace(
        "p", "a", "single", 2, 900, 800, 0, "invalid structured output: not valid JSON", "output", 400
    )
    short = DocTrace(
        "p", "b", "single", 2, 900, 500, 0, "invalid structured output: not valid JSON", "output", 400
    )
    whole = DocTrace("p", "c", "single", 1, 900, 400, 0, None, None, 400)
    assert (cut.cut_off, short.cut_off, whole.cut_off) == (True, False, False)
    assert cost_summary([cut, short, whole])["answer_cut_off"] == 1


def test_a_torn_trace_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    TraceLog(path).add(DocTrace("p", "a", "single", 1, 3, 4, 0))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"program": "p", "doc_')
    assert TraceLog(path).get("p", "a") == DocTrace("p", "a", "single", 1, 3, 4, 0)


def test_wide_schemas_list_fields_as_rows_and_narrow_ones_as_columns() -> None:
    narrow = {"baseline": {"per_field": {"a": 0.5, "b": 1.0}}, "optimizers": {}}
    assert per_field_lines(narrow) == ["| program | a | b |", "|---|---|---|", "| baseline | 0.50 | 1.00 |"]
    per = {f"f{i}": i / 10 for i in range(9)}
    wide = {"baseline": {"per_field": per}, "optimizers": {"gepa": {"test": {"per_field": {"f8": 1.0}}}}}
    lines = per_field_lines(wide)
    assert lines[:2] == ["| field | baseline | gepa |", "|---|---|---|"]
    assert lines[2] == "| f0 | 0.00 | 0.00 |" and lines[-1] == "| f8 | 0.80 | 1.00 |"
