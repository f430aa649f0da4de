"""Champion vs challenger: the decision rule, new-label detection, the report, and the nightly flow."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ieflow.champion import (
    Policy,
    Scorecard,
    decide,
    decision_markdown,
    label_snapshot,
    new_labels,
    skipped,
)


def card(
    score: float,
    tokens: float = 400.0,
    usd: float = 0.0,
    program: str = "p",
    n: int = 10,
    fields: dict | None = None,
) -> Scorecard:
    return Scorecard(program, score, fields or {"date": score, "total": score}, n, tokens, usd)


def test_promotes_a_clear_winner_within_the_cost_bound() -> None:
    decision = decide(card(0.70, program="a"), card(0.80, tokens=420, program="b"), Policy(0.02, 0.10))
    assert decision.promote and decision.code == "promoted"
    assert decision.score_delta == pytest.approx(0.10) and decision.cost_change == pytest.approx(0.05)
    assert "0.800 vs champion 0.700" in decision.reason and "+5% tokens/doc" in decision.reason


@pytest.mark.parametrize(
    ("challenger", "code", "words"),
    [
        (card(0.71, program="b"), "below_margin", "below the margin 0.020"),
        (card(0.70, program="b"), "below_margin", "no improvement"),
        (card(0.65, program="b"), "below_margin", "no improvement"),
        (card(0.90, tokens=480, program="b"), "too_costly", "+20% tokens/doc"),
        (card(0.90, program="a"), "same_program", "nothing better"),
    ],
)
def test_keeps_the_champion_and_says_why(challenger: Scorecard, code: str, words: str) -> None:
    decision = decide(card(0.70, program="a"), challenger, Policy(margin=0.02, max_cost_increase=0.10))
    assert not decision.promote and decision.code == code and words in decision.reason


def test_margin_and_cost_bound_are_inclusive() -> None:
    decision = decide(card(0.70, program="a"), card(0.72, tokens=440, program="b"), Policy(0.02, 0.10))
    assert decision.promote


def test_dollars_decide_when_both_programs_are_priced() -> None:
    champion = card(0.7, tokens=400, usd=0.0010, program="a")
    challenger = card(0.8, tokens=1000, usd=0.0011, program="b")  # more tokens, on a cheaper model
    decision = decide(champion, challenger, Policy(0.01, 0.10))
    assert decision.promote and decision.cost_unit == "USD/doc"


def test_refuses_to_compare_different_held_out_sets() -> None:
    with pytest.raises(ValueError, match="held-out sizes differ"):
        decide(card(0.7, n=10), card(0.8, n=12, program="b"), Policy())
    a = Scorecard("a", 0.7, {}, 2, 1.0, doc_ids=("d1", "d2"))
    b = Scorecard("b", 0.9, {}, 2, 1.0, doc_ids=("d1", "d3"))
    with pytest.raises(ValueError, match="different held-out documents"):
        decide(a, b, Policy())
    with pytest.raises(ValueError, match="margin"):
        Policy(margin=2.0)


def test_new_labels_are_added_or_changed_ones(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    (folder / "documents").mkdir(parents=True)
    schema = {"type": "object", "properties": {"x": {"type": "string"}}}
    (folder / "schema.json").write_text(json.dumps(schema))
    rows = []
    for i in range(3):
        (folder / "documents" / f"{i}.txt").write_text(f"doc {i}")
        rows.append({"doc_id": f"d{i}", "file": f"documents/{i}.txt", "record": {"x": str(i)}})
    (folder / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    before = label_snapshot(folder)
    assert new_labels(before, {}) == ["d0", "d1", "d2"] and new_labels(before, before) == []
    rows[1]["record"] = {"x": "corrected"}
    (folder / "documents" / "3.txt").write_text("doc 3")
    rows.append({"doc_id": "d3", "file": "documents/3.txt", "record": {"x": "3"}})
    (folder / "labels.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (folder / "documents" / "2.txt").write_text("doc 2, rescanned")
    assert new_labels(label_snapshot(folder), before) == ["d1", "d2", "d3"]


def test_report_shows_fields_cost_decision_and_reason() -> None:
    champion = card(0.70, fields={"date": 0.4, "total": 1.0}, program="a")
    challenger = card(0.85, tokens=410, fields={"date": 0.7, "total": 1.0}, program="b")
    decision = decide(champion, challenger, Policy(0.02, 0.1))
    text = decision_markdown(
        "receipts",
        decision,
        champion,
        challenger,
        champion_version=3,
        challenger_version=4,
        new_label_count=12,
        policy=Policy(0.02, 0.1),
    )
    assert "**Promoted challenger v4** (was v3)" in text and "Why: challenger scores 0.850" in text
    assert "| date | 0.40 | 0.70 | +0.30 |" in text and "| total | 1.00 | 1.00 | 0 |" in text
    assert "| tokens | 400 | 410 | +2% |" in text and "cost (USD)" not in text
    assert "new labelled documents: 12" in text
    kept = decision_markdown("receipts", skipped("2 new labelled documents", "not_enough_labels"))
    assert "**Kept champion**" in kept and "Why: 2 new labelled documents." in kept


# --- the nightly flow, in-process against the fake LM server -------------------------------------


def add_labels(folder: Path, examples: list, splits: list[str]) -> None:
    (folder / "documents").mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.jsonl", "a") as labels:
        for ex, split in zip(examples, splits, strict=True):
            (folder / "documents" / f"{ex.doc_id}.txt").write_text(ex.text)
            file = f"documents/{ex.doc_id}.txt"
            row = {"doc_id": ex.doc_id, "file": file, "split": split, "record": ex.gold}
            labels.write(json.dumps(row) + "\n")


@pytest.mark.slow
def test_nightly_promotes_on_new_labels_and_replays_from_caches(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ieflow.champion import label_snapshot
    from ieflow.program import ExtractionProgram
    from ieflow.registry import Registry
    from ieflow_flows.nightly import NightlyParams, nightly
    from ieflow_testing.fake_server import FakeLMServer
    from tests.support.receipts import SCHEMA, fake_models, make_examples

    data = tmp_path / "data"
    (data).mkdir()
    (data / "schema.json").write_text(json.dumps(SCHEMA))
    add_labels(data, make_examples(16), ["train"] * 8 + ["dev"] * 8)
    registry = Registry(tmp_path / "registry")
    with FakeLMServer(answer=fake_models) as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "fake-key")
        seed = ExtractionProgram.from_schema(SCHEMA, model=server.model_name("student"), name="receipts")
        registry.register("receipts", seed, dataset=str(data))
        registry.write_state("receipts", "nightly", {"labels_seen": label_snapshot(data)})
        params = NightlyParams(
            registry=str(tmp_path / "registry"),
            min_new_labels=4,
            margin=0.05,
            max_cost_increase=0.5,
            max_metric_calls=40,
            work_dir=str(tmp_path / "work"),
            reflection_model=server.model_name("reflector"),
            seed=1,
        )

        quiet = nightly(params)["receipts"]
        assert quiet["decision"] == "not_enough_labels" and server.stats.requests == 0

        add_labels(data, make_examples(6, offset=16), ["train", "dev"] * 3)
        night = nightly(params)["receipts"]
        assert night["decision"] == "promoted", night
        assert night["challenger_score"] > night["champion_score"] + 0.05 and night["new_labels"] == 6
        champion = registry.champion("receipts")
        assert champion.version == 2 and champion.lineage["parent_version"] == 1
        assert "day-first" in champion.load_program().components["field:date"]
        assert champion.source_run["kind"] == "prefect"
        assert champion.scores["holdout"] == night["challenger_score"]
        state = registry.read_state("receipts", "nightly")
        assert [r["decision"] for r in state["runs"]] == ["not_enough_labels", "promoted"]

        # Unchanged data and programs: a forced review of the new champion, twice; the second is
        # served entirely from the run folder's checkpoint and ledgers.
        forced = params.model_copy(update={"force": True})
        first = nightly(forced)["receipts"]
        assert first["promoted"] is False and registry.champion("receipts").version == 2
        requests = server.stats.requests
        started = time.perf_counter()
        replay = nightly(forced)["receipts"]
        replay_s = time.perf_counter() - started
        assert server.stats.requests == requests, "a replay of an unchanged night made model calls"
        assert replay["decision"] == first["decision"] and replay["reason"] == first["reason"]
        print(f"\nnightly replay of an unchanged night: {replay_s:.1f} s, 0 model calls")
        assert replay_s < 30
