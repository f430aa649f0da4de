"""Batch extraction throughput against the fake LM server, then a kill -9 and restart check.

    python benchmarks/extract_throughput.py                      # 10,000 docs, 100 ms, 32 in flight
    python benchmarks/extract_throughput.py --docs 2000 --engine core --no-restart

1. Throughput: N small receipt-like documents through the `extract` flow (or the plain
   `ieflow.batch.run_batch` with `--engine core`) against `FakeLMServer(latency_s=0.1,
   process=True)`: the server runs in its own process, so its CPU does not count against the
   client's GIL. The ideal is concurrency / latency (320 documents/s); the figure is documents/s
   divided by that, timed inside the run (the temporary Prefect server's start-up is excluded and
   printed apart). A second reference is measured first in the same run: bare
   `litellm.acompletion` calls at the same concurrency from one process, i.e. what any litellm
   client reaches on this machine (on 2 cores litellm's own CPU per call, not the server, sets
   that ceiling). Peak memory is this process's maximum RSS (the fake server and the temporary
   Prefect server are other processes).
2. Restart: the same run in a child process (its own session, so the kill takes its temporary
   Prefect server too) is killed with SIGKILL once some shards are written, then started again
   and left to finish. Checked: exactly N rows over records + quarantine, no doc_id twice, every
   input document present, and how many model calls the restart needed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # 10,000 documents: keep the log short
KEY_ENV = "IEFLOW_BENCH_KEY"
MODEL = "openai/bench"
# A priced model, as in production: an unpriced one makes litellm search its cost map on every call.
PRICES = {MODEL: {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}
os.environ.setdefault("IEFLOW_MODEL_PRICES", json.dumps(PRICES))


def make_documents(path: Path, n: int, seed: int = 0) -> None:
    import polars as pl

    rng = random.Random(seed)
    shops = ["KEDAI RUNCIT AH SENG", "TESCO EXTRA", "99 SPEEDMART", "AEON BIG", "GIANT HYPERMARKET"]
    rows = []
    for i in range(n):
        total = round(rng.uniform(2, 400), 2)
        text = (
            f"{rng.choice(shops)} SDN BHD\nNO.{rng.randint(1, 99)}, JALAN {rng.randint(1, 30)}\n"
            f"DATE: {rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/2018\nITEM x{rng.randint(1, 5)}\n"
            f"TOTAL RM {total:.2f}\nTHANK YOU\n"
        )
        rows.append(
            {"doc_id": f"doc-{i:06d}", "sha256": f"{i:064x}", "text": text, "status": "ok", "error": None}
        )
    pl.DataFrame(rows).write_parquet(path)


def run_once(args: argparse.Namespace, documents: str, out: str, base_url: str) -> dict:
    """One run of the chosen engine; returns the run summary."""
    if args.engine == "core":
        from ieflow.batch import BatchSettings, load_program, run_batch

        settings = BatchSettings(
            output_dir=out,
            shard_size=args.shard_size,
            concurrency=args.concurrency,
            api_base=base_url,
            api_key_env=KEY_ENV,
            use_lm_cache=args.lm_cache,
        )
        program = load_program(str(ROOT / "schemas" / "sroie.json"), model=MODEL)
        return run_batch(documents, program, settings, parallel_shards=args.parallel_shards)
    from ieflow_flows.extract import ExtractParams, extract

    # `concurrency` is per process; with Dask the total in flight is split over the workers.
    per_process = args.concurrency // args.workers if args.task_runner == "dask" else args.concurrency
    params = ExtractParams(
        documents=documents,
        program=str(ROOT / "schemas" / "sroie.json"),
        output_dir=out,
        shard_size=args.shard_size,
        concurrency=max(1, per_process),
        parallel_shards=args.parallel_shards,
        model=MODEL,
        api_base=base_url,
        api_key_env=KEY_ENV,
        use_lm_cache=args.lm_cache,
        task_runner=args.task_runner,
        dask_workers=args.workers,
    )
    return extract(params)


def bare_litellm_rate(base_url: str, calls: int, concurrency: int) -> dict:
    """The reference a client can reach at all here: bare `litellm.acompletion` calls, `concurrency`
    in flight, one process, no ieflow (no prompt building, parsing, validation or writing)."""
    import asyncio

    import litellm

    async def main() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                await litellm.acompletion(
                    model=MODEL,
                    api_base=base_url,
                    api_key=os.environ[KEY_ENV],
                    messages=[{"role": "user", "content": f"TOTAL RM {i}.00"}],
                    temperature=0.0,
                    num_retries=0,
                )

        await asyncio.gather(*(one(i) for i in range(calls)))

    started, cpu_started = time.perf_counter(), time.process_time()
    asyncio.run(main())
    wall = time.perf_counter() - started
    return {
        "calls": calls,
        "calls_per_s": round(calls / wall, 1),
        "cpu_ms_per_call": round(1000 * (time.process_time() - cpu_started) / calls, 2),
    }


def child_main(args: argparse.Namespace) -> None:
    summary = run_once(args, args.child_documents, args.child_out, args.child_base_url)
    print(json.dumps({"n_records": summary["n_records"], "n_quarantined": summary["n_quarantined"]}))


def child_command(args: argparse.Namespace, documents: str, out: str, base_url: str) -> list[str]:
    command = [
        sys.executable,
        __file__,
        "--engine",
        args.engine,
        "--shard-size",
        str(args.shard_size),
        "--concurrency",
        str(args.concurrency),
        "--parallel-shards",
        str(args.parallel_shards),
        "--task-runner",
        args.task_runner,
        "--workers",
        str(args.workers),
        "--child-documents",
        documents,
        "--child-out",
        out,
        "--child-base-url",
        base_url,
    ]
    return [*command, "--lm-cache"] if args.lm_cache else command


def restart_check(args: argparse.Namespace, documents: str, out: str, server: object) -> dict:
    """Kill -9 a run once a third of its shards are written, start it again, check exactly once."""
    import polars as pl

    from ieflow.batch import read_outputs

    n_shards = -(-args.docs // args.shard_size)
    command = child_command(args, documents, out, server.base_url)  # type: ignore[attr-defined]
    requests_start = server.stats.requests  # type: ignore[attr-defined]
    child = subprocess.Popen(
        command, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and child.poll() is None:
        done = {p.parent.name.removeprefix("shard=") for p in Path(out).glob("records/shard=*/part.parquet")}
        running = {p.parent.name for p in Path(out).glob("_staging/*/*.jsonl")} - done
        if len(done) >= max(1, n_shards // 3) and running:  # mid-shard: documents staged and in flight
            break
        time.sleep(0.02)
    if child.poll() is not None:
        raise RuntimeError(f"the run ended before the kill: {child.stderr.read().decode()[-2000:]}")
    os.killpg(child.pid, signal.SIGKILL)  # the whole session: the run and its temporary Prefect server
    child.wait()
    done = {p.parent.name.removeprefix("shard=") for p in Path(out).glob("records/shard=*/part.parquet")}
    staged_at_kill = sum(
        1 for p in Path(out).glob("_staging/*/*.jsonl") if p.parent.name not in done for _ in p.open()
    )
    requests_before = server.stats.requests  # type: ignore[attr-defined]
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if finished.returncode != 0:
        raise RuntimeError(f"the restarted run failed: {finished.stderr[-3000:]}")
    records, quarantine = read_outputs(out)
    ids = pl.concat([records.select("doc_id"), quarantine.select("doc_id")])["doc_id"]
    expected = set(pl.read_parquet(documents, columns=["doc_id"])["doc_id"])
    return {
        "shards_done_at_kill": len(done),
        "of_shards": n_shards,
        "documents_staged_at_kill": staged_at_kill,
        "model_calls_first_start": requests_before - requests_start,
        "model_calls_restart": server.stats.requests - requests_before,  # type: ignore[attr-defined]
        "restart_seconds": round(time.perf_counter() - started, 1),
        "rows": len(ids),
        "unique_doc_ids": ids.n_unique(),
        "records": len(records),
        "quarantined": len(quarantine),
        "all_documents_present": set(ids) == expected,
        "exactly_once": len(ids) == ids.n_unique() == len(expected) and set(ids) == expected,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--parallel-shards", type=int, default=2)
    parser.add_argument("--engine", choices=["flow", "core"], default="flow")
    parser.add_argument("--task-runner", choices=["thread", "dask"], default="thread")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument(
        "--lm-cache",
        action="store_true",
        help="use the LM response cache (off: a fresh corpus never hits it, and writing it costs time)",
    )
    parser.add_argument(
        "--bare-calls",
        type=int,
        default=3000,
        help="calls of the bare-litellm reference measured first (0: skip)",
    )
    parser.add_argument("--no-restart", action="store_true", help="skip the kill -9 / restart check")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--child-documents", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--child-base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault(KEY_ENV, "fake")
    if args.child_out:
        child_main(args)
        return

    import ieflow  # noqa: F401  (offline env defaults)
    from ieflow_testing.fake_server import FakeLMServer

    # Imported before the clock starts (after ieflow's offline settings): ~9 s once per process
    # (ENVIRONMENT.md), a start-up cost rather than throughput.
    for module in ("litellm", "great_expectations"):
        importlib.import_module(module)

    with tempfile.TemporaryDirectory(prefix="ieflow-bench-") as tmp:
        os.environ.setdefault("PREFECT_HOME", str(Path(tmp) / "prefect"))
        os.environ.setdefault("IEFLOW_HOME", str(Path(tmp) / "ieflow"))
        documents = str(Path(tmp) / "documents.parquet")
        make_documents(Path(documents), args.docs)
        ideal = args.concurrency / args.latency
        with FakeLMServer(latency_s=args.latency, process=True) as server:
            bare = None
            if args.bare_calls:
                bare = bare_litellm_rate(server.base_url, args.bare_calls, args.concurrency)
                print(
                    f"bare litellm, one process: {bare['calls_per_s']} calls/s of ideal {ideal:.0f}/s "
                    f"-> ratio {bare['calls_per_s'] / ideal:.3f}; {bare['cpu_ms_per_call']} ms CPU/call",
                    flush=True,
                )
            requests_before_run = server.stats.requests
            started, cpu_started = time.perf_counter(), time.process_time()
            summary = run_once(args, documents, str(Path(tmp) / "run"), server.base_url)
            end_to_end = time.perf_counter() - started
            # CPU of this process per document (the fake server and the Prefect server run apart):
            # on a shared machine the wall-clock rate depends on the load, this does not.
            cpu_ms = 1000 * (time.process_time() - cpu_started) / summary["n_documents"]
            rate = summary["n_documents"] / summary["wall_s"]
            figures = {
                "documents": summary["n_documents"],
                "records": summary["n_records"],
                "quarantined": summary["n_quarantined"],
                "engine": args.engine,
                "task_runner": args.task_runner,
                "shard_size": args.shard_size,
                "parallel_shards": args.parallel_shards,
                "concurrency": args.concurrency,
                "latency_s": args.latency,
                "wall_s": summary["wall_s"],
                "end_to_end_s": round(end_to_end, 1),
                "docs_per_s": round(rate, 1),
                "ideal_docs_per_s": ideal,
                "ratio": round(rate / ideal, 3),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "cpu_ms_per_doc": round(cpu_ms, 2),
                "one_core_ceiling_ratio": round(1000 / cpu_ms / ideal, 3),
                "model_calls": server.stats.requests - requests_before_run,
                "cost_usd": summary["cost_usd"],
                "cpu_count": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
            if bare:
                figures["bare_litellm"] = bare
                figures["ratio_to_bare_litellm"] = round(rate / bare["calls_per_s"], 3)
            print(
                f"throughput: {rate:.1f} docs/s of ideal {ideal:.0f}/s -> ratio {rate / ideal:.3f} "
                f"(target >= 0.85); run {summary['wall_s']} s, end to end {end_to_end:.1f} s; "
                f"peak RSS {figures['peak_rss_mb']} MB (target < 1536); {cpu_ms:.2f} ms CPU per document "
                f"(one free core would allow ratio {figures['one_core_ceiling_ratio']}), "
                f"load average {figures['load_avg_1m']}"
                + (f"; {figures['ratio_to_bare_litellm']} of bare litellm's rate" if bare else ""),
                flush=True,
            )
            if not args.no_restart:
                check = restart_check(args, documents, str(Path(tmp) / "restart"), server)
                figures["restart"] = check
                print(
                    f"restart: killed at {check['shards_done_at_kill']}/{check['of_shards']} shards done, "
                    f"{check['documents_staged_at_kill']} documents staged in running shards; restart made "
                    f"{check['model_calls_restart']} model calls; {check['rows']} rows, "
                    f"{check['unique_doc_ids']} unique, exactly once: {check['exactly_once']}",
                    flush=True,
                )
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
