"""Ingest throughput: the `ingest` flow against a plain single-process pypdf loop, same files, same run.

    python benchmarks/ingest.py                       # every PDF of the benchmark datasets (DATASETS)
    python benchmarks/ingest.py --workers 2 --plain   # also time the Prefect-free pipeline

Measures pages per second of (a) `for page in PdfReader(f).pages: page.extract_text()` over every
PDF, in this process, run once before and once after (b) the `ingest` flow with `--workers` parser
processes and a cold parse cache (layout-mode text, OCR of scans, chunking, Parquet writing and
Prefect bookkeeping included), and prints the ratio of (b) to (a). The machine may be shared:
the script also prints CPU seconds per page of both, which do not depend on load, and the speed-up
they imply on idle cores. Peak memory is the summed RSS of this process and its parser workers,
sampled every 50 ms (the Prefect server, a separate service, is reported on its own). The server
starts before the clock does; its start-up time is printed separately. Results also go to
runs/bench-ingest/result.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATASETS = ROOT.parent / "shared" / "datasets"

import ieflow  # noqa: E402,F401  (offline env defaults)


class MemorySampler(threading.Thread):
    """Peak summed RSS of this process + its parser workers, and of other children (the server)."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process, self.interval = psutil.Process(), interval
        self.peak_ours = self.peak_other = 0
        self._stop_event = threading.Event()
        self._is_worker: dict[int, bool] = {}

    def run(self) -> None:
        import psutil

        while not self._stop_event.is_set():
            ours, other = self.process.memory_info().rss, 0
            for child in self.process.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                    if child.pid not in self._is_worker:
                        self._is_worker[child.pid] = "multiprocessing" in " ".join(child.cmdline())
                except psutil.Error:
                    continue
                if self._is_worker[child.pid]:
                    ours += rss
                else:
                    other += rss
            self.peak_ours, self.peak_other = max(self.peak_ours, ours), max(self.peak_other, other)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def cpu_seconds() -> tuple[float, float]:
    """(CPU of this process + its finished children, i.e. parser workers; CPU of live children,
    i.e. the Prefect server)."""
    import psutil

    own, waited = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    live = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            live += times.user + times.system
        except psutil.Error:
            continue
    return own.ru_utime + own.ru_stime + waited.ru_utime + waited.ru_stime, live


def baseline(files: list[str]) -> tuple[int, float]:
    """Pages and seconds of a plain single-process `extract_text()` loop."""
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # same silence as the flow's parser
    pages, started = 0, time.perf_counter()
    for path in files:
        try:
            for page in PdfReader(path).pages:
                page.extract_text()
                pages += 1
        except Exception as exc:
            print(f"  baseline: {path}: {type(exc).__name__}: {exc}")
    return pages, time.perf_counter() - started


