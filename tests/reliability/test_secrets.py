"""Issue 7, secrets: a planted API key never appears in logs, checkpoints, ledgers, program files,
Parquet, manifests or the response cache of an optimize + extract run (faults included, so retry
and error paths log too)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from ieflow.batch import BatchSettings, load_program, run_batch
from ieflow_testing.fake_server import FakeLMServer, FaultConfig
from tests.reliability.helpers import (
    KEY_ENV,
    PO_SCHEMA,
    files_containing,
    make_po_documents,
    po_answer,
    receipt_models,
    run_gepa,
)

PLANTED = "sk-planted-7f3c9a1e5b2d4c6e8a0b"


def combined(body):
    return receipt_models(body) if body["model"] in ("student", "reflector") else po_answer(body)


@pytest.mark.slow
def test_a_planted_key_appears_in_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, PLANTED)
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED)
    cache = tmp_path / "lm-cache"
    monkeypatch.setenv("IEFLOW_LM_CACHE", str(cache))
    log_file = tmp_path / "outputs" / "run.log"
    log_file.parent.mkdir()
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    faults = FaultConfig(rate_429=0.05, rate_500=0.05, rate_malformed=0.05, seed=4, retry_after_s=0.01)
    try:
        with FakeLMServer(answer=combined, faults=faults) as server:
            result = run_gepa(tmp_path / "outputs" / "optimize", server.base_url, api_key=os.environ[KEY_ENV])
            result.save(tmp_path / "outputs" / "optimize")
            docs = make_po_documents(tmp_path / "outputs" / "docs.parquet", 60)
            program = load_program(str(PO_SCHEMA), model=server.model_name("po"))
            conf = BatchSettings(
                output_dir=str(tmp_path / "outputs" / "extract"),
                shard_size=20,
                concurrency=8,
                api_base=server.base_url,
                api_key_env=KEY_ENV,
                use_lm_cache=True,
                max_retries=6,
                timeout_s=5,
            )
            summary = run_batch(docs, program, conf)
            # The server saw the key (so it really was used), in the Authorization header only.
            faults_seen = sum(v for k, v in server.stats.by_outcome.items() if k != "ok")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    assert summary["n_documents"] == 60 and faults_seen > 0
    outputs = tmp_path / "outputs"
    assert (outputs / "optimize" / "checkpoint.json").exists()
    assert (outputs / "optimize" / "evaluations.jsonl").exists()
    assert (outputs / "optimize" / "program.json").exists()
    assert list((outputs / "extract").rglob("*.parquet")) and log_file.stat().st_size > 0
    assert "retrying" in log_file.read_text()  # the retry path really logged
    assert files_containing(outputs, PLANTED) == []
    assert files_containing(cache, PLANTED) == []
    assert files_containing(outputs, PLANTED[3:15]) == []  # not even a prefix of it


def test_the_key_stays_out_of_reprs_and_errors() -> None:
    from ieflow.lm import LMClient, LMError

    client = LMClient(
        "openai/x", api_base="http://127.0.0.1:9/v1", api_key=PLANTED, max_retries=0, timeout_s=1, cache=False
    )
    assert PLANTED not in repr(client) and PLANTED not in str(vars(client).get("params"))
    with pytest.raises(LMError) as info:
        client.complete([{"role": "user", "content": "hi"}])
    assert PLANTED not in str(info.value) and PLANTED not in repr(info.value)


def test_a_key_from_a_prefect_secret_block_is_used_and_never_written(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The extract flow, given only the *name* of a Secret block, sends the block's key to the
    model server and writes it nowhere: not in outputs, nor in the flow run's parameters."""
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client

    from ieflow_flows.extract import ExtractParams, extract

    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("IEFLOW_LM_CACHE", str(tmp_path / "lm-cache"))
    Secret(value=PLANTED).save("ieflow-test-model-key", overwrite=True)
    (tmp_path / "outputs").mkdir()
    docs = make_po_documents(tmp_path / "outputs" / "docs.parquet", 12)
    with FakeLMServer(answer=po_answer) as server:
        params = ExtractParams(
            documents=str(docs),
            program=str(PO_SCHEMA),
            output_dir=str(tmp_path / "outputs" / "x"),
            shard_size=6,
            model=server.model_name("po"),
            api_base=server.base_url,
            api_key_secret="ieflow-test-model-key",
            data_docs=False,
        )
        state = extract(params, return_state=True)
        seen = server.stats.api_keys
    summary = state.result()
    assert summary["n_records"] + summary["n_quarantined"] == 12
    assert seen == [PLANTED]  # the block's key really reached the server
    assert files_containing(tmp_path / "outputs", PLANTED) == []
    assert files_containing(tmp_path / "lm-cache", PLANTED) == []
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert PLANTED not in str(run.parameters) and "ieflow-test-model-key" in str(run.parameters)


def test_a_missing_secret_block_fails_in_one_line_before_any_work(
    prefect_harness: None, tmp_path: Path
) -> None:
    from ieflow.errors import ConfigError
    from ieflow_tasks.secrets import preflight  # Secret blocks are the Prefect layer's to load

    with pytest.raises(ConfigError, match="cannot load Prefect Secret block 'no-such-block'") as info:
        preflight("openai/gpt-4o-mini", api_key_secret="no-such-block")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="not both"):
        preflight("openai/gpt-4o-mini", api_key_env="X", api_key_secret="y")
