"""Wide-schema timings: load, program build and a 2-document batch against the fake server for
flat schemas of N string fields, each as a ratio to the 50-field time.

    python benchmarks/wide_schema.py [--fields 50,500,5000] [--batch-timeout 120]

A batch is run in a child process so one that outlasts --batch-timeout is stopped and reported
as such instead of hanging the benchmark."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import polars as pl

KEY_ENV = "IEFLOW_BENCH_FAKE_KEY"


def flat_schema(n_fields: int) -> dict[str, object]:
    return {"type": "object", "properties": {f"f{i:05d}": {"type": "string"} for i in range(n_fields)}}


def _batch(folder: str, n_fields: int, queue: multiprocessing.Queue) -> None:
    from ieflow.batch import BatchSettings, load_program, run_batch
    from ieflow_testing.fake_server import FakeLMServer

    os.environ[KEY_ENV] = "fake"
    record = {f"f{i:05d}": f"v{i}" for i in range(n_fields)}
    with FakeLMServer(answer=lambda body: record) as server:
        program = load_program(str(Path(folder) / "schema.json"), model=server.model_name("wide"))
        settings = BatchSettings(
            output_dir=str(Path(folder) / "out"),
            shard_size=2,
            concurrency=2,
            api_base=server.base_url,
            api_key_env=KEY_ENV,
            use_lm_cache=False,
            max_retries=1,
        )
        started = time.perf_counter()
        summary = run_batch(str(Path(folder) / "documents.parquet"), program, settings)
        queue.put((time.perf_counter() - started, summary.get("n_records")))


def batch_seconds(folder: str, n_fields: int, timeout_s: float) -> tuple[float | None, object]:
    """Seconds of a 2-document run_batch, or None when it outlasted `timeout_s`."""
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads forked mid-lock
    queue = spawn.Queue()
    child = spawn.Process(target=_batch, args=(folder, n_fields, queue))
    child.start()
    child.join(timeout_s)
    if child.is_alive():
        child.terminate()
        child.join(10)
        return None, None
    return queue.get(timeout=5) if not queue.empty() else (None, f"exit {child.exitcode}")


def measure(n_fields: int, timeout_s: float) -> dict[str, object]:
    from ieflow.program import ExtractionProgram
    from ieflow.schema import load_schema

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "schema.json").write_text(json.dumps(flat_schema(n_fields)))
        docs = [
            {"doc_id": f"d{i}", "sha256": f"s{i}", "text": f"document {i}", "status": "ok"} for i in range(2)
        ]
        pl.DataFrame(docs).with_columns(error=pl.lit(None, pl.String)).write_parquet(
            Path(folder) / "documents.parquet"
        )
        started = time.perf_counter()
        schema = load_schema(Path(folder) / "schema.json")
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        ExtractionProgram.from_schema(schema).messages("document")
        program_s = time.perf_counter() - started
        batch_s, records = batch_seconds(folder, n_fields, timeout_s)
    return {"fields": n_fields, "load": load_s, "program": program_s, "batch": batch_s, "records": records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", default="50,500,5000")
    parser.add_argument("--batch-timeout", type=float, default=120.0)
    args = parser.parse_args()
    rows = [measure(int(n), args.batch_timeout) for n in args.fields.split(",")]
    base = rows[0]
    print("| fields | load s (x ref) | program s (x ref) | 2-doc batch s (x ref) |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        cells = []
        for key in ("load", "program", "batch"):
            value, ref = row[key], base[key]
            if value is None:
                cells.append(f"> {args.batch_timeout:.0f} (stopped)")
            else:
                ratio = f" ({value / ref:.0f}x)" if ref else ""
                cells.append(f"{value:.2f}{ratio}")
        print(f"| {row['fields']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
