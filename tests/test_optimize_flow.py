"""The optimize flow under a real Prefect server, with model calls through litellm to the fake server."""

from __future__ import annotations

import json
import re

import pytest

from ieflow_testing.fake_server import FakeLMServer
from tests.support.receipts import DAY_FIRST_RULE, SCHEMA, fake_models, make_examples, student_answer


def write_dataset(folder, examples) -> None:
    (folder / "documents").mkdir(parents=True)
    (folder / "schema.json").write_text(json.dumps(SCHEMA))
    with open(folder / "labels.jsonl", "w") as labels:
        for ex, split in zip(examples, ["train"] * 8 + ["dev"] * 8, strict=True):
            (folder / "documents" / f"{ex.doc_id}.txt").write_text(ex.text)
            labels.write(
                json.dumps(
                    {
                        "doc_id": ex.doc_id,
                        "file": f"documents/{ex.doc_id}.txt",
                        "split": split,
                        "record": ex.gold,
                    }
                )
                + "\n"
            )


@pytest.mark.slow
def test_optimize_flow_improves_the_program_and_reports(prefect_harness, tmp_path, monkeypatch) -> None:
    from ieflow.program import ExtractionProgram
    from ieflow_flows.optimize import OptimizeParams, optimize

    write_dataset(tmp_path / "data", make_examples(16))
    with FakeLMServer(answer=fake_models) as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "fake-key")
        params = OptimizeParams(
            dataset=str(tmp_path / "data"),
            student_model=server.model_name("student"),
            reflection_model=server.model_name("reflector"),
            max_metric_calls=60,
            output_dir=str(tmp_path / "run"),
            seed=1,
        )
        summary = optimize(params)
    assert summary["optimized_test"] > summary["baseline_test"]
    assert summary["metric_calls"] <= 60 + 6
    program = ExtractionProgram.load(tmp_path / "run" / "program.json")
    assert "day-first" in program.components["field:date"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| date |" in report and "Lineage" in report
    assert (tmp_path / "run" / "pareto.png").stat().st_size > 5000


def judged_models(body: dict) -> str:
    """The fake server's models for a folder with no labels: the student, a proposer that writes
    the day-first rule once a judge's reason says the dates are swapped, and a judge (field
    verdicts or pairwise) that reads dates day-first from the document."""
    messages = body["messages"]
    system, question = messages[0]["content"], messages[-1]["content"]
    if body["model"] == "reflector":
        return DAY_FIRST_RULE if "day and month swapped" in question else "Extract each field as printed."
    if not system.startswith(("You check a record", "You compare two records")):
        return student_answer(messages)
    day, month = re.search(r"Date: (\d\d)/(\d\d)/2021", messages[1]["content"]).groups()
    right = f'"2021-{month}-{day}"'
    if system.startswith("You check a record"):
        date_ok = re.search(r"^date: (.*)$", messages[1]["content"], re.M).group(1) == right
        verdict = {"verdict": "correct" if date_ok else "wrong", "reason": "day and month swapped"}
        ok = {"verdict": "correct", "reason": "as printed"}
        return json.dumps({"company": ok, "date": verdict if not date_ok else ok, "total": ok})
    a_ok = f'"date": {right}' in re.search(r"^Record A: (.*)$", question, re.M).group(1)
    b_ok = f'"date": {right}' in re.search(r"^Record B: (.*)$", question, re.M).group(1)
    if a_ok == b_ok:
        return json.dumps(
            {"winner": "tie", "reason": "both have day and month swapped" if not a_ok else "same"}
        )
    return json.dumps({"winner": "A" if a_ok else "B", "reason": "the other has day and month swapped"})


@pytest.mark.slow
def test_optimize_flow_without_labels_scores_with_the_judge(prefect_harness, tmp_path, monkeypatch) -> None:
    from ieflow.program import ExtractionProgram
    from ieflow_flows.optimize import OptimizeParams, optimize

    write_dataset(tmp_path / "data", make_examples(16))
    (tmp_path / "data" / "labels.jsonl").unlink()  # documents and a schema, nothing labelled
    with FakeLMServer(answer=judged_models) as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "fake-key")
        params = OptimizeParams(
            dataset=str(tmp_path / "data"),
            optimizer="spo",
            student_model=server.model_name("student"),
            reflection_model=server.model_name("reflector"),
            judge_model=server.model_name("judge"),
            max_metric_calls=80,
            output_dir=str(tmp_path / "run"),
            seed=1,
        )
        summary = optimize(params)
    assert summary["optimized_test"] > summary["baseline_test"]
    program = ExtractionProgram.load(tmp_path / "run" / "program.json")
    assert "day-first" in program.components["instruction"]
    report = (tmp_path / "run" / "report.md").read_text()
    judge = server.model_name("judge")
    assert f"**Labels** optimized with judge {judge}; reported on judge {judge} (no gold:" in report
    assert "judge calls" in report
