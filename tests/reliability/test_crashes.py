"""Issue 7, crashes: kill -9 an optimization at random points (several seeds), resume, and end with
the same best program and the same metric calls as an uninterrupted run; kill a batch extraction
repeatedly and still write every document exactly once."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ieflow import batch
from ieflow_testing.fake_server import FakeLMServer
from tests.reliability.helpers import (
    KEY_ENV,
    PO_SCHEMA,
    ROOT,
    make_po_documents,
    po_answer,
    receipt_models,
    run_gepa,
)

FORK = multiprocessing.get_context("fork")


def _optimize_child(run_dir: str, base_url: str, result_file: str) -> None:
    result = run_gepa(Path(run_dir), base_url)
    Path(result_file).write_text(
        json.dumps({"hash": result.best_program.hash, "metric_calls": result.usage["metric_calls"]})
    )


def fork(target, *args) -> multiprocessing.Process:
    """A forked child (no re-import: a start costs milliseconds, not seconds) running `target`.

    The parent makes no model call itself, so no child inherits an open HTTP connection."""
    child = FORK.Process(target=target, args=args, daemon=True)
    child.start()
    return child


def kill_child_when(child: multiprocessing.Process, ready, deadline_s: float = 60.0) -> bool:
    """kill -9 the child once `ready()` holds; False if it finished first."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and child.is_alive():
        if ready():
            os.kill(child.pid, signal.SIGKILL)
            child.join()
            assert child.exitcode == -signal.SIGKILL
            return True
        time.sleep(0.005)
    child.join(timeout=60)
    return False


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=os.environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def kill_when(child: subprocess.Popen, ready, deadline_s: float = 60.0) -> bool:
    """SIGKILL the child's process group once `ready()` holds; False if it finished first."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and child.poll() is None:
        if ready():
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return True
        time.sleep(0.01)
    child.wait(timeout=60)
    return False


@pytest.mark.slow
def test_optimize_killed_at_random_points_resumes_to_the_same_program(tmp_path: Path) -> None:
    import litellm

    # Warm litellm up once here (a mocked call opens no connection), so no child pays it again.
    litellm.completion(model="openai/student", messages=[{"role": "user", "content": "x"}], mock_response="x")
    outcomes = []
    with FakeLMServer(latency_s=0.05, answer=receipt_models) as server:
        child = fork(
            _optimize_child, str(tmp_path / "reference"), server.base_url, str(tmp_path / "ref.json")
        )
        child.join(timeout=120)
        assert child.exitcode == 0
        reference = json.loads((tmp_path / "ref.json").read_text())
        total = reference["metric_calls"]
        assert total >= 10
        for seed in (1, 2, 3, 4, 5):
            rng = random.Random(seed)
            run_dir = tmp_path / f"seed{seed}"
            ledger, result_file = run_dir / "evaluations.jsonl", tmp_path / f"seed{seed}.json"
            kills = []
            for _ in range(3):  # up to three kills, each at a random number of evaluations done
                done = lines(ledger)
                if done >= total - 1:
                    break
                target = rng.randint(done + 1, total - 1)
                child = fork(_optimize_child, str(run_dir), server.base_url, str(result_file))
                if kill_child_when(child, lambda t=target, f=ledger: lines(f) >= t):
                    kills.append(lines(ledger))
            child = fork(_optimize_child, str(run_dir), server.base_url, str(result_file))
            child.join(timeout=120)
            assert child.exitcode == 0
            got = json.loads(result_file.read_text())
            entries = [json.loads(x) for x in ledger.read_text().splitlines() if x.strip()]
            keys = [(e["program"], e["result"]["doc_id"]) for e in entries]
            outcomes.append(
                {
                    "seed": seed,
                    "killed_after_evaluations": kills,
                    **got,
                    "ledger_entries": len(keys),
                    "duplicates": len(keys) - len(set(keys)),
                }
            )
            assert kills, f"seed {seed}: no kill landed before the run finished"
            assert got["hash"] == reference["hash"]
            assert got["metric_calls"] == total
            assert len(keys) == len(set(keys)) == total  # no evaluation was paid twice
    print(json.dumps({"reference": reference, "runs": outcomes}))


EXTRACT = (
    "import sys, ieflow\n"
    "from ieflow.batch import BatchSettings, load_program, run_batch\n"
    "program = load_program(sys.argv[3], model='openai/po')\n"
    "conf = BatchSettings(output_dir=sys.argv[2], shard_size=40, concurrency=16, api_base=sys.argv[4],\n"
    f"                     api_key_env={KEY_ENV!r}, use_lm_cache=False, flush_every=8)\n"
    "print(run_batch(sys.argv[1], program, conf, parallel_shards=2)['status'])\n"
)


@pytest.mark.slow
def test_extract_killed_again_and_again_writes_every_document_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, "fake")
    n = 400
    docs = make_po_documents(tmp_path / "docs.parquet", n)
    out = tmp_path / "out"
    rng = random.Random(5)
    kills = []
    with FakeLMServer(latency_s=0.03, answer=po_answer) as server:
        # A real subprocess, not a fork: polars' thread pool does not survive a fork.
        args = ["-c", EXTRACT, docs, str(out), str(PO_SCHEMA), server.base_url]
        staged = out / "_staging"
        for _ in range(3):
            before = server.stats.requests
            wait = rng.randint(5, 60)  # model calls of this attempt before the kill
            child = spawn(args)
            if kill_when(child, lambda b=before, w=wait: server.stats.requests - b >= w):
                kills.append(
                    {
                        "calls_before_kill": server.stats.requests - before,
                        "shards_done": len(list(out.glob("records/shard=*/part.parquet"))),
                        "staged_files": len(list(staged.rglob("*.jsonl"))) if staged.exists() else 0,
                    }
                )
        final = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=os.environ, capture_output=True, text=True, timeout=180
        )
        assert final.returncode == 0, final.stderr[-2000:]
        total_requests = server.stats.requests
    records, quarantine = batch.read_outputs(str(out))
    print(
        json.dumps(
            {
                "kills": kills,
                "requests": total_requests,
                "records": len(records),
                "quarantined": len(quarantine),
            }
        )
    )
    assert len(kills) >= 3
    assert len(records) == n and records["doc_id"].n_unique() == n and len(quarantine) == 0
    assert total_requests < 1.5 * n  # staged work was not redone wholesale
