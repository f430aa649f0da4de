"""ieflow.batch: shard plans, exactly-once writes, quarantine, resuming, against the fake LM server."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import ieflow  # noqa: F401  (offline env defaults first)
from ieflow import batch
from ieflow.batch import (
    BatchProgress,
    BatchSettings,
    Outcome,
    OutcomeKind,
    RunConflictError,
    ShardIncomplete,
    load_program,
    plan_run,
    run_batch,
)
from ieflow.preflight import ConfigError
from ieflow.program import ExtractionProgram, Trace
from ieflow.progress import BatchStarted, DocumentsFinished, listening
from ieflow_testing.fake_server import FakeLMServer

ROOT = Path(__file__).resolve().parents[1]
PO = ROOT / "data" / "purchase_orders"
GOLD = {
    json.loads(line)["doc_id"]: json.loads(line) for line in (PO / "labels.jsonl").read_text().splitlines()
}
KEY_ENV = "IEFLOW_TEST_FAKE_KEY"


def user_text(body: dict[str, Any]) -> str:
    # Every user message: the repair request comes last, the document before it.
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")


def answer(body: dict[str, Any]) -> Any:
    """The gold record of the document named in the text, spoiled as its marker says."""
    text = user_text(body)
    doc = next(d for d in GOLD if f"[{d}]" in text)
    record = copy.deepcopy(GOLD[doc]["record"])
    if "BAD-DATE" in text:
        record["po_date"] = "2024-02-30"
    if "NO-PO-NUMBER" in text:
        del record["po_number"]
    if "MALFORMED" in text:
        return '{"po_number": "PO-1", "po_date": '
    if "OVER-BUDGET" in text:
        record["total"] = 99999.0
    if "MADE-UP-PO" in text:
        record["po_number"] = "ZQ-4410-XW"  # valid, but printed nowhere in the document
    if "FLAKY" in text and FLAKY["on"]:
        raise RuntimeError("model down")  # the fake server answers 500
    return record


FLAKY = {"on": False}


def make_documents(path: Path, docs: dict[str, str]) -> str:
    """documents.parquet as ingest writes it (the columns batch reads). `docs`: doc_id -> marker."""
    rows = []
    for doc_id, marker in docs.items():
        source = doc_id.split("#")[0]
        text = (PO / GOLD[source]["file"]).read_text(encoding="utf-8")
        status = "error" if marker == "INGEST-ERROR" else "ok"
        rows.append(
            {
                "doc_id": doc_id,
                "sha256": f"sha-{doc_id}",
                "source_uri": str(PO / GOLD[source]["file"]),
                "file_name": Path(GOLD[source]["file"]).name,
                "text": f"[{source}] {marker}\n{text}",
                "page_offsets": [0],
                "status": status,
                "error": "PDF is corrupt" if status == "error" else None,
            }
        )
    pl.DataFrame(rows).write_parquet(path)
    return str(path)


@pytest.fixture(scope="module")
def server() -> Any:
    with FakeLMServer(answer=answer) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "fake")


def settings(out: Path, server: FakeLMServer, **changes: Any) -> BatchSettings:
    values = {
        "output_dir": str(out),
        "shard_size": 3,
        "concurrency": 4,
        "api_base": server.base_url,
        "api_key_env": KEY_ENV,
        "use_lm_cache": False,
        "max_retries": 1,
        **changes,
    }
    return BatchSettings(**values)


def program(server: FakeLMServer) -> Any:
    return load_program(str(ROOT / "schemas" / "purchase_order.json"), model=server.model_name("po"))


def test_plans_are_stable_and_an_output_folder_holds_one_run(tmp_path: Path, server: FakeLMServer) -> None:
    docs = make_documents(tmp_path / "docs.parquet", {f"po-100{i % 3 + 1}#{i:02d}": "" for i in range(8)})
    prog = program(server)
    first = plan_run(docs, prog, settings(tmp_path / "out", server))
    again = plan_run(docs, prog, settings(tmp_path / "out", server))
    assert [s.shard_id for s in first.shards] == [s.shard_id for s in again.shards]
    assert [len(s.doc_ids) for s in first.shards] == [3, 3, 2]
    assert list(first.shards[0].doc_ids) == sorted(first.shards[0].doc_ids)
    other = plan_run(docs, prog.replace(model="openai/other"), settings(tmp_path / "out2", server))
    assert {s.shard_id for s in other.shards}.isdisjoint(s.shard_id for s in first.shards)
    fewer = make_documents(tmp_path / "fewer.parquet", {"po-1001#00": ""})
    with pytest.raises(RunConflictError, match="another output folder"):
        plan_run(fewer, prog, settings(tmp_path / "out", server))


def test_every_document_lands_once_in_records_or_quarantine(tmp_path: Path, server: FakeLMServer) -> None:
    rules = tmp_path / "expectations.json"
    rules.write_text(
        json.dumps(
            [
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": "total", "max_value": 50000},
                    "meta": {"name": "total within budget"},
                }
            ]
        )
    )
    markers = {
        "po-1001#a": "",
        "po-1002#b": "",
        "po-1003#c": "",
        "po-1001#d": "BAD-DATE",
        "po-1002#e": "NO-PO-NUMBER",
        "po-1003#f": "MALFORMED",
        "po-1001#g": "OVER-BUDGET",
        "po-1002#h": "INGEST-ERROR",
    }
    docs = make_documents(tmp_path / "docs.parquet", markers)
    out = tmp_path / "out"
    summary = run_batch(docs, program(server), settings(out, server, expectations=str(rules)))
    assert summary["status"] == "complete" and summary["n_documents"] == 8
    records, quarantine = batch.read_outputs(str(out))
    assert sorted(records["doc_id"]) == ["po-1001#a", "po-1002#b", "po-1003#c"]
    assert sorted([*records["doc_id"], *quarantine["doc_id"]]) == sorted(markers)
    why = {row["doc_id"]: row for row in quarantine.iter_rows(named=True)}
    assert why["po-1001#d"]["reason"] == "validation_failed"
    assert why["po-1001#d"]["failed_expectations"] == [
        "expect_column_values_to_match_strftime_format(po_date)"
    ]
    assert "po_date" in why["po-1001#d"]["errors"][0]  # the client's own schema problem, kept too
    assert why["po-1002#e"]["failed_expectations"] == [
        "expect_column_values_to_be_null(missing:)",
        "expect_column_values_to_not_be_null(raw:po_number)",
    ]
    assert json.loads(why["po-1002#e"]["record_json"])["total"] == 2351.44
    assert why["po-1003#f"]["reason"] == "parse_error"
    assert why["po-1003#f"]["raw"] == '{"po_number": "PO-1", "po_date": '
    assert why["po-1001#g"]["failed_expectations"] == ["total within budget"]
    assert why["po-1002#h"]["reason"] == "document_error" and "corrupt" in why["po-1002#h"]["errors"][0]
    assert summary["quarantined_by_reason"] == {
        "validation_failed": 3,
        "parse_error": 1,
        "lm_error": 0,
        "document_error": 1,
        "prompt_leak": 0,
    }
    # Typed columns: structs for objects, lists of structs for arrays of objects, real dates.
    assert records.schema["po_date"] == pl.Date
    assert isinstance(records.schema["buyer"], pl.Struct)
    schema = program(server).schema
    item = schema["properties"]["line_items"]["items"]
    assert records.schema["line_items"] == pl.List(batch.polars_dtype(schema, item))
    gold = records.filter(pl.col("doc_id") == "po-1001#a").to_dicts()[0]
    assert gold["line_items"][2]["unit_price"] == 31.0 and gold["buyer"]["address"]["country"] == "US"
    assert gold["program_hash"] == program(server).hash and gold["prompt_tokens"] > 0
    # Where each record came from, and the model's time apart from the document's wall time.
    assert gold["source_uri"] == str(PO / GOLD["po-1001"]["file"]) and gold["file_name"].endswith(".txt")
    assert why["po-1002#h"]["source_uri"] == str(PO / GOLD["po-1002"]["file"])
    assert gold["model_s"] > 0 and gold["wall_s"] >= gold["model_s"]
    manifest = json.loads((out / "manifest.json").read_text())
    shard_dirs = {f"shard={s['shard_id']}" for s in manifest["shards"]}
    assert {p.name for p in (out / "records").iterdir()} == shard_dirs
    assert (out / "data_docs" / "index.html").is_file() and not (out / "_staging").exists()
    assert manifest["status"] == "complete" and manifest["summary"]["n_records"] == 3
    shard_stats = [json.loads(p.read_text()) for p in (out / "_shards").glob("*.json")]
    assert sum(s["n_documents"] for s in shard_stats) == 8 and "_records" not in shard_stats[0]
    assert "fake" not in json.dumps(manifest)  # the API key never lands in an output
    # Starting again does nothing: every shard is done.
    before = server.stats.requests
    again = run_batch(docs, program(server), settings(out, server, expectations=str(rules)))
    assert server.stats.requests == before and again["n_processed"] == 0 and again["n_records"] == 3


def test_a_retry_redoes_only_the_documents_the_model_failed(tmp_path: Path, server: FakeLMServer) -> None:
    markers = {"po-1001#1": "", "po-1002#2": "FLAKY", "po-1003#3": "", "po-1001#4": "FLAKY"}
    docs = make_documents(tmp_path / "docs.parquet", markers)
    prog, conf = program(server), settings(tmp_path / "out", server, shard_size=10)
    (shard,) = plan_run(docs, prog, conf).shards
    FLAKY["on"] = True
    try:
        with pytest.raises(ShardIncomplete, match="2 of 4 documents"):
            batch.run_shard(docs, shard, prog, conf)
    finally:
        FLAKY["on"] = False
    assert not batch.shard_done(conf.output_dir, shard.shard_id)
    assert len(batch.load_staged(f"{conf.output_dir}/_staging/{shard.shard_id}")) == 2
    before = server.stats.requests
    stats = batch.run_shard(docs, shard, prog, conf)
    assert server.stats.requests - before == 2  # only the two failed documents, one call each
    assert stats["n_records"] == 4 and stats["resumed_documents"] == 2


def test_typed_values_and_what_cannot_be_stored() -> None:
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": ["string", "null"], "format": "date"},
            "n": {"type": "integer"},
            "any": {},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    assert batch.polars_dtype(schema, schema["properties"]["any"]) == pl.String
    value = {"when": "2024-01-02", "n": 3, "any": {"a": 1}, "tags": ["x"]}
    typed, problem = batch.coerce_record(schema, value)
    assert problem is None
    assert typed == {"when": dt.date(2024, 1, 2), "n": 3, "any": '{"a": 1}', "tags": ["x"]}
    typed, problem = batch.coerce_record(schema, {"when": "soon", "n": 1, "any": None, "tags": []})
    assert typed is None and "cannot store" in problem


def trace(**fields: Any) -> Trace:
    return Trace(prompt_tokens=10, completion_tokens=5, cost_usd=0.25, latency_s=0.5, calls=1, **fields)


@pytest.mark.parametrize(
    ("record", "fields", "kind", "value", "raw"),
    [
        ({"a": 1}, {"raw": '{"a": 1}'}, OutcomeKind.OK, {"a": 1}, None),
        (None, {"raw": "", "error": "down", "error_kind": "unavailable"}, OutcomeKind.TRANSIENT, None, None),
        (
            None,
            {"raw": '{"a": "x"}', "error": "schema", "error_kind": "output"},
            OutcomeKind.INVALID,
            {"a": "x"},
            '{"a": "x"}',
        ),
        (
            None,
            {"raw": '{"a": ', "error": "not JSON", "error_kind": "output"},
            OutcomeKind.PARSE_ERROR,
            None,
            '{"a": ',
        ),
        (None, {"error": "refused", "error_kind": "request"}, OutcomeKind.LM_ERROR, None, None),
    ],
)
def test_an_extraction_becomes_one_outcome_of_its_kind(
    record: Any, fields: dict[str, Any], kind: OutcomeKind, value: Any, raw: str | None
) -> None:
    outcome = Outcome.from_extraction("d1", record, trace(**fields))
    assert (outcome.kind, outcome.value, outcome.raw, outcome.error) == (
        kind,
        value,
        raw,
        fields.get("error"),
    )
    assert (outcome.prompt_tokens, outcome.completion_tokens, outcome.calls) == (10, 5, 1)
    assert outcome.staged == (kind is not OutcomeKind.TRANSIENT)


@pytest.mark.parametrize("kind", list(OutcomeKind))
def test_outcomes_round_trip_through_their_staged_json(kind: OutcomeKind) -> None:
    outcome = Outcome("d1", kind, {"n": 1, "items": [{"x": "é"}]}, "raw", "why", 3, 4, 0.5, 1.25, 2)
    line = json.dumps(outcome.to_dict(), ensure_ascii=False, default=str)
    assert json.loads(line)["kind"] == kind.value  # staged files hold the plain string
    assert Outcome.from_dict(json.loads(line)) == outcome
    assert OutcomeKind(kind.value) is kind


def test_an_outcome_staged_without_usage_keeps_nulls_and_reasons_match_the_quarantine() -> None:
    # What an unexpected exception stages: no usage; the Parquet rows keep nulls for it.
    outcome = Outcome.unexpected("d", KeyError("x"))
    staged = {
        "doc_id": "d",
        "kind": "lm_error",
        "value": None,
        "raw": None,
        "error": "unexpected KeyError: 'x'",
    }
    assert Outcome.from_dict(staged) == outcome
    assert outcome.prompt_tokens is None and outcome.cost_usd is None
    reasons = {k.quarantine_reason for k in OutcomeKind if k is not OutcomeKind.TRANSIENT}
    assert reasons == set(batch.QUARANTINE_REASONS)
    assert OutcomeKind.OK.quarantine_reason == OutcomeKind.INVALID.quarantine_reason == "validation_failed"


def test_progress_counts_every_document_and_shard(tmp_path: Path, server: FakeLMServer) -> None:
    markers = {f"po-100{i % 3 + 1}#{i}": ("INGEST-ERROR" if i == 4 else "") for i in range(7)}
    docs = make_documents(tmp_path / "docs.parquet", markers)
    seen: list[BatchProgress] = []
    run_batch(docs, program(server), settings(tmp_path / "out", server), on_progress=seen.append)
    assert seen[0] == BatchProgress(7, 0, 0, 0, 3, 0, 0)  # the start, before any document
    assert seen[-1] == BatchProgress(7, 7, 0, 0, 3, 3, 0) and seen[-1].processed == 7
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    again: list[BatchProgress] = []
    run_batch(docs, program(server), settings(tmp_path / "out", server), on_progress=again.append)
    assert again == [BatchProgress(7, 7, 7, 0, 3, 3, 0)] and again[0].processed == 0


def test_progress_counts_documents_the_model_could_not_take(tmp_path: Path, server: FakeLMServer) -> None:
    docs = make_documents(tmp_path / "docs.parquet", {"po-1001#1": "", "po-1002#2": "FLAKY"})
    seen: list[BatchProgress] = []
    FLAKY["on"] = True
    try:
        summary = run_batch(
            docs, program(server), settings(tmp_path / "out", server), on_progress=seen.append
        )
    finally:
        FLAKY["on"] = False
    assert summary["status"] == "incomplete"
    assert seen[-1] == BatchProgress(2, 1, 0, 1, 1, 0, 1)


@pytest.mark.slow
def test_kill_9_mid_run_then_restart_writes_every_document_once(tmp_path: Path) -> None:
    n = 240
    docs = make_documents(tmp_path / "docs.parquet", {f"po-100{i % 3 + 1}#{i:03d}": "" for i in range(n)})
    out = tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, ieflow\n"
        "from ieflow.batch import BatchSettings, load_program, run_batch\n"
        f"program = load_program({str(ROOT / 'schemas/purchase_order.json')!r}, model='openai/po')\n"
        f"conf = BatchSettings(output_dir={str(out)!r}, shard_size=40, concurrency=8, api_base=sys.argv[1],\n"
        f"                     api_key_env={KEY_ENV!r}, use_lm_cache=False, flush_every=8)\n"
        f"print(run_batch({docs!r}, program, conf, parallel_shards=2)['n_records'])\n"
    )
    # 0.1 s per answer keeps a shard busy for about half a second: time for the kill to land inside it.
    with FakeLMServer(latency_s=0.1, answer=answer) as srv:
        child = subprocess.Popen(
            [sys.executable, str(script), srv.base_url],
            cwd=ROOT,
            env=os.environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill mid-shard: one shard done, another one staging
            done = {p.parent.name.removeprefix("shard=") for p in out.glob("records/shard=*/part.parquet")}
            if done and {p.parent.name for p in out.glob("_staging/*/*.jsonl")} - done:
                break
            time.sleep(0.01)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        done = {p.parent.name.removeprefix("shard=") for p in out.glob("records/shard=*/part.parquet")}
        staged = sum(1 for p in out.glob("_staging/*/*.jsonl") if p.parent.name not in done for _ in p.open())
        # On a loaded machine the kill can land just as a shard finishes (staged == 0): the restart
        # must still write every document once, and the accounting below still holds.
        assert 1 <= len(done) < n // 40, "the kill came too late to test a restart"
        requests_before = srv.stats.requests
        finished = subprocess.run(
            [sys.executable, str(script), srv.base_url],
            cwd=ROOT,
            env=os.environ,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert finished.returncode == 0, finished.stderr[-2000:]
        redone = srv.stats.requests - requests_before
    records, quarantine = batch.read_outputs(str(out))
    assert len(records) == n and records["doc_id"].n_unique() == n and len(quarantine) == 0
    assert redone == n - 40 * len(done) - staged  # done shards and staged documents were not redone
    evidence = batch.read_dataset(str(out), "evidence")  # committed with the records: once each
    assert evidence["doc_id"].n_unique() == n and not evidence.select("doc_id", "path").is_duplicated().any()


def test_a_run_publishes_to_process_wide_listeners(tmp_path: Path, server: FakeLMServer) -> None:
    """What the CLI's progress bar hears: one start, then every document once, from any thread."""
    docs = make_documents(tmp_path / "docs.parquet", {f"po-100{i % 3 + 1}#{i}": "" for i in range(5)})
    heard: list[Any] = []
    with listening(heard.append):
        run_batch(docs, program(server), settings(tmp_path / "out", server))
    assert heard[0] == BatchStarted(heard[0].run_id, 5, 0)
    finished = [u for u in heard[1:] if isinstance(u, DocumentsFinished)]
    assert len(finished) == len(heard) - 1 and sum(u.done for u in finished) == 5
    heard.clear()
    run_batch(docs, program(server), settings(tmp_path / "out", server))  # nothing left to do
    assert heard == []  # not listening any more


