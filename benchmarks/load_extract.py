"""Load: N documents (100,000 by default) through batch extraction against the fake LM server.

    python benchmarks/load_extract.py                     # 100,000 docs, shard size 1,000
    python benchmarks/load_extract.py --docs 20000 --shard-size 500

The fake server runs in its own process (`FakeLMServer(process=True)`) and answers fast (a minimal
instance of the requested schema after `--latency` seconds), so the client is what is measured.
Reported, as JSON:
- peak RSS of this process, sampled every 0.25 s, and the RSS at 10%, 50% and 90% of the shards:
  `rss_growth_10_to_90` is the ratio RSS(90%) / RSS(10%) (flat memory: close to 1);
- documents/s over the first and the last 10% of shards (by completion time), and their ratio
  `throughput_last_over_first` (steady throughput: close to 1); the first shard also pays imports
  and warm-up, so the ratio is also given against shards 2..k+1 (`..._after_warmup`);
- exactly-once over the output: rows, unique doc ids, records, quarantined.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEY_ENV = "IEFLOW_BENCH_KEY"
MODEL = "openai/bench"
os.environ.setdefault(
    "IEFLOW_MODEL_PRICES", json.dumps({MODEL: {"input_per_mtok": 0.15, "output_per_mtok": 0.6}})
)
os.environ.setdefault(KEY_ENV, "fake")


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    def __init__(self, every_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.every_s, self.peak, self.samples, self.stop = every_s, 0.0, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            value = rss_mb()
            self.peak = max(self.peak, value)
            self.samples.append((time.perf_counter(), value))
            self.stop.wait(self.every_s)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--parallel-shards", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.005)
    parser.add_argument(
        "--out", default=None, help="a folder for documents and outputs (default: a temp dir)"
    )
    args = parser.parse_args()

    import polars as pl

    import ieflow  # noqa: F401
    from benchmarks.extract_throughput import make_documents
    from ieflow.batch import BatchSettings, load_program, read_outputs, run_batch
    from ieflow_testing.fake_server import FakeLMServer

    work = Path(args.out or tempfile.mkdtemp(prefix="ieflow-load-"))
    work.mkdir(parents=True, exist_ok=True)
    documents = work / "documents.parquet"
    if not documents.exists():
        make_documents(documents, args.docs)
    out = work / "out"
    sampler = Sampler()
    sampler.start()
    rss_start = rss_mb()
    done: list[tuple[float, int, float]] = []  # (time, documents, rss) at each finished shard
    with FakeLMServer(latency_s=args.latency, process=True) as server:
        settings = BatchSettings(
            output_dir=str(out),
            shard_size=args.shard_size,
            concurrency=args.concurrency,
            api_base=server.base_url,
            api_key_env=KEY_ENV,
            use_lm_cache=False,
        )
        program = load_program(str(ROOT / "schemas" / "sroie.json"), model=MODEL)
        started = time.perf_counter()
        summary = run_batch(
            str(documents),
            program,
            settings,
            parallel_shards=args.parallel_shards,
            on_shard=lambda s: done.append((time.perf_counter(), s["n_documents"], rss_mb())),
        )
        wall = time.perf_counter() - started
        requests = server.stats.requests
    sampler.stop.set()
    sampler.join()

    def rate(window: list[tuple[float, int, float]], before: float) -> float:
        return sum(n for _, n, _ in window) / max(1e-9, window[-1][0] - before)

    k = max(1, len(done) // 10)
    first = rate(done[:k], started)
    # The first shard also pays the imports and client warm-up: the steady first window skips it.
    first_steady = rate(done[1 : k + 1], done[0][0]) if len(done) > k + 1 else first
    last = rate(done[-k:], done[-k - 1][0] if len(done) > k else started)

    def rss_at(fraction: float) -> float:
        return done[min(len(done) - 1, int(fraction * len(done)))][2]

    records, quarantine = read_outputs(str(out))
    ids = pl.concat([records.select("doc_id"), quarantine.select("doc_id")])["doc_id"]
    report = {
        "documents": args.docs,
        "shards": len(done),
        "shard_size": args.shard_size,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "wall_s": round(wall, 1),
        "docs_per_s": round(args.docs / wall, 1),
        "model_requests": requests,
        "rss_start_mb": round(rss_start),
        "peak_rss_mb": round(sampler.peak),
        "rss_at_10_50_90_pct_mb": [round(rss_at(f)) for f in (0.1, 0.5, 0.9)],
        "rss_growth_10_to_90": round(rss_at(0.9) / rss_at(0.1), 3),
        "first_10pct_docs_per_s": round(first, 1),
        "last_10pct_docs_per_s": round(last, 1),
        "throughput_last_over_first": round(last / first, 3),
        "first_10pct_after_warmup_docs_per_s": round(first_steady, 1),
        "throughput_last_over_first_after_warmup": round(last / first_steady, 3),
        "rows": len(ids),
        "unique_doc_ids": ids.n_unique(),
        "records": len(records),
        "quarantined": len(quarantine),
        "status": summary["status"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
