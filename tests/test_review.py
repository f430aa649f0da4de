"""ieflow.review: one nightly review's record, without Prefect (the flow is tested in test_champion)."""

from __future__ import annotations

from pathlib import Path

from ieflow.champion import Policy, Scorecard, decide, skipped
from ieflow.program import ExtractionProgram
from ieflow.registry import Registry
from ieflow.review import (
    MAX_RUNS_KEPT,
    Challenger,
    HoldoutCards,
    ReviewResult,
    not_enough_labels,
    register_challenger,
    run_key,
    summary_row,
    with_outcome,
)

SCHEMA = {"type": "object", "properties": {"total": {"type": ["number", "null"]}}}


def program(instruction: str) -> ExtractionProgram:
    return ExtractionProgram.from_schema(SCHEMA, model="openai/student", instruction=instruction)


def cards(champion: ExtractionProgram, challenger: ExtractionProgram, old: float, new: float) -> HoldoutCards:
    return HoldoutCards(
        Scorecard(champion.hash, old, {"total": old}, 10, 400.0),
        Scorecard(challenger.hash, new, {"total": new}, 10, 410.0),
    )


def test_a_skipped_review_records_no_scores() -> None:
    result = ReviewResult(not_enough_labels(2, 5), champion_version=3, new_labels=2)
    outcome = result.outcome(at="t", run={"kind": "python"}, champion_after=3)
    assert list(outcome) == [
        "at",
        "kind",
        "decision",
        "promoted",
        "reason",
        "headline",
        "champion_before",
        "champion_after",
        "challenger",
        "new_labels",
        "champion_score",
        "challenger_score",
    ]
    assert outcome["decision"] == "not_enough_labels" and outcome["champion_score"] is None
    assert "fewer than min_new_labels=5" in outcome["reason"]
    assert result.verdict() == "kept v3: waiting for labels"
    assert "**Kept champion v3**" in result.markdown("receipts", Policy())


def test_history_is_bounded() -> None:
    state = {"labels_seen": {"a": "x"}}
    for i in range(MAX_RUNS_KEPT + 5):
        state = with_outcome(state, {"at": str(i)})
    assert len(state["runs"]) == MAX_RUNS_KEPT and state["last_run"] == str(MAX_RUNS_KEPT + 4)
    assert state["runs"][0]["at"] == "5" and state["labels_seen"] == {"a": "x"}


def test_register_challenger_registers_a_new_program_and_promotes_a_winner(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    champion = registry.register("receipts", program("one"))
    new = program("two")
    holdout = cards(champion.load_program(), new, 0.5, 0.8)
    decision = decide(holdout.champion, holdout.challenger, Policy(0.01, 0.5))
    challenger = Challenger(new, tmp_path / "run", "run-id")
    version = register_challenger(
        registry,
        "receipts",
        champion,
        challenger,
        holdout,
        decision,
        dataset="data",
        optimizer="gepa",
        new_labels=6,
        run={"kind": "python"},
    )
    assert version == 2 and registry.champion("receipts").version == 2
    entry = registry.get("receipts", 2)
    assert entry.scores["holdout"] == 0.8 and entry.scores["champion_holdout"] == 0.5
    assert entry.lineage["parent_version"] == 1 and entry.lineage["new_labels"] == 6
    assert entry.source_run == {
        "kind": "python",
        "optimize_flow_run_id": "run-id",
        "run_dir": str(tmp_path / "run"),
    }
    now = registry.get("receipts", 2)
    same = Challenger(now.load_program(), tmp_path / "run", "run-id")
    version = register_challenger(
        registry,
        "receipts",
        now,
        same,
        holdout,
        skipped("x"),
        dataset="data",
        optimizer="gepa",
        new_labels=0,
        run={},
    )
    assert version is None and len(registry.versions("receipts")) == 2


def test_run_key_and_summary_row() -> None:
    key = run_key("a" * 16, "b" * 12, {"seed": 0, "optimizer": "gepa"})
    assert key == run_key("a" * 16, "b" * 12, {"optimizer": "gepa", "seed": 0})
    assert key.startswith("aaaaaaaaaa-bbbbbbbbbb-") and key != run_key("a" * 16, "b" * 12, {"seed": 1})
    row = summary_row(
        "receipts",
        {
            "decision": "promoted",
            "champion_before": 1,
            "champion_after": 2,
            "champion_score": 0.5,
            "challenger_score": 0.75,
            "headline": "+0.250",
        },
    )
    assert (
        row["champion"] == "v1 → v2" and row["challenger score"] == "0.750" and row["decision"] == "promoted"
    )
