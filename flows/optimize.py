"""The `optimize` flow: baseline on val and test, the optimizer, then the best program on test.

Reads top to bottom as the pipeline: load the labelled splits, build (or load) the seed program,
score the baseline, optimize (each evaluation a task run), score the winner on test, write the
program JSON, the report and the Pareto plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from pydantic import BaseModel, Field

from ieflow import config
from ieflow.datasets import Example
from ieflow.errors import ConfigError
from ieflow.labelfree.judge import JudgeConfig, JudgeScorer
from ieflow.labelfree.sources import ScoringChoice, has_labels, report_examples, unlabelled_splits
from ieflow.lm import LMClient
from ieflow.optimize import Budget, make_optimizer, tracking
from ieflow.optimize.base import OptimizationResult
from ieflow.optimize.split_scoring import load_split_examples
from ieflow.optimize.tracking import log_outputs
from ieflow.program import ExtractionProgram
from ieflow.report import write_optimization_outputs
from ieflow.scoring.silver import label_source_name
from ieflow_tasks.optimize import evaluate_as_task, score_program
from ieflow_tasks.secrets import preflight, resolve_api_key

OptimizerName = Literal[
    "gepa",
    "mipro",
    "simba",
    "bootstrap",
    "opro",
    "ape",
    "textgrad",
    "evoprompt",
    "evoprompt-de",
    "promptbreeder",
    "promptagent",
    "spo",
]


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
    max_metric_calls: int = Field(
        150,
        ge=1,
        description="Budget: examples evaluated by the optimizer; a step started within it finishes "
        "its minibatch, so a run may spend up to one minibatch more.",
    )
    max_wall_minutes: float | None = Field(None, gt=0, description="Budget: wall time.")
    patience: int | None = Field(None, ge=1, description="Stop after this many steps without a new best.")
    student_model: str = Field(
        config.DEFAULT_STUDENT_MODEL, description="litellm name of the extraction model."
    )
    reflection_model: str = Field(
        config.DEFAULT_REFLECTION_MODEL, description="litellm name of the proposal model."
    )
    judge_model: str | None = Field(
        None,
        description="litellm name of a judge model: scores with it when the folder has no labels, "
        "and is SPO's pairwise judge (default: the reflection model).",
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
    mlflow_tracking_uri: str | None = Field(
        None,
        description="Log the run to MLflow at this URI (default: MLFLOW_TRACKING_URI; unset: off). "
        "Needs the `mlflow` extra.",
    )


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
    check_config(params)  # bad schema, labels, model names or missing keys fail here, before any work
    student, reflection = model_clients(params)
    schema, splits, judge = load_examples(params)
    logger.info("examples: %s", {name: len(rows) for name, rows in splits.items()})
    seed_program = load_seed_program(params, schema)
    test, reported_on = report_examples(splits["test"], params.judge_model)
    choice = ScoringChoice(
        judge.label if judge else label_source_name(splits["train"] + splits["val"]), reported_on
    )
    logger.info("labels: %s", choice.line())
    ledger = str(out / "test_evaluations.jsonl")
    baseline_val = _score(
        seed_program, splits["val"], str(out / "val_evaluations.jsonl"), "baseline", student, judge
    )
    baseline_test = _score(seed_program, test, ledger, "baseline", student, judge)
    logger.info("baseline: val %.3f, test %.3f", baseline_val["score"], baseline_test["score"])
    result = run_optimizer(params, seed_program, splits, reflection, student, judge)
    optimized_test = _score(result.best_program, test, ledger, "optimized", student, judge)
    report = write_optimization_outputs(out, result, baseline_test, optimized_test, choice)
    log_outputs(
        out / params.optimizer,
        [out / "report.md", out / "pareto.png", out / "program.json"],
        {"test": optimized_test, "baseline_test": baseline_test},
        uri=params.mlflow_tracking_uri,
    )
    create_markdown_artifact(report, key="optimization-report", description="baseline vs optimized on test")
    logger.info(
        "test %.3f -> %.3f; program written to %s",
        baseline_test["score"],
        optimized_test["score"],
        out / "program.json",
    )
    return {
        "program": str(out / "program.json"),
        "program_hash": result.best_program.hash,
        "baseline_test": baseline_test["score"],
        "optimized_test": optimized_test["score"],
        "metric_calls": result.usage["metric_calls"],
        "stop_reason": result.stop_reason,
    }


def check_config(params: OptimizeParams) -> None:
    """Preflight the models, the schema and the labels (one clear line on the first problem). A
    folder with no labels needs a judge to score with."""
    dataset = Path(params.dataset)
    labelled = has_labels(dataset)
    if not labelled and params.judge_model is None:
        raise ConfigError(
            f"{dataset} has no labels: give a judge model to score with (--judge MODEL), "
            "or label documents first (ieflow label)"
        )
    preflight(
        params.student_model,
        params.api_base,
        params.api_key_env,
        dataset / "schema.json",
        dataset / "labels.jsonl" if labelled else None,
        api_key_secret=params.api_key_secret,
    )
    preflight(params.reflection_model)
    if params.judge_model is not None:
        preflight(params.judge_model)
    tracking.check(params.mlflow_tracking_uri)


def load_examples(
    params: OptimizeParams,
) -> tuple[dict[str, Any], dict[str, list[Example]], JudgeScorer | None]:
    """(schema, splits, the judge scorer or None): the labelled splits (gold and silver), or, in a
    folder with no labels, its documents with empty records and the judge to score them."""
    limits = split_limits(params)
    if has_labels(params.dataset):
        schema, splits = load_split_examples(
            params.dataset, splits_path=params.splits_path, seed=params.seed, limits=limits
        )
        return schema, splits, None
    schema, splits = unlabelled_splits(params.dataset, seed=params.seed, limits=limits)
    return schema, splits, JudgeScorer(schema, JudgeConfig(model=str(params.judge_model)))


def split_limits(params: OptimizeParams) -> dict[str, int | None]:
    return {"train": params.max_train, "val": params.max_val, "test": params.max_test}


def load_seed_program(params: OptimizeParams, schema: dict[str, Any]) -> ExtractionProgram:
    """The program given, or one built from the schema with the seed instruction."""
    if params.program:
        return ExtractionProgram.load(params.program)
    return ExtractionProgram.from_schema(schema, model=params.student_model, instruction=params.instruction)


def run_optimizer(
    params: OptimizeParams,
    seed_program: ExtractionProgram,
    splits: dict[str, list[Example]],
    reflection: str | LMClient,
    student: LMClient | None,
    judge: JudgeScorer | None = None,
) -> OptimizationResult:
    """The optimizer on train/val within the budget, each evaluation a task run; a progress
    artifact follows the metric calls spent."""
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

    # SPO's pairwise judge is the judge model when one is given (else the reflection model).
    spo_judge = (
        {"judge_model": params.judge_model} if params.optimizer == "spo" and params.judge_model else {}
    )
    optimizer = make_optimizer(
        params.optimizer,
        run_dir=Path(params.output_dir) / params.optimizer,
        seed=params.seed,
        reflection_model=reflection,
        student_client=student,
        on_event=on_event,
        evaluate_hook=evaluate_as_task,
        scorer=judge,
        **spo_judge,
        tracking_uri=params.mlflow_tracking_uri,
    )
    result = optimizer.compile(seed_program, splits["train"], splits["val"], budget)
    update_progress_artifact(progress, 100.0)
    return result


def _score(
    program: ExtractionProgram,
    examples: list[Example],
    ledger: str,
    label: str,
    client: LMClient | None,
    judge: JudgeScorer | None,
) -> dict[str, Any]:
    return score_program(program, examples, ledger, label, len(examples), client, judge)


if __name__ == "__main__":
    optimize()
