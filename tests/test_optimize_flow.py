"""The optimize flow under a real Prefect server, with model calls through litellm to the fake server."""

from __future__ import annotations

import json

import pytest

from ieflow_testing.fake_server import FakeLMServer
from tests.support.receipts import SCHEMA, fake_models, make_examples


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