def run_flow(source: str, out: str, cache: str, workers: int) -> tuple[dict[str, Any], float]:
    from ieflow_flows.ingest import IngestParams, ingest

    params = IngestParams(source=source, out=out, workers=workers, cache_dir=cache)
    started = time.perf_counter()
    summary = ingest(params)
    return summary, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=str(DATASETS), help="Folder searched for *.pdf.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plain", action="store_true", help="Also time ieflow.ingest.run_ingest.")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-ingest"))
    args = parser.parse_args()

    source = f"{args.datasets.rstrip('/')}/**/*.pdf"
    files = sorted(glob.glob(source, recursive=True))
    if not files:
        sys.exit(f"no PDFs under {args.datasets}")
    work = Path(tempfile.mkdtemp(prefix="ieflow-bench-"))
    # A private Prefect home: the benchmark neither reads nor pollutes the user's database.
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect-home"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # The temporary server logs cancelled event flushes as errors when this process exits.
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
    print(
        f"{len(files)} PDFs, {sum(os.path.getsize(f) for f in files) / 1e6:.1f} MB; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    for path in files:  # warm the OS file cache so neither contender pays the first read
        Path(path).read_bytes()

    started = time.perf_counter()
    from prefect import flow

    flow(name="warm-up")(lambda: None)()  # starts the temporary Prefect server
    server_s = time.perf_counter() - started
    print(f"Prefect import + temporary server start: {server_s:.1f} s (not in the timings below)")

    # The baseline runs before and after the flow and counts both, so a change in the machine's
    # load during the run (it is shared) biases neither side.
    cpu0 = cpu_seconds()[0]
    base_pages, base_s = baseline(files)
    print(f"baseline 1: {base_pages} pages in {base_s:.1f} s = {base_pages / base_s:.1f} pages/s")
    base_cpu = cpu_seconds()[0] - cpu0

    sampler = MemorySampler()
    sampler.start()
    before = cpu_seconds()
    summary, flow_s = run_flow(source, str(work / "out"), str(work / "cache"), args.workers)
    after = cpu_seconds()
    sampler.stop()
    flow_pages = summary["n_pages"]
    print(
        f"flow      : {flow_pages} pages in {flow_s:.1f} s = {flow_pages / flow_s:.1f} pages/s "
        f"({args.workers} workers; status {summary['status_counts']}, {summary['n_chunks']} chunks)"
    )
    cpu0 = cpu_seconds()[0]
    pages_2, base_s_2 = baseline(files)
    base_cpu += cpu_seconds()[0] - cpu0
    print(f"baseline 2: {pages_2} pages in {base_s_2:.1f} s = {pages_2 / base_s_2:.1f} pages/s")
    base_pages, base_s = base_pages + pages_2, base_s + base_s_2
    ratio = (flow_pages / flow_s) / (base_pages / base_s)
    flow_cpu = (after[0] - before[0]) + (after[1] - before[1])
    # CPU seconds per page do not depend on how busy the machine is; with the flow's CPU spread
    # over `workers` cores (what an idle machine gives), its speed-up would be about this.
    idle_estimate = args.workers * (base_cpu / base_pages) / (flow_cpu / flow_pages)
    print(
        f"ratio     : {ratio:.2f}x the baseline's pages/s (target >= 1.3x); "
        f"load average now {os.getloadavg()[0]:.1f}"
    )
    print(
        f"CPU/page  : baseline {1000 * base_cpu / base_pages:.0f} ms, flow "
        f"{1000 * flow_cpu / flow_pages:.0f} ms (workers + flow process + Prefect server) -> "
        f"{idle_estimate:.2f}x on {args.workers} idle cores"
    )
    print(
        f"peak RSS  : {sampler.peak_ours / 2**20:.0f} MiB flow process + parser workers "
        f"(target < 1024); Prefect server {sampler.peak_other / 2**20:.0f} MiB"
    )
    _, cached_s = run_flow(source, str(work / "out"), str(work / "cache"), args.workers)
    print(f"re-run    : {cached_s:.1f} s with every document from the task cache")
    result = {
        "files": len(files),
        "baseline_pages_both_runs": base_pages,
        "baseline_s_both_runs": round(base_s, 2),
        "flow_pages": flow_pages,
        "flow_s": round(flow_s, 2),
        "ratio": round(ratio, 3),
        "baseline_cpu_ms_per_page": round(1000 * base_cpu / base_pages, 1),
        "flow_cpu_ms_per_page": round(1000 * flow_cpu / flow_pages, 1),
        "idle_cores_estimate": round(idle_estimate, 3),
        "workers": args.workers,
        "peak_rss_mib": round(sampler.peak_ours / 2**20),
        "server_rss_mib": round(sampler.peak_other / 2**20),
        "cached_rerun_s": round(cached_s, 2),
        "server_start_s": round(server_s, 1),
        "status_counts": summary["status_counts"],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if args.plain:
        from ieflow.ingest import run_ingest

        plain = run_ingest(source, str(work / "plain"), workers=args.workers, reuse_previous=False)
        result["plain_s"], result["plain_ratio"] = (
            plain.seconds,
            round((plain.n_pages / plain.seconds) / (base_pages / base_s), 3),
        )
        print(
            f"plain     : {plain.n_pages} pages in {plain.seconds:.1f} s = "
            f"{result['plain_ratio']:.2f}x the baseline (no Prefect)"
        )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    for name in ("out", "cache", "plain"):  # ~3x the corpus; the server's small home stays
        shutil.rmtree(work / name, ignore_errors=True)


if __name__ == "__main__":
    main()
