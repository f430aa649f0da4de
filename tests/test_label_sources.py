"""Which labels optimize scores with and which the report scores on: gold where any exists,
silver (teacher, weighted by agreement), or a judge when a folder has no labels at all."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ieflow.labelfree.sources import (
    ScoringChoice,
    gold_examples,
    has_labels,
    report_examples,
    unlabelled_splits,
)
from ieflow.optimize.base import OptimizationResult
from ieflow.optimize.candidates import Candidate
from ieflow.program import ExtractionProgram
from ieflow.report import optimization_markdown
from tests.support.receipts import SCHEMA, make_examples


def write_documents(folder: Path, n: int, labels: bool = False) -> None:
    (folder / "documents").mkdir(parents=True)
    (folder / "schema.json").write_text(json.dumps(SCHEMA))
    rows = []
    for ex in make_examples(n):
        (folder / "documents" / f"{ex.doc_id}.txt").write_text(ex.text)
        rows.append(
            json.dumps({"doc_id": ex.doc_id, "file": f"documents/{ex.doc_id}.txt", "record": ex.gold})
        )
    if labels:
        (folder / "labels.jsonl").write_text("\n".join(rows) + "\n")


def test_reports_score_on_gold_wherever_there_is_any() -> None:
    gold = make_examples(3)
    teacher = [replace(ex, label_source="teacher", agreement={"date": 0.5}) for ex in make_examples(2, 50)]
    examples, words = report_examples(teacher + gold)
    assert examples == gold_examples(teacher + gold) == gold and words == "gold (3 documents)"
    examples, words = report_examples(teacher)
    assert examples == teacher and words == "silver (teacher, weighted by agreement) (no gold: 2 documents)"
    unlabelled = [replace(ex, gold={}, label_source="none") for ex in gold]
    assert report_examples(unlabelled, "openai/judge")[1] == "judge openai/judge (no gold: 3 documents)"


def test_a_folder_without_labels_gives_hash_split_documents_with_empty_records(tmp_path: Path) -> None:
    write_documents(tmp_path / "data", 30)
    assert not has_labels(tmp_path / "data")
    schema, splits = unlabelled_splits(tmp_path / "data", seed=0)
    assert schema["properties"].keys() == SCHEMA["properties"].keys()
    examples = [ex for rows in splits.values() for ex in rows]
    assert len(examples) == 30 and all(ex.gold == {} and ex.label_source == "none" for ex in examples)
    assert all(splits[name] for name in ("train", "val", "test"))
    assert examples[0].text.startswith(("Acme", "Bright", "Corner", "Delta", "Echo", "Fern"))
    again = unlabelled_splits(tmp_path / "data", seed=0)[1]
    assert {k: [e.doc_id for e in v] for k, v in again.items()} == {
        k: [e.doc_id for e in v] for k, v in splits.items()
    }


def test_no_labels_and_no_judge_is_a_one_line_error(tmp_path: Path) -> None:
    from ieflow.errors import ConfigError
    from ieflow_flows.optimize import OptimizeParams, check_config

    write_documents(tmp_path / "data", 4)
    with pytest.raises(
        ConfigError, match=r"has no labels: give a judge model to score with \(--judge MODEL\)"
    ):
        check_config(OptimizeParams(dataset=str(tmp_path / "data")))
    write_documents(tmp_path / "labelled", 4, labels=True)
    assert has_labels(tmp_path / "labelled")


def _result() -> OptimizationResult:
    program = ExtractionProgram.from_schema(SCHEMA, model="scripted/lm")
    seed = Candidate(0, program, [], "seed", 0, {"d0": 0.5}, 100.0)
    usage = {
        "metric_calls": 12,
        "judge_calls": 18,
        "student_cost_usd": 0.0,
        "optimizer_cost_usd": 0.0,
        "wall_s": 60,
    }
    return OptimizationResult("spo", program, 0, [seed], [0], [], [], usage, "finished")


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, "**Labels** optimized with gold; reported on gold."),
        (
            ScoringChoice("silver (teacher, weighted by agreement)", "gold (4 documents)"),
            "**Labels** optimized with silver (teacher, weighted by agreement); "
            "reported on gold (4 documents).",
        ),
        (
            ScoringChoice("judge local/m", "judge local/m (no gold: 3 documents)"),
            "**Labels** optimized with judge local/m; reported on judge local/m (no gold: 3 documents).",
        ),
    ],
)
def test_the_report_names_the_label_source(choice: ScoringChoice | None, expected: str) -> None:
    test = {
        "score": 0.5,
        "per_field": {"date": 0.5},
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": 0,
    }
    report = optimization_markdown(_result(), test, test, None, choice)
    assert expected in report
    assert "12 metric calls, 18 judge calls" in report
