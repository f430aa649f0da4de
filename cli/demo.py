"""The main job on the embedded defaults, as one function the `ieflow demo` command calls:
the whole pipeline (ingest, split, optimize, extract) on the sample documents in `data/`."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table


def run_demo(**overrides: object) -> dict:
    """Run the pipeline flow; unset options keep PipelineParams' defaults (one source of defaults)."""
    from ieflow_flows.pipeline import PipelineParams, pipeline

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
    table.add_row(
        "split", ", ".join(f"{k} {v}" for k, v in sorted(summary["split"].get("splits", {}).items()))
    )
    table.add_row(
        "optimize",
        f"test score {optimized['baseline_test']:.3f} -> {optimized['optimized_test']:.3f} "
        f"({optimized['metric_calls']} metric calls; {optimized['stop_reason']})",
    )
    extracted = summary["extract"]
    table.add_row(
        "extract",
        f"{extracted.get('n_records', 0)} records, {extracted.get('n_quarantined', 0)} quarantined, "
        f"{extracted.get('prompt_tokens', 0)} prompt tokens, {extracted.get('wall_s', 0):.0f} s "
        f"({extracted.get('status', '?')})",
    )
    console.print(table)
    console.print(f"program: {optimized['program']}")
    console.print(f"report:  {out / 'optimize' / 'report.md'}")
    console.print(f"records: {out / 'extract' / 'records'}   data docs: {extracted.get('data_docs', '-')}")

    records = sorted((out / "extract").glob("records/**/*.parquet"))
    if records:
        import polars as pl

        first = pl.read_parquet(records[0]).head(1).to_dicts()[0]
        console.print("first record:")
        print(json.dumps(first, indent=2, ensure_ascii=False, default=str))
    return summary
