"""Issue 16, stop signals: `ieflow extract` stopped by SIGTERM, by Ctrl-C (SIGINT to its process
group, as a terminal sends it) or by kill -9 exits within a bound, leaves no process behind and
the port of Prefect's temporary server closed, starts no new shard after the signal, and a rerun
writes each remaining document exactly once.

Real processes throughout: the `ieflow` command in its own session, the fake model server in this
process with a latency per call, so the run is mid-flight (a shard committed, others waiting on
the model) when the signal lands."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import psutil
import pytest

from ieflow import batch
from ieflow_testing.fake_server import FakeLMServer
from tests.reliability.helpers import KEY_ENV, PO_IDS, PO_SCHEMA, ROOT, po_answer, po_text

N_DOCS = 12  # one per shard: a shard is one model call, so counting shards counts calls
PARALLEL_SHARDS = 2  # the extract flow's default: at most this many run when the signal lands
LATENCY_S = 3.0  # per model call: all 12 shards take >= 18 s, so a run that went on would show
START_DEADLINE_S = 150.0  # Prefect's temporary server and the first shard, on a busy machine
EXIT_BOUND_S = 30.0  # the running shards' last call (3 s) and commit, Prefect's teardown, exit
GONE_BOUND_S = 15.0  # the watcher's SIGTERM, up to 5 s of grace, SIGKILL, reaping


@dataclass
class Stopped:
    """What one interrupted run left: its processes, its server's port, shards and calls."""

    exit_code: int
    start_s: float  # from the start to the first committed shard, when the signal was sent
    exit_s: float
    descendants: list[psutil.Process]
    server_port: int
    committed_at_signal: int
    committed_after: int
    requests_at_signal: int
    stderr: str


def documents(path: Path, tag: str) -> str:
    """N_DOCS purchase orders, each text unique (tagged), so the LM cache answers none of them."""
    ids = [f"{tag}-{i:03d}" for i in range(N_DOCS)]
    texts = [po_text(PO_IDS[i % len(PO_IDS)], marker=doc_id) for i, doc_id in enumerate(ids)]
    pl.DataFrame(
        {"doc_id": ids, "sha256": ids, "text": texts, "status": ["ok"] * N_DOCS, "error": [None] * N_DOCS},
        schema_overrides={"error": pl.String},
    ).write_parquet(path)
    return str(path)


def extract_command(docs: str, out: Path, base_url: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ieflow_cli.main",
        "extract",
        docs,
        "--program",
        str(PO_SCHEMA),
        "--output-dir",
        str(out),
        "--shard-size",
        "1",
        "--concurrency",
        str(PARALLEL_SHARDS),
        "--model",
        "openai/po",
        "--api-base",
        base_url,
        "--api-key-env",
        KEY_ENV,
        "--no-progress",
    ]


@pytest.fixture(scope="module")
def child_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The CLI's environment: a fake key, and Prefect's temporary server on a database of its own
    (shared by this module's runs: its migrations run once)."""
    env = {**os.environ, KEY_ENV: "fake", "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-home"))}
    env.pop("PREFECT_API_URL", None)
    return env


def committed(out: Path) -> int:
    return len(list(out.glob("records/shard=*/part.parquet")))


def wait_for(condition, deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {deadline_s} s"
        time.sleep(0.05)


def temporary_server(descendants: list[psutil.Process]) -> int:
    """The port of Prefect's temporary server among the CLI's descendants."""
    for process in descendants:
        args = process.cmdline()
        if "uvicorn" in args and "prefect.server.api.server:create_app" in args:
            return int(args[args.index("--port") + 1])
    raise AssertionError(f"no temporary Prefect server among {[p.cmdline()[:4] for p in descendants]}")


def stop_mid_flight(
    cmd: list[str], env: dict[str, str], out: Path, server: FakeLMServer, how: str
) -> Stopped:
    """Start the command, wait until a shard is committed, send the signal `how`, wait for the end."""
    stderr_path = out.parent / f"{out.name}.stderr"
    with stderr_path.open("w") as stderr:
        cli = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
    started = time.monotonic()
    try:
        wait_for(lambda: committed(out) >= 1 or cli.poll() is not None, START_DEADLINE_S, "a first shard")
        assert cli.poll() is None, stderr_path.read_text()[-3000:]
        descendants = psutil.Process(cli.pid).children(recursive=True)
        port = temporary_server(descendants)
        committed_at_signal, requests_at_signal = committed(out), server.stats.requests
        sent = time.monotonic()
        start_s = sent - started
        if how == "SIGINT":  # Ctrl-C: the terminal signals the whole foreground process group
            os.killpg(cli.pid, signal.SIGINT)
        else:
            os.kill(cli.pid, getattr(signal, how))
        exit_code = cli.wait(timeout=EXIT_BOUND_S + 60)
        exit_s = time.monotonic() - sent
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
    return Stopped(
        exit_code=exit_code,
        start_s=start_s,
        exit_s=exit_s,
        descendants=descendants,
        server_port=port,
        committed_at_signal=committed_at_signal,
        committed_after=committed(out),
        requests_at_signal=requests_at_signal,
        stderr=stderr_path.read_text(),
    )


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def survivors_after(processes: list[psutil.Process], bound_s: float) -> list[str]:
    """The command lines of `processes` still running after `bound_s`; those are then killed, so a
    failing test leaves nothing behind either."""
    deadline = time.monotonic() + bound_s
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    names = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):  # it may end while looked at
            if alive(process):
                names.append(" ".join(process.cmdline()[:4]))
                process.kill()
    return names


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


