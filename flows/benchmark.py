"""The `benchmark` flow: optimizers on a real dataset at equal budget, from the Prefect UI.

A thin wrapper over `benchmarks/optimizers.py` (its `run` and `report` do the work, checkpointed and
resumable in benchmarks/results/<dataset>/): one task per optimizer so the UI shows which one is running,
a progress artifact, and the results table as artifacts. Datasets are named as in
`benchmarks/optimizers.py`, which reads them from the datasets folder beside the repository.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from ieflow_flows.optimize import OptimizerName

ROOT = Path(__file__).resolve().parent.parent


def bench_module() -> Any:
    """benchmarks/optimizers.py (a script folder, not an installed package: import it by path)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("benchmarks.optimizers")


class BenchmarkParams(BaseModel):
    dataset: str = Field("sroie", description="A dataset in ../shared/datasets (sroie, deepform_adbuy, ...).")
    optimizers: list[OptimizerName] = Field(
        default_factory=lambda: ["gepa"], description="Optimizers to compare, each at the same budget."
    )
    budget: int | None = Field(
        None, ge=1, description="Metric calls per optimizer (default: the dataset's usual budget)."
    )
    n_train: int = Field(60, ge=1, description="Training examples.")
    n_val: int = Field(20, ge=1, description="Validation examples.")
    n_test: int = Field(40, ge=1, description="Held-out test examples.")
    max_input_tokens: int = Field(1500, ge=200, description="Long-document budget of the seed program.")
    write_report: bool = Field(True, description="Rewrite docs/benchmarks.md from all finished runs.")


@task(name="benchmark-optimizer", cache_policy=NO_CACHE, task_run_name="{optimizer} on {dataset}")
def run_one(
    dataset: str, optimizer: str, budget: int, sizes: tuple[int, int, int], max_input_tokens: int
) -> None:
    bench_module().run(dataset, [optimizer], budget, sizes, max_input_tokens)


@flow(name="benchmark", log_prints=True)
def benchmark(params: BenchmarkParams = BenchmarkParams()) -> dict[str, Any]:
    """Run each optimizer (resuming finished work), then publish the comparison."""
    logger = get_run_logger()
    bench = bench_module()
    if not (bench.DATASETS / params.dataset).is_dir():
        known = sorted(p.name for p in bench.DATASETS.glob("*") if p.is_dir())
        raise ValueError(f"no dataset {params.dataset!r} in {bench.DATASETS} (have: {', '.join(known)})")
    budget = params.budget or bench.DEFAULT_BUDGET.get(params.dataset, 150)
    sizes = (params.n_train, params.n_val, params.n_test)
    progress = create_progress_artifact(0.0, key="benchmark-progress", description="optimizers finished")
    for done, name in enumerate(params.optimizers, start=1):
        run_one(params.dataset, name, budget, sizes, params.max_input_tokens)
        update_progress_artifact(progress, 100.0 * done / len(params.optimizers))
    summary = json.loads((bench.OUT / params.dataset / "summary.json").read_text())
    rows = [_row("baseline", summary["baseline"], None)]
    rows += [_row(name, row["test"], row) for name, row in summary.get("optimizers", {}).items()]
    create_table_artifact(rows, key="benchmark-results", description=f"{params.dataset}: test scores")
    report = bench.report()
    if params.write_report:
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / "benchmarks.md").write_text(report + "\n")
    create_markdown_artifact(report, key="benchmark-report", description="all finished benchmark runs")
    logger.info("benchmark %s: %s", params.dataset, {r["program"]: r["test score"] for r in rows})
    return summary


def _row(name: str, test: dict[str, Any], run: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "program": name,
        "test score": round(test["score"], 3),
        "macro field F1": round(test["macro_f1"], 3),
        "prompt tokens/doc": round(test["prompt_tokens"]),
        "metric calls": run["metric_calls"] if run else "-",
        "minutes": round(run["optimization_wall_s"] / 60, 1) if run else "-",
    }


if __name__ == "__main__":
    given = BenchmarkParams.model_validate_json(sys.argv[1] if len(sys.argv) > 1 else "{}")
    print(json.dumps(benchmark(given), indent=2))
