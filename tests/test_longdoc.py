"""Long documents and wide schemas: model-aware token counts, field groups, typed merges, field-aware
retrieval and the `strategy` component."""

from __future__ import annotations

import json
import math

import pytest

from ieflow.extraction import extract
from ieflow.lm import tokens
from ieflow.lm.tokens import ESTIMATE_MARGIN, count_tokens, estimate_tokens, register_token_counter
from ieflow.longdoc import document_budget, group_by_region, plan_reading, split_windows
from ieflow.merge import merge_with_sources
from ieflow.program import STRATEGY, Demo, ExtractionProgram, LongDocStrategy
from ieflow.program_diff import changed_components, diff_programs
from tests.support.scripted_lm import ScriptedLM

NDA = {
    "title": "NDA",
    "type": "object",
    "properties": {
        "effective_date": {"type": ["string", "null"], "format": "date", "description": "Start date."},
        "jurisdiction": {"type": ["string", "null"], "description": "Governing law."},
        "party": {"type": "array", "items": {"type": "string"}, "description": "Parties."},
        "non_compete": {"type": ["boolean", "null"], "description": "Non-compete clause: may not compete."},
    },
    "required": ["effective_date", "jurisdiction", "party", "non_compete"],
}


def nda(model: str = "scripted/lm", **strategy) -> ExtractionProgram:
    return ExtractionProgram.from_schema(NDA, model=model, strategy=LongDocStrategy(**strategy))


def long_nda() -> str:
    filler = " ".join(f"clause{i} of the agreement text." for i in range(300))
    return (
        "MUTUAL NONDISCLOSURE AGREEMENT between Acme Corp and Beta LLC.\n"
        + filler
        + "\nThis agreement is governed by the laws of the State of Ohio.\n"
        + filler
        + "\nThe Recipient may not compete with the Discloser: a non-compete for two years.\n"
        + filler
    )


def asked_fields(params: dict) -> list[str]:
    return list(params["response_schema"]["properties"])


def answer_from(document: str, fields: list[str]) -> str:
    """What a careful reader of `document` answers for `fields`."""
    values = {
        "effective_date": None,
        "jurisdiction": "Ohio" if "State of Ohio" in document else None,
        "party": ["Acme Corp"] if "Acme" in document else [],
        "non_compete": "non-compete" in document,
    }
    return json.dumps({name: values[name] for name in fields})


# -- token counts ------------------------------------------------------------------------------


def test_an_unknown_tokenizer_is_the_estimate_times_the_margin_and_no_model_is_the_estimate() -> None:
    text = "Invoice 4471-22, total $1,204.50 due 03/04/2020."
    assert count_tokens(text) == estimate_tokens(text)
    assert count_tokens(text, "nowhere/model") == math.ceil(estimate_tokens(text) * ESTIMATE_MARGIN)
    assert tokens.counter_for("nowhere/model").source == "estimate"
    assert tokens.counter_for("gpt-4o").source == "litellm"
    assert count_tokens(text, "scripted/lm") == estimate_tokens(text)  # tests/support registers it


def test_a_long_document_is_tokenized_once() -> None:
    calls = []

    def counter(text: str) -> int:
        calls.append(len(text))
        return len(text)

    register_token_counter("counted/", counter)
    program = nda("counted/m", kind="select", max_input_tokens=100_000)
    text = long_nda()
    assert plan_reading(program, text).strategy == "single"
    assert plan_reading(program, text).strategy == "single"
    assert calls == [len(text)]


def test_the_local_model_counts_with_its_own_tokenizer() -> None:
    counter = tokens.counter_for("local/qwen2.5-coder-0.5b")
    if counter.source != "gguf":
        pytest.skip("the local model's weights are not installed")
    # Qwen's BPE splits numbers into single digits: far more tokens than the estimate's one.
    assert count_tokens("4471220931", "local/qwen2.5-coder-0.5b") == 10 > estimate_tokens("4471220931")


def test_a_document_that_fit_the_estimate_but_not_the_model_is_read_as_a_long_document() -> None:
    text = " ".join(f"term{i}." for i in range(400))  # 800 estimated tokens, 1840 counted
    assert estimate_tokens(text) <= 900 < count_tokens(text, "nowhere/model")
    assert plan_reading(nda(kind="select", max_input_tokens=900), text).strategy == "single"
    reading = plan_reading(nda("nowhere/model", kind="select", max_input_tokens=900), text)
    assert reading.strategy == "select" and len(reading.parts) == 1
    assert count_tokens(reading.parts[0], "nowhere/model") <= 900 + 3 * ESTIMATE_MARGIN * len(
        reading.chunks_used
    )
    truncated = plan_reading(nda("nowhere/model", kind="truncate", max_input_tokens=900), text)
    assert count_tokens(truncated.parts[0], "nowhere/model") <= 900 and text.startswith(truncated.parts[0])