EXIT_CODES = {"SIGTERM": 128 + signal.SIGTERM, "SIGINT": 128 + signal.SIGINT, "SIGKILL": -signal.SIGKILL}


# Two starts of the real command (each its own Prefect server): 90-150 s on a busy 2-core machine.
@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_stopped_extract_leaves_nothing_behind_and_resumes(
    how: str, tmp_path: Path, child_env: dict[str, str]
) -> None:
    docs = documents(tmp_path / "docs.parquet", f"{how.lower()}-doc")
    out = tmp_path / "out"
    with FakeLMServer(latency_s=LATENCY_S, answer=po_answer) as server:
        cmd = extract_command(docs, out, server.base_url)
        started = time.monotonic()
        stopped = stop_mid_flight(cmd, child_env, out, server, how)
        survivors = survivors_after(stopped.descendants, GONE_BOUND_S)
        gone_s = time.monotonic() - started - stopped.start_s - stopped.exit_s
        assert not survivors, f"still running {GONE_BOUND_S} s after the exit: {survivors}"
        server.set_latency(0.0)
        rerun_started = time.monotonic()
        rerun = subprocess.run(cmd, cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=180)
        rerun_s = time.monotonic() - rerun_started
        requests = server.stats.requests
    records, quarantine = batch.read_outputs(str(out))
    print(
        json.dumps(
            {
                "signal": how,
                "exit_code": stopped.exit_code,
                "start_s": round(stopped.start_s, 1),
                "exit_s": round(stopped.exit_s, 1),
                "descendants_gone_after_exit_s": round(gone_s, 1),
                "rerun_s": round(rerun_s, 1),
                "committed_at_signal": stopped.committed_at_signal,
                "committed_after": stopped.committed_after,
                "requests_at_signal": stopped.requests_at_signal,
                "requests_total": requests,
            }
        )
    )
    assert stopped.exit_code == EXIT_CODES[how], stopped.stderr[-3000:]
    assert stopped.exit_s < EXIT_BOUND_S
    assert not port_open(stopped.server_port)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(records) == N_DOCS and records["doc_id"].n_unique() == N_DOCS and len(quarantine) == 0
    if how != "SIGKILL":
        assert f"ieflow: stopped by {how}" in stopped.stderr
        # No shard started after the signal: only those running then (one call each) finished.
        assert stopped.committed_after <= stopped.committed_at_signal + PARALLEL_SHARDS
        # Running shards committed their documents, so the rerun asked the model for none twice.
        assert requests == N_DOCS
    else:  # calls in flight at the kill were lost with the process; the rerun asked again
        assert N_DOCS <= requests <= N_DOCS + PARALLEL_SHARDS


GUARDED_PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    from ieflow_cli.guard import end_with_this_process
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    watcher = end_with_this_process(child)
    print(child.pid, watcher.pid, flush=True)
    if sys.argv[1] == "child-ends-first":
        child.terminate()
        child.wait()
    time.sleep(120)
    """
)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the guard needs pidfds (Linux)")
def test_the_watcher_ends_the_child_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", GUARDED_PARENT, "parent-killed"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    child, watcher = (psutil.Process(int(pid)) for pid in parent.stdout.readline().split())
    try:
        assert alive(child) and alive(watcher)
        parent.kill()
        parent.wait()
        wait_for(lambda: not alive(child) and not alive(watcher), 10, "the child's end")
    finally:
        for process in (child, watcher):
            if alive(process):
                process.kill()


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the guard needs pidfds (Linux)")
def test_the_watcher_leaves_when_the_child_ends_first() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", GUARDED_PARENT, "child-ends-first"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # The child may already be reaped when the line is read: only the watcher is looked up, and
        # a watcher that has already left (NoSuchProcess) is the outcome this test wants.
        watcher_pid = int(parent.stdout.readline().split()[1])
        with contextlib.suppress(psutil.NoSuchProcess):
            watcher = psutil.Process(watcher_pid)
            wait_for(lambda: not alive(watcher), 10, "the watcher's end")
        assert parent.poll() is None  # the parent lives on, unharmed
    finally:
        parent.kill()
        parent.wait()


HOOK_CHECK = textwrap.dedent(
    """
    import subprocess, sys
    from ieflow_cli.guard import guard_temporary_server
    guard_temporary_server()
    assert "prefect.server.api.server" not in sys.modules  # the hook waits for Prefect's import
    from prefect.server.api import server
    start = server.SubprocessASGIServer._run_uvicorn_command
    print(getattr(start, "ieflow_guarded", False), server.subprocess.Popen is not subprocess.Popen)
    """
)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the guard needs pidfds (Linux)")
def test_the_guard_hooks_this_prefects_temporary_server() -> None:
    # A Prefect upgrade that moves the hooked names fails here (and at import in the CLI), loudly.
    done = subprocess.run(
        [sys.executable, "-c", HOOK_CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True", "True"]


def test_an_interrupt_cancels_only_the_shards_not_started() -> None:
    from prefect.futures import PrefectConcurrentFuture

    from ieflow_flows.extract import cancel_not_started

    release = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(release.wait, 10)
        queued = [pool.submit(lambda: "done") for _ in range(3)]
        futures = [PrefectConcurrentFuture(uuid.uuid4(), f) for f in (running, *queued)]
        wait_for(running.running, 5, "the first job's start")
        assert cancel_not_started(futures) == 3
        release.set()
        assert running.result(timeout=5) is True  # the running one finishes (and would commit)
    assert all(f.cancelled() for f in queued)
