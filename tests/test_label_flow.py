"""The label flow against a real (temporary) Prefect server: it pauses with the typed review form,
the test answers through the Prefect client as the UI's Resume form does, and the person's records
land in labels.jsonl as `human` rows. The teacher is scripted (its drafts are fixed per document)."""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import polars as pl
import pytest

from ieflow.datasets import Example
from ieflow.labelfree import teacher
from ieflow.labelfree.drafts import DraftRecord
from ieflow_flows.label import LabelParams, label
from tests.test_review_queue import SCHEMA

pytestmark = pytest.mark.slow  # ~65 s on 2 shared cores: a server start, pauses polled each second

DRAFTS = {
    "r1": DraftRecord(
        "r1", {"company": "ACME", "total": 12.5, "items": []}, {"total": 0.33}, {"total": "disagree"}
    ),
    "r2": DraftRecord("r2", {"company": "Bright", "total": None, "items": []}, {}, {"company": "not found"}),
    "r3": DraftRecord("r3", {"company": "Corner", "total": 3.0, "items": []}, {}, {"": "not schema-valid"}),
    "r4": DraftRecord("r4", {"company": "Delta", "total": 4.0, "items": []}, {"total": 1.0}),
}


def scripted_teacher(
    examples: Sequence[Example], schema: dict, config: teacher.TeacherConfig, lm: Any = None
):
    return [DRAFTS[example.doc_id] for example in examples]


@pytest.fixture
def label_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LabelParams:
    monkeypatch.setattr(teacher, "draft_labels", scripted_teacher)
    rows = [{"doc_id": d, "status": "ok", "text": f"{d} receipt"} for d in DRAFTS]
    pl.DataFrame(rows).write_parquet(tmp_path / "documents.parquet")
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    return LabelParams(
        documents=str(tmp_path / "documents.parquet"),
        schema_path=str(tmp_path / "schema.json"),
        labels_path=str(tmp_path / "labels.jsonl"),
        review_batch=2,
        review_timeout_s=120,
        review_poll_s=1,
    )


def start_label_run(params: LabelParams) -> tuple[threading.Thread, list[Any]]:
    states: list[Any] = []
    context = contextvars.copy_context()  # the test's Prefect settings (the server's URL) go along
    thread = threading.Thread(
        target=lambda: states.append(context.run(label, params, return_state=True)), daemon=True
    )
    thread.start()
    return thread, states


def wait_for_pause(seen: set[UUID], timeout: float = 90) -> Any:
    """The next paused label run (a new pause, not one answered already)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            for run in client.read_flow_runs():
                pause = (run.id, run.state.state_details.pause_key) if run.state.is_paused() else None
                if pause and pause not in seen:
                    seen.add(pause)
                    return run
            time.sleep(0.5)
    raise AssertionError("the label flow did not pause")


def form_of(run: Any) -> tuple[dict[str, Any], str]:
    from prefect.client.orchestration import get_client

    keys = run.state.state_details.run_input_keyset
    with get_client(sync_client=True) as client:
        schema = json.loads(client.read_flow_run_input(run.id, keys["schema"]))
        description = json.loads(client.read_flow_run_input(run.id, keys["description"]))
    return schema, description


def summary_artifact(flow_run_id: UUID) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["label-summary"]))
        )
    return next(a.data for a in found if a.flow_run_id == flow_run_id)


def lines(path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_the_flow_pauses_with_the_form_and_the_answers_become_human_labels(
    prefect_harness: None, label_inputs: LabelParams
) -> None:
    from prefect.flow_runs import resume_flow_run

    thread, states = start_label_run(label_inputs)
    seen: set[Any] = set()
    first = wait_for_pause(seen)
    schema, description = form_of(first)
    assert "**r1**: total: disagree" in description and "**r2**: company: not found" in description
    props = schema["properties"]
    assert props["d0_f0_company"]["title"] == "r1 · company" and props["d0_f0_company"]["default"] == "ACME"
    assert props["d1_accept"]["type"] == "boolean" and "d2_accept" not in props  # review_batch=2
    assert [row["source"] for row in lines(label_inputs.labels_path)] == ["teacher"]  # r4, before any review
    resume_flow_run(first.id, run_input={"d0_accept": True, "d0_f1_total": 13.5})  # r1 corrected, r2 left
    second = wait_for_pause(seen)
    assert "**r3**: record: not schema-valid" in form_of(second)[1]
    resume_flow_run(second.id, run_input={"d0_accept": True, "d0_f2_items": "[{oops"})  # r3: bad JSON
    thread.join(60)
    assert states and states[0].is_completed(), states
    labels = lines(label_inputs.labels_path)
    assert [(row["doc_id"], row["source"]) for row in labels] == [("r4", "teacher"), ("r1", "human")]
    assert labels[1]["record"] == {"company": "ACME", "total": 13.5, "items": []}
    queue = lines(label_inputs.queue_path)
    assert [row["doc_id"] for row in queue] == ["r2", "r3"]
    assert queue[1]["problems"][""].startswith("items: the value given is not JSON")
    result = states[0].result()
    assert result["human_rows"] == 1 and result["teacher_rows"] == 1 and result["in_review"] == 2


def test_a_review_nobody_answers_times_out_and_loses_nothing(
    prefect_harness: None, label_inputs: LabelParams
) -> None:
    params = label_inputs.model_copy(update={"review_timeout_s": 3})
    thread, states = start_label_run(params)
    thread.join(90)
    assert states and states[0].is_failed()
    hint = summary_artifact(states[0].state_details.flow_run_id)
    assert "3 drafts wait in" in hint and "ieflow review export" in hint and "limit 0" in hint
    assert [row["doc_id"] for row in lines(params.queue_path)] == ["r1", "r2", "r3"]
    assert [row["doc_id"] for row in lines(params.labels_path)] == ["r4"]
    # A second run drafts nothing new (limit 0) and offers the queue again.
    again = params.model_copy(update={"limit": 0, "review_timeout_s": 120})
    thread, states = start_label_run(again)
    run = wait_for_pause(set())
    assert "**r1**" in form_of(run)[1]
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(run.id, run_input={"d0_accept": True, "d1_accept": True})
    run = wait_for_pause({(run.id, run.state.state_details.pause_key)})
    resume_flow_run(run.id, run_input={})
    thread.join(60)
    assert states and states[0].is_completed(), states
    assert [row["doc_id"] for row in lines(params.labels_path)] == ["r4", "r1", "r2"]
    assert [row["doc_id"] for row in lines(params.queue_path)] == ["r3"]