def test_a_doc_id_with_two_contents_is_refused_and_exact_repeats_are_counted(
    tmp_path: Path, server: FakeLMServer
) -> None:
    """Issue 16: no row is dropped without a reason."""
    docs = make_documents(tmp_path / "docs.parquet", {"po-1001#1": "", "po-1002#2": ""})
    rows = pl.read_parquet(docs)
    repeated = pl.concat([rows, rows.head(1), rows.head(1)])
    repeated.write_parquet(tmp_path / "repeated.parquet")
    summary = run_batch(str(tmp_path / "repeated.parquet"), program(server), settings(tmp_path / "a", server))
    assert summary["n_documents"] == 2 and summary["status"] == "complete"
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["duplicate_rows_dropped"] == 2

    clash = pl.concat([rows, rows.head(1).with_columns(pl.lit("other").alias("sha256"))])
    clash.write_parquet(tmp_path / "clash.parquet")
    with pytest.raises(
        ConfigError, match=r"1 doc_ids have rows with different content \(e\.g\. \['po-1001#1'\]\)"
    ):
        run_batch(str(tmp_path / "clash.parquet"), program(server), settings(tmp_path / "b", server))
    assert not (tmp_path / "b" / "manifest.json").exists()  # refused before any work


def test_the_run_keeps_its_program_beside_the_manifest(tmp_path: Path, server: FakeLMServer) -> None:
    docs = make_documents(tmp_path / "docs.parquet", {"po-1001#1": ""})
    prog = program(server)
    run_batch(docs, prog, settings(tmp_path / "out", server))
    assert ExtractionProgram.load(tmp_path / "out" / "program.json") == prog


def test_an_interrupted_run_starts_no_new_shard_and_a_rerun_resumes(
    tmp_path: Path, server: FakeLMServer
) -> None:
    """Issue 16: Ctrl-C (or a stop signal turned into an exception) while shards wait: the shards
    not yet started are cancelled, the running one commits, and a rerun does the rest."""
    docs = make_documents(tmp_path / "docs.parquet", {f"po-100{i % 3 + 1}#{i}": "" for i in range(8)})
    conf = settings(tmp_path / "out", server, shard_size=1)

    def interrupt(stats: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(docs, program(server), conf, parallel_shards=1, on_shard=interrupt)
    committed = list((tmp_path / "out" / "records").glob("shard=*/part.parquet"))
    assert 1 <= len(committed) <= 2  # the first shard, and at most the one already running
    summary = run_batch(docs, program(server), conf, parallel_shards=1)
    assert summary["status"] == "complete" and summary["n_documents"] == 8
    assert len(list((tmp_path / "out" / "records").glob("shard=*/part.parquet"))) == 8
