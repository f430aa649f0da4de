"""The main job on the embedded defaults, as one function the `ieflow demo` command calls:
the whole pipeline (ingest, split, optimize, extract) on the sample documents in `data/`."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table


def run_demo(**overrides: object) -> dict:
    """Run the pipeline flow; unset options keep PipelineParams' defaults (one source of defaults)."""
    from flows.pipeline import PipelineParams, pipeline

    params = PipelineParams(**{k: v for k, v in overrides.items() if v is not None})
    out = Path(params.output_dir)
    console = Console()
    console.print(f"[bold]ieflow demo[/]: {params.data} -> {out} (local models; the first call loads them)")
    summary = pipeline(params)

    optimized = summary["optimize"]
    table = Table(title="ieflow demo")
    table.add_column("stage")
    table.add_column("result")
    table.add_row("ingest", json.dumps(summary["ingest"].get("status_counts", {})))
    table.add_row("split", json.dumps(summary["split"].get("counts", summary["split"].get("sizes", {}))))
    table.add_row(
        "optimize",
        f"test score {optimized['baseline_test']:.3f} -> {optimized['optimized_test']:.3f} "
        f"({optimized['metric_calls']} metric calls; {optimized['stop_reason']})",
    )
    extracted = summary["extract"]
    table.add_row(
        "extract", json.dumps({k: v for k, v in extracted.items() if isinstance(v, int | float | str)})
    )
    console.print(table)
    console.print(f"program: {optimized['program']}   report: {out / 'optimize' / 'report.md'}")

    records = sorted((out / "extract").glob("records/**/*.parquet"))
    if records:
        import polars as pl

        first = pl.read_parquet(records[0]).head(1).to_dicts()[0]
        console.print("first record:")
        print(json.dumps(first, indent=2, ensure_ascii=False, default=str))
    return summary
