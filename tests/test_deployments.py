"""prefect.yaml end to end: a real Prefect server, a process work pool and worker, `prefect deploy
--all`, then runs triggered through the API as the UI's "Custom run" does, with custom parameters.

Slow (~2-3 min on 2 cores): the server takes ~15 s to start, and every flow run is a fresh Python
process started by the worker. Model calls go to the fake OpenAI-compatible server in this process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from ieflow_testing.fake_server import FakeLMServer
from tests.support.receipts import SCHEMA, fake_models, make_examples
from tests.test_champion import add_labels

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")
DEPLOYMENTS = {"ingest", "split", "suggest_schema", "label", "optimize", "extract", "nightly", "benchmark"}
PO = ROOT / "data" / "purchase_orders"
LABELS = [json.loads(line) for line in (PO / "labels.jsonl").read_text().splitlines()]
KEY_ENV = "IEFLOW_TEST_FAKE_KEY"  # the extract flow reads the key from the variable this names


def answer(body: dict[str, Any]) -> Any:
    """Purchase orders (the gold record of the PO in the document) for the extract run; receipts
    (student and reflector) for the nightly run."""
    if body["model"] != "po":
        return fake_models(body)
    text = "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")
    return next(label["record"] for label in LABELS if label["record"]["po_number"] in text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


def stop(process: subprocess.Popen) -> None:
    """End a process started here, with its children (it leads its own session)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.fixture(scope="module")
def lm() -> Iterator[FakeLMServer]:
    with FakeLMServer(answer=answer) as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, lm: FakeLMServer) -> Iterator[dict[str, Any]]:
    """Server on a free port with its own PREFECT_HOME, the work pool, deployments, one worker."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_UI_URL": f"http://127.0.0.1:{port}",
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        # What the flow runs need: the worker hands its environment to each run's process.
        "OPENAI_API_BASE": lm.base_url,
        "OPENAI_API_KEY": "fake-key",
        KEY_ENV: "fake",
    }
    processes: list[subprocess.Popen] = []
    logs = {name: home / f"{name}.log" for name in ("server", "worker", "deploy")}

    def spawn(name: str, *args: str) -> subprocess.Popen:
        with open(logs[name], "w") as log:
            process = subprocess.Popen(
                [PREFECT, *args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        processes.append(process)
        return process

    try:
        server = spawn("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, f"server exited:\n{tail(logs['server'])}"
            assert time.monotonic() < deadline, f"server not healthy:\n{tail(logs['server'])}"
            time.sleep(1)
        subprocess.run(
            [PREFECT, "work-pool", "create", "ieflow-process", "--type", "process"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        deploy = spawn("deploy", "--no-prompt", "deploy", "--all")
        assert deploy.wait(300) == 0, f"prefect deploy --all failed:\n{tail(logs['deploy'])}"
        spawn("worker", "worker", "start", "--pool", "ieflow-process", "--type", "process")
        with temporary_settings({PREFECT_API_URL: api}):
            yield {"api": api, "home": home, "logs": logs, "lm": lm}
    finally:
        for process in reversed(processes):
            stop(process)


def run(stack: dict[str, Any], deployment: str, params: dict[str, Any]) -> Any:
    """Trigger a run with custom parameters, as the UI's form does, and wait for it to finish."""
    from prefect.deployments import run_deployment

    flow_run = run_deployment(deployment, parameters={"params": params}, timeout=480, poll_interval=2)
    assert flow_run.state.is_completed(), (
        f"{deployment}: {flow_run.state.name} {flow_run.state.message}\nworker log:\n"
        f"{tail(stack['logs']['worker'], 80)}"
    )
    return flow_run


