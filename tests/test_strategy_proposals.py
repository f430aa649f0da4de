"""Issue 18: GEPA proposes strategy edits from failures whose answers were never read.

Scripted student: it answers only from the text it is shown (as a careful reader would), so a field
whose answer lies outside the parts read fails, and reading more fixes it."""

from __future__ import annotations

import json

from ieflow.datasets import Example
from ieflow.optimize import Budget
from ieflow.optimize.evaluator import ExampleResult
from ieflow.optimize.gepa import GEPA, GEPAConfig
from ieflow.optimize.retrieval import MAX_TOP_K, propose_strategy, retrieval_misses
from ieflow.program import ExtractionProgram, LongDocStrategy
from ieflow.strategy import STRATEGY
from tests.support.scripted_lm import ScriptedLM
from tests.test_longdoc import NDA, answer_from, asked_fields

WINDOW = {"max_input_tokens": 600, "chunk_tokens": 300, "overlap_tokens": 0}


def contract(i: int, law: str) -> str:
    filler = " ".join(f"clause{j} of agreement {i}." for j in range(400))
    head = f"AGREEMENT {i} between Acme Corp and Beta LLC."
    return f"{head}\n{filler}\nGoverned by the laws of the State of {law}.\n"


def reader(messages: list[dict], params: dict) -> str:
    document = messages[-1]["content"]
    fields = asked_fields(params)
    values = json.loads(answer_from(document, fields))
    if "jurisdiction" in values:
        found = [w for w in ("Ohio", "Texas", "Utah", "Maine") if f"State of {w}" in document]
        values["jurisdiction"] = found[0] if found else None
    return json.dumps(values)


LAWS = ["Ohio", "Texas", "Utah", "Maine"]


def examples(n: int, offset: int = 0) -> list[Example]:
    out = []
    for i in range(offset, offset + n):
        law = LAWS[i % len(LAWS)]
        gold = {"effective_date": None, "jurisdiction": law, "party": ["Acme Corp"], "non_compete": False}
        out.append(Example(f"nda-{i}", contract(i, law), gold))
    return out


def program(**strategy) -> ExtractionProgram:
    return ExtractionProgram.from_schema(
        NDA, model="scripted/lm", strategy=LongDocStrategy(**{**WINDOW, **strategy})
    )


def failing(doc_id: str, fields: dict[str, float]) -> ExampleResult:
    return ExampleResult(doc_id, 0.5, fields, [], None, None, 0, 0, 0.0, 0.0)


def reading_gepa(tmp_path, max_steps: int) -> GEPA:
    """GEPA with the careful reader as student and a reflection model whose rules change nothing."""
    return GEPA(
        GEPAConfig(minibatch_size=3, merge_every=0, max_steps=max_steps),
        run_dir=tmp_path / "run",
        reflection_model=ScriptedLM(lambda m, p: "Read carefully.", "scripted/reflector"),
        student_client=ScriptedLM(reader),
        seed=1,
    )


def test_a_failing_field_whose_answer_was_not_read_is_a_retrieval_miss_and_one_that_was_read_is_not() -> None:
    [example] = examples(1)
    head_only = program(kind="truncate")
    [miss] = retrieval_misses(head_only, [example], [failing("nda-0", {"jurisdiction": 0.0, "party": 0.0})])
    assert miss.field == "jurisdiction" and miss.position > 0.9  # the party is in the head: read
    assert (
        retrieval_misses(program(kind="map_merge"), [example], [failing("nda-0", {"jurisdiction": 0.0})])
        == []
    )
    short = Example("s", "Governed by the laws of the State of Ohio.", example.gold)
    assert retrieval_misses(head_only, [short], [failing("s", {"jurisdiction": 0.0})]) == []


def test_the_edit_reads_more_and_says_what_was_missed() -> None:
    [example] = examples(1)
    misses = retrieval_misses(program(kind="truncate"), [example], [failing("nda-0", {"jurisdiction": 0.0})])
    proposal = propose_strategy(program(kind="truncate"), misses)
    assert proposal.component == STRATEGY and proposal.program.strategy.kind == "select"
    assert "jurisdiction in nda-0 at" in proposal.summary
    apart = propose_strategy(program(kind="select"), misses).program.strategy
    assert (apart.kind, apart.merge) == ("retrieve_merge", "typed")
    wider = propose_strategy(program(kind="retrieve_merge", top_k=2), misses)
    assert wider.program.strategy.top_k == 3 and "top_k 2 -> 3" in wider.summary
    assert "already" in propose_strategy(program(kind="retrieve_merge", top_k=MAX_TOP_K), misses).reason
    assert "every window" in propose_strategy(program(kind="map_merge"), misses).reason


def test_gepa_reads_the_answer_it_missed_and_its_cost_is_measured(tmp_path) -> None:
    train, val = examples(6), examples(4, offset=20)
    result = reading_gepa(tmp_path, max_steps=2).compile(
        program(kind="truncate"), train, val, Budget(max_metric_calls=60)
    )
    best = result.candidates[result.best_index]
    assert best.changed_component == STRATEGY and result.best_program.strategy.kind == "select"
    assert result.best_score > result.seed_score
    assert "answers not read for jurisdiction" in best.note
    # Its own serving cost is measured (here lower: the head plus one window instead of a longer head).
    assert 0 < best.tokens_per_doc != result.candidates[0].tokens_per_doc


def test_short_documents_never_get_a_strategy_edit(tmp_path) -> None:
    short = [
        Example(f"s{i}", f"Governed by the laws of the State of {LAWS[i % 4]}.", e.gold)
        for i, e in enumerate(examples(6))
    ]
    result = reading_gepa(tmp_path, max_steps=3).compile(
        program(kind="truncate"), short[:4], short[4:], Budget(max_metric_calls=30)
    )
    assert all(c.changed_component != STRATEGY for c in result.candidates)