def test_windows_fit_the_models_count_even_where_text_is_dense() -> None:
    register_token_counter("digits/", lambda text: sum(c.isdigit() for c in text) + estimate_tokens(text))
    text = "Plain words here and there. " * 200 + "Totals: " + " ".join(str(10**9 + i) for i in range(300))
    windows = split_windows(text, 300, 30, "digits/m")
    assert all(count_tokens(w, "digits/m") <= 300 for w in windows)
    assert windows[0].startswith("Plain") and windows[-1].rstrip().endswith(str(10**9 + 299))
    assert len(split_windows(text, 300, 30)) < len(windows)  # the estimate alone cuts fewer, denser ones


# -- field groups --------------------------------------------------------------------------------


def test_fields_are_read_one_group_per_call_and_merged_into_one_valid_record() -> None:
    prompts = []

    def script(messages, params):
        prompts.append(messages[0]["content"])
        return answer_from(messages[-1]["content"], asked_fields(params))

    program = nda(field_groups=[["jurisdiction", "non_compete"]], fields_per_call=1)
    assert program.field_groups() == [["jurisdiction", "non_compete"], ["effective_date"], ["party"]]
    text = "NDA between Acme Corp and Beta LLC under the laws of the State of Ohio; a non-compete applies."
    record, trace = extract(program, text, ScriptedLM(script))
    assert record == {
        "jurisdiction": "Ohio",
        "non_compete": True,
        "effective_date": None,
        "party": ["Acme Corp"],
    }
    assert trace.strategy == "single" and trace.calls == 3 and trace.error is None
    assert "- jurisdiction" in prompts[0] and "- party" not in prompts[0] and "- party" in prompts[2]


def test_a_group_whose_every_call_fails_fails_the_record_with_the_fields_named() -> None:
    def script(messages, params):
        return (
            "no"
            if "party" in asked_fields(params)
            else answer_from(messages[-1]["content"], asked_fields(params))
        )

    record, trace = extract(nda(fields_per_call=2), "NDA of Acme Corp.", ScriptedLM(script))
    assert record is None and trace.error_kind == "output"
    assert trace.error.startswith("fields party, non_compete:")


def test_the_grouping_is_in_the_program_json_and_old_programs_keep_their_hash(tmp_path) -> None:
    plain = nda()
    assert "fields_per_call" not in plain.to_dict()["strategy"]  # unchanged programs, unchanged hash
    grouped = nda(field_groups=[["party"]], fields_per_call=2)
    grouped.save(tmp_path / "p.json")
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["strategy"]["field_groups"] == [["party"]] and saved["strategy"]["fields_per_call"] == 2
    assert ExtractionProgram.load(tmp_path / "p.json").hash == grouped.hash != plain.hash
    with pytest.raises(ValueError, match="unknown top-level fields"):
        nda(field_groups=[["nope"]])
    with pytest.raises(ValueError, match="one group only"):
        LongDocStrategy(field_groups=[["party"], ["party"]])


def test_a_narrowed_program_asks_only_its_fields_and_shows_demos_for_them() -> None:
    demo = Demo(
        "d1", "NDA of X under Texas law.", {"effective_date": None, "jurisdiction": "Texas", "party": ["X"]}
    )
    narrowed = nda().replace(demos=[demo]).for_fields(["jurisdiction"])
    assert list(narrowed.response_schema()["properties"]) == ["jurisdiction"]
    assert narrowed.messages("doc")[2]["content"] == '{"jurisdiction": "Texas"}'
    assert set(narrowed.components) == {"instruction", "field:jurisdiction"}


# -- merges and retrieval --------------------------------------------------------------------------


