"""The `optimize` flow: baseline on val and test, the optimizer, then the best program on test.

Reads top to bottom as the pipeline: load the labelled splits, build (or load) the seed program,
score the baseline, optimize (each evaluation a task run), score the winner on test, write the
program JSON, the report and the Pareto plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from pydantic import BaseModel, Field

from ieflow import config
from ieflow.lm import LMClient
from ieflow.optimize import Budget, make_optimizer
from ieflow.optimize.split_scoring import load_split_examples
from ieflow.preflight import preflight
from ieflow.program import ExtractionProgram
from ieflow.report import optimization_markdown, pareto_plot
from ieflow.secrets import resolve_api_key
from ieflow_tasks.optimize import evaluate_as_task, score_program

OptimizerName = Literal["gepa", "mipro", "simba", "bootstrap", "opro", "ape"]


class OptimizeParams(BaseModel):
    """What to optimize, with what, and how much to spend. The CLI uses the same model."""

    dataset: str = Field(
        "data/receipts", description="Labelled folder: schema.json, labels.jsonl, documents/."
    )
    splits_path: str | None = Field(
        None, description="splits.parquet from the split flow (default: hash split)."
    )
    program: str | None = Field(
        None, description="Program JSON to start from (default: built from the schema)."
    )
    instruction: str = Field(
        "Extract the fields as JSON.", description="Seed instruction when no program is given."
    )
    optimizer: OptimizerName = Field("gepa", description="Which optimizer to run.")
    max_metric_calls: int = Field(150, ge=1, description="Budget: examples evaluated by the optimizer.")
    max_wall_minutes: float | None = Field(None, gt=0, description="Budget: wall time.")
    patience: int | None = Field(None, ge=1, description="Stop after this many steps without a new best.")
    student_model: str = Field(
        config.DEFAULT_STUDENT_MODEL, description="litellm name of the extraction model."
    )
    reflection_model: str = Field(
        config.DEFAULT_REFLECTION_MODEL, description="litellm name of the proposal model."
    )
    api_base: str | None = Field(None, description="Base URL of an OpenAI-compatible server (student).")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (never the key itself)."
    )
    api_key_secret: str | None = Field(
        None, description="Name of a Prefect Secret block holding the API key (instead of api_key_env)."
    )
    max_train: int | None = Field(None, ge=1, description="Use at most this many training examples.")
    max_val: int | None = Field(20, ge=1, description="Use at most this many validation examples.")
    max_test: int | None = Field(None, ge=1, description="Use at most this many test examples.")
    output_dir: str = Field(
        "runs/optimize", description="Run folder: checkpoint, ledger, program.json, report."
    )
    seed: int = Field(0, description="Seeds the optimizer and the hash split.")


def model_clients(params: OptimizeParams) -> tuple[LMClient | None, str | LMClient]:
    """The student client (None: the default client) and the reflection model. A key given by
    name (variable or Secret block) serves the student, and the reflection model too when it is
    served by the same provider; the key is read here and lives only in these clients."""
    key = resolve_api_key(params.api_key_env, params.api_key_secret)
    if key is None and params.api_base is None:
        return None, params.reflection_model
    student = LMClient(params.student_model, api_base=params.api_base, api_key=key)
    same_provider = params.reflection_model.split("/")[0] == params.student_model.split("/")[0]
    if not same_provider:
        return student, params.reflection_model
    reflection = LMClient(
        params.reflection_model, params={"max_tokens": 200}, api_base=params.api_base, api_key=key
    )
    return student, reflection


@flow(name="optimize", log_prints=True)
def optimize(params: OptimizeParams = OptimizeParams()) -> dict:
    logger = get_run_logger()
    out = Path(params.output_dir)
    # Bad schema, labels, model names or missing keys fail here in one line, before any work.
    dataset = Path(params.dataset)
    preflight(
        params.student_model,
        params.api_base,
        params.api_key_env,
        dataset / "schema.json",
        dataset / "labels.jsonl",
        api_key_secret=params.api_key_secret,
    )
    preflight(params.reflection_model)
    student, reflection = model_clients(params)
    schema, splits = load_split_examples(
        params.dataset,
        splits_path=params.splits_path,
        seed=params.seed,
        limits={"train": params.max_train, "val": params.max_val, "test": params.max_test},
    )
    logger.info("examples: %s", {name: len(rows) for name, rows in splits.items()})

    if params.program:
        seed_program = ExtractionProgram.load(params.program)
    else:
        seed_program = ExtractionProgram.from_schema(
            schema, model=params.student_model, instruction=params.instruction
        )
    ledger = str(out / "test_evaluations.jsonl")
    baseline_val = score_program(
        seed_program,
        splits["val"],
        str(out / "val_evaluations.jsonl"),
        "baseline",
        len(splits["val"]),
        student,
    )
    baseline_test = score_program(
        seed_program, splits["test"], ledger, "baseline", len(splits["test"]), student
    )
    logger.info("baseline: val %.3f, test %.3f", baseline_val["score"], baseline_test["score"])

    budget = Budget(
        max_metric_calls=params.max_metric_calls,
        max_wall_s=params.max_wall_minutes * 60 if params.max_wall_minutes else None,
        patience=params.patience,
    )
    progress = create_progress_artifact(0.0, key="optimize-progress", description="metric calls used")

    def on_event(event: dict) -> None:
        update_progress_artifact(
            progress, min(100.0, 100.0 * event["metric_calls"] / params.max_metric_calls)
        )

    optimizer = make_optimizer(
        params.optimizer,
        run_dir=out / params.optimizer,
        seed=params.seed,
        reflection_model=reflection,
        student_client=student,
        on_event=on_event,
        evaluate_hook=evaluate_as_task,
    )
    result = optimizer.compile(seed_program, splits["train"], splits["val"], budget)
    update_progress_artifact(progress, 100.0)

    best = result.best_program
    optimized_test = score_program(best, splits["test"], ledger, "optimized", len(splits["test"]), student)
    best.metadata["test_score"] = optimized_test["score"]
    best.metadata["baseline_test_score"] = baseline_test["score"]
    best.save(out / "program.json")
    plot = pareto_plot(result, out / "pareto.png")
    report = optimization_markdown(result, baseline_test, optimized_test, str(plot))
    (out / "report.md").write_text(report)
    create_markdown_artifact(report, key="optimization-report", description="baseline vs optimized on test")
    logger.info(
        "test %.3f -> %.3f; program written to %s",
        baseline_test["score"],
        optimized_test["score"],
        out / "program.json",
    )
    return {
        "program": str(out / "program.json"),
        "program_hash": best.hash,
        "baseline_test": baseline_test["score"],
        "optimized_test": optimized_test["score"],
        "metric_calls": result.usage["metric_calls"],
        "stop_reason": result.stop_reason,
    }


if __name__ == "__main__":
    optimize()