def artifacts_of(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {artifact.key: artifact for artifact in found}


def test_prefect_yaml_deploys_every_flow_with_forms_and_the_nightly_schedule(stack: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
    assert set(deployments) >= DEPLOYMENTS
    nightly = deployments["nightly"]
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
    assert nightly.schedules[0].schedule.timezone == "UTC" and nightly.work_pool_name == "ieflow-process"
    # A typed form: the params model with each field's description and default.
    form = deployments["extract"].parameter_openapi_schema
    fields = form["definitions"]["ExtractParams"]["properties"]
    assert "description" in fields["shard_size"] and fields["shard_size"]["default"] == 500
    assert deployments["nightly"].parameters["params"]["min_new_labels"] == 5


def test_extract_run_from_the_api(stack: dict[str, Any], tmp_path: Path) -> None:
    rows = []
    for i, label in enumerate(LABELS):
        text = (PO / label["file"]).read_text(encoding="utf-8")
        rows.append({"doc_id": f"po-{i}", "sha256": f"s{i}", "status": "ok", "error": None, "text": text})
    documents = tmp_path / "documents.parquet"
    pl.DataFrame(rows).write_parquet(documents)
    out = tmp_path / "out"
    flow_run = run(
        stack,
        "extract/extract",
        {
            "documents": str(documents),
            "program": str(ROOT / "schemas" / "purchase_order.json"),
            "output_dir": str(out),
            "shard_size": 2,
            "model": stack["lm"].model_name("po"),
            "api_base": stack["lm"].base_url,
            "api_key_env": KEY_ENV,
            "use_lm_cache": False,
            "data_docs": False,
        },
    )
    from ieflow import batch

    records, quarantine = batch.read_outputs(str(out))
    assert sorted(records["doc_id"]) == ["po-0", "po-1", "po-2"] and quarantine.height == 0
    assert sorted(records["po_number"]) == sorted(label["record"]["po_number"] for label in LABELS)
    found = artifacts_of(flow_run.id)
    summary = found["extract-summary"]
    assert summary.type == "table"
    table = {row["metric"]: row["value"] for row in json.loads(summary.data)}
    assert table["records"] == 3 and table["quarantined"] == 0


def test_nightly_run_from_the_api_promotes_the_challenger(stack: dict[str, Any], tmp_path: Path) -> None:
    from ieflow.program import ExtractionProgram
    from ieflow.registry import Registry

    lm = stack["lm"]
    data = tmp_path / "data"
    data.mkdir()
    (data / "schema.json").write_text(json.dumps(SCHEMA))
    add_labels(data, make_examples(16), ["train"] * 8 + ["dev"] * 8)
    registry = Registry(tmp_path / "registry")
    seed = ExtractionProgram.from_schema(SCHEMA, model=lm.model_name("student"), name="receipts")
    registry.register("receipts", seed, dataset=str(data))  # no nightly state yet: all 16 labels are new
    flow_run = run(
        stack,
        "nightly/nightly",
        {
            "registry": str(tmp_path / "registry"),
            "min_new_labels": 4,
            "margin": 0.05,
            "max_metric_calls": 40,
            "max_cost_increase": 0.5,  # the fix (a date rule) adds ~16% prompt tokens
            "reflection_model": lm.model_name("reflector"),
            "work_dir": str(tmp_path / "work"),
            "seed": 1,
        },
    )
    champion = registry.champion("receipts")
    assert champion.version == 2 and "day-first" in champion.load_program().components["field:date"]
    assert champion.source_run["flow_run_name"] == "review-receipts"
    assert champion.source_run["root_flow_run_id"] == str(flow_run.id)
    assert registry.read_state("receipts", "nightly")["runs"][-1]["decision"] == "promoted"
    found = artifacts_of(flow_run.id)
    assert {"nightly-report", "nightly-summary", "nightly-progress"} <= set(found)
    report = found["nightly-report"].data
    assert "**Promoted challenger v2** (was v1)" in report and "| date |" in report
    assert "data:image/png;base64," in report  # the Pareto plot, shown inside the UI
    rows = json.loads(found["nightly-summary"].data)
    assert rows[0]["program"] == "receipts" and rows[0]["decision"] == "promoted"