def test_typed_merge_votes_scalars_unions_lists_and_any_true_decides_a_flag() -> None:
    program = nda(kind="map_merge", merge="typed")
    records = [
        {"effective_date": None, "jurisdiction": "Texas", "party": ["A"], "non_compete": False},
        {"effective_date": "2020-01-01", "jurisdiction": "Ohio", "party": ["B", "A"], "non_compete": False},
        {"effective_date": None, "jurisdiction": "Ohio", "party": [], "non_compete": True},
    ]
    merged, decided = merge_with_sources(program, records, [4, 7, 9])
    assert merged == {
        "effective_date": "2020-01-01",
        "jurisdiction": "Ohio",
        "party": ["A", "B"],
        "non_compete": True,
    }
    assert decided == {"effective_date": 7, "jurisdiction": 7, "party": 4, "non_compete": 9}
    tie, decided = merge_with_sources(program, records[:2], [0, 1])
    assert tie["jurisdiction"] == "Texas" and decided["jurisdiction"] == 0  # first on ties
    strict = nda(kind="map_merge", merge="typed", merge_rules={"non_compete": "all"})
    assert merge_with_sources(strict, records, [0, 1, 2])[0]["non_compete"] is False


def test_each_group_reads_the_chunks_that_answer_its_fields_and_the_clause_flag_comes_from_its_passage() -> (
    None
):
    seen: dict[str, list[str]] = {}

    def script(messages, params):
        fields = asked_fields(params)
        seen.setdefault(",".join(fields), []).append(messages[-1]["content"])
        return answer_from(messages[-1]["content"], fields)

    reading_plan = {"kind": "retrieve_merge", "merge": "typed", "top_k": 1, "fields_per_call": 2}
    window = {"max_input_tokens": 600, "chunk_tokens": 300, "overlap_tokens": 0}
    program = nda(**reading_plan, **window, field_groups=[["jurisdiction"], ["non_compete"]])
    text = long_nda()
    reading = plan_reading(program, text)
    assert reading.strategy == "retrieve_merge" and all(g.merged for g in reading.groups)
    record, trace = extract(program, text, ScriptedLM(script))
    assert record["jurisdiction"] == "Ohio" and record["non_compete"] is True
    assert any("governed by the laws" in part for part in seen["jurisdiction"])
    assert not any("governed by the laws" in part for part in seen["non_compete"])
    flag_chunk = trace.decided_by["non_compete"]
    assert "non-compete" in split_windows(text, 300, 0, "scripted/lm")[flag_chunk]
    assert trace.calls == sum(len(g.parts) for g in reading.groups) < len(split_windows(text, 300, 0)) * 3


def test_select_with_groups_makes_one_call_per_group_within_the_budget() -> None:
    calls = []

    def script(messages, params):
        calls.append(messages[-1]["content"])
        return answer_from(messages[-1]["content"], asked_fields(params))

    program = nda(kind="select", max_input_tokens=700, chunk_tokens=300, fields_per_call=2)
    record, trace = extract(program, long_nda(), ScriptedLM(script))
    assert trace.strategy == "select" and trace.calls == 2 == len(calls)
    assert all(count_tokens(c.removeprefix("Document:\n")) <= document_budget(program) + 9 for c in calls)
    assert record["party"] == ["Acme Corp"] and record["non_compete"] is True


# -- the strategy component --------------------------------------------------------------------------


def test_the_strategy_is_a_component_replace_and_the_diff_show() -> None:
    base = nda(kind="select")
    assert json.loads(base.component(STRATEGY))["top_k"] == 2
    changed = base.replace(
        components={STRATEGY: '{"kind": "retrieve_merge", "top_k": 4, "fields_per_call": 2}'}
    )
    assert changed.strategy.top_k == 4 and changed.strategy.chunk_tokens == base.strategy.chunk_tokens
    assert changed.hash != base.hash and base.strategy.top_k == 2
    assert changed_components(base, changed) == [STRATEGY]
    assert '"top_k": 4' in diff_programs(base, changed)
    for bad, reason in [("[1]", "JSON object"), ('{"topk": 3}', "unknown strategy keys"), ("{", "not JSON")]:
        with pytest.raises(ValueError, match=reason):
            base.replace(components={STRATEGY: bad})


def test_fields_that_live_in_the_same_region_are_grouped_together() -> None:
    program = nda(kind="retrieve_merge", chunk_tokens=300)
    grouped = group_by_region(program, [long_nda(), long_nda().replace("Ohio", "Texas")], group_size=2)
    groups = grouped.strategy.field_groups
    assert sorted(map(sorted, groups)) == sorted(
        map(sorted, [["effective_date", "party"], ["jurisdiction", "non_compete"]])
    )
    assert groups[-1] == ["jurisdiction", "non_compete"]  # both deep in the document, in text order
    assert grouped.field_groups() == groups and program.strategy.field_groups == []
