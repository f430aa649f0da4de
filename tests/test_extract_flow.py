"""The `extract` Prefect flow: shards as tasks, artifacts, restart, folder input, Dask runner."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import ieflow  # noqa: F401  (offline env defaults first)
from ieflow import batch
from ieflow_testing.fake_server import FakeLMServer

pytestmark = pytest.mark.slow  # a Prefect test server per session (~15 s), Dask workers (~10 s)

ROOT = Path(__file__).resolve().parents[1]
PO = ROOT / "data" / "purchase_orders"
LABELS = [json.loads(line) for line in (PO / "labels.jsonl").read_text().splitlines()]
KEY_ENV = "IEFLOW_TEST_FAKE_KEY"


def answer(body: dict[str, Any]) -> Any:
    """The gold record whose PO number is in the document; a bad date for documents saying so."""
    text = "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")
    label = next(label for label in LABELS if label["record"]["po_number"] in text)
    record = copy.deepcopy(label["record"])
    if "BAD-DATE" in text:
        record["po_date"] = "2024-13-01"
    return record


@pytest.fixture(scope="module")
def server() -> Any:
    with FakeLMServer(answer=answer) as srv:
        yield srv


@pytest.fixture()
def documents(tmp_path: Path) -> str:
    rows = []
    for i in range(7):
        label = LABELS[i % 3]
        text = (PO / label["file"]).read_text(encoding="utf-8")
        rows.append(
            {
                "doc_id": f"doc-{i}",
                "sha256": f"s{i}",
                "status": "ok",
                "error": None,
                "text": ("BAD-DATE\n" if i == 6 else "") + text,
            }
        )
    path = tmp_path / "documents.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return str(path)


def params(documents: str, out: Path, server: FakeLMServer, **changes: Any) -> Any:
    from ieflow_flows.extract import ExtractParams

    values = {
        "documents": documents,
        "program": str(ROOT / "schemas" / "purchase_order.json"),
        "output_dir": str(out),
        "shard_size": 3,
        "concurrency": 4,
        "model": server.model_name("po"),
        "api_base": server.base_url,
        "api_key_env": KEY_ENV,
        "use_lm_cache": False,
        **changes,
    }
    return ExtractParams(**values)


def artifacts(key: str) -> list[Any]:
    """Artifacts under `key`, newest first: other tests of the session publish under the same keys."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC
        )


def test_flow_extracts_reports_and_restarts(
    prefect_harness: None,
    server: FakeLMServer,
    documents: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ieflow_flows.extract import extract

    monkeypatch.setenv(KEY_ENV, "fake")
    out = tmp_path / "out"
    summary = extract(params(documents, out, server))
    assert summary["status"] == "complete" and summary["n_shards"] == 3
    assert (summary["n_records"], summary["n_quarantined"]) == (6, 1)
    assert summary["failed_expectations"] == {"expect_column_values_to_match_strftime_format(po_date)": 1}
    records, quarantine = batch.read_outputs(str(out))
    assert sorted(records["doc_id"]) == [f"doc-{i}" for i in range(6)]
    assert quarantine["doc_id"].to_list() == ["doc-6"]
    assert (out / "data_docs" / "index.html").is_file()

    progress = artifacts("extract-progress")
    assert progress and progress[0].type == "progress" and float(progress[0].data) == 100.0
    table = artifacts("extract-summary")
    assert table and table[0].type == "table"
    rows = {row["metric"]: row["value"] for row in json.loads(table[0].data)}
    assert rows["documents"] == 7 and rows["records"] == 6 and rows["quarantined: validation_failed"] == 1
    # Evidence beside the records, and the review page linked from the run.
    assert batch.read_dataset(str(out), "evidence")["doc_id"].n_unique() == 6
    assert rows["in review (valid, kept in records)"] == summary["n_review"]
    link = artifacts("extract-review")
    assert link and link[0].type == "markdown" and (out / "review.html").as_uri() in link[0].data

    # The same run again: every shard is done, no model call is made.
    before = server.stats.requests
    again = extract(params(documents, out, server))
    assert server.stats.requests == before and again["n_processed"] == 0 and again["n_records"] == 6


def test_flow_ingests_a_folder_on_the_way(
    prefect_harness: None, server: FakeLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ieflow_flows.extract import extract

    monkeypatch.setenv(KEY_ENV, "fake")
    out = tmp_path / "out"
    summary = extract(params(str(PO / "documents"), out, server, shard_size=2, data_docs=False))
    assert (out / "ingest" / "documents.parquet").is_file()
    assert summary["n_documents"] == 3 and summary["n_records"] == 3, summary
    records, _ = batch.read_outputs(str(out))
    assert sorted(records["po_number"]) == sorted(label["record"]["po_number"] for label in LABELS)


def test_flow_on_a_dask_cluster(
    prefect_harness: None,
    server: FakeLMServer,
    documents: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ieflow_flows.extract import extract

    monkeypatch.setenv(KEY_ENV, "fake")  # before the cluster starts: its workers inherit it
    out = tmp_path / "out"
    summary = extract(
        params(documents, out, server, task_runner="dask", dask_workers=1, parallel_shards=2, data_docs=False)
    )
    assert summary["status"] == "complete" and summary["n_records"] == 6 and summary["n_quarantined"] == 1


def test_a_program_larger_than_prefects_parameter_limit_runs(
    prefect_harness: None,
    server: FakeLMServer,
    documents: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 16: a 1 MB instruction (Prefect refuses flow parameters over 512 KB) travels by the
    URL of the run's program.json, not as a subflow parameter."""
    from ieflow.program import INSTRUCTION, ExtractionProgram
    from ieflow_flows.extract import extract

    monkeypatch.setenv(KEY_ENV, "fake")
    base = ExtractionProgram.from_schema(ROOT / "schemas" / "purchase_order.json")
    instruction = base.components[INSTRUCTION] + "\n" + "Read every line twice. " * 45_000
    big = base.replace(components={**base.components, INSTRUCTION: instruction})
    assert len(json.dumps(big.to_dict())) > 1_000_000
    program_file = tmp_path / "big.json"
    big.save(program_file)
    out = tmp_path / "out"
    summary = extract(params(documents, out, server, program=str(program_file)))
    assert summary["status"] == "complete" and summary["n_records"] + summary["n_quarantined"] == 7
    kept = ExtractionProgram.load(out / "program.json")  # the run's program, with the model override
    assert kept.hash == big.replace(model=server.model_name("po")).hash
