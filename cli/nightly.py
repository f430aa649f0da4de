"""`ieflow nightly`: re-optimize registered programs on new labels, promote only winners (the
`nightly` flow; wired into `ieflow_cli.main`).

Unset options take `NightlyParams`' defaults (see `ieflow_cli.params`). Per-program folders are
`NAME=PATH` options, given once per program.
"""

from __future__ import annotations

import json

import typer

# Options whose name differs from the NightlyParams field they fill.
RENAMED = {"program": "programs", "dataset": "datasets", "splits": "splits_paths"}


def nightly_command(
    registry: str = typer.Option(None, help="Program registry: a folder or fsspec URL."),
    program: list[str] = typer.Option(None, help="A registered program to review (repeat; default: all)."),
    dataset: list[str] = typer.Option(
        None, help="NAME=PATH: labelled folder of a program (repeat; default: its registered dataset)."
    ),
    splits: list[str] = typer.Option(
        None, help="NAME=PATH: splits.parquet of a program (repeat; default: hash split)."
    ),
    min_new_labels: int = typer.Option(None, help="Re-optimize only after this many new labels."),
    margin: float = typer.Option(None, help="How much the challenger must win by."),
    max_cost_increase: float = typer.Option(None, help="Largest serving-cost growth allowed."),
    optimizer: str = typer.Option(
        None,
        help="gepa (default), mipro, simba, bootstrap, opro, ape, textgrad, "
        "evoprompt (GA), evoprompt-de (DE), promptbreeder, promptagent or spo (no labels: with --judge).",
    ),
    max_metric_calls: int = typer.Option(None, help="Optimizer budget per program."),
    max_wall_minutes: float = typer.Option(None, help="Optimizer wall-time budget per program."),
    reflection_model: str = typer.Option(None, help="litellm name of the proposal model."),
    judge_model: str = typer.Option(
        None, "--judge", help="litellm name of a judge model (SPO's judge; scores a folder with no labels)."
    ),
    max_val: int = typer.Option(None, help="Use at most this many validation examples."),
    max_test: int = typer.Option(None, help="Use at most this many held-out examples."),
    work_dir: str = typer.Option(None, help="Folder for optimizer runs and ledgers."),
    seed: int = typer.Option(None, help="Seeds the optimizer and the hash split."),
    force: bool = typer.Option(None, "--force/--no-force", help="Re-optimize even without new labels."),
) -> None:
    """Review every registered program (the `nightly` flow); prints {program: outcome}."""
    from ieflow_cli.params import flow_params, named_paths
    from ieflow_flows import nightly as nightly_flow

    options = locals() | {
        "program": program or None,
        "dataset": named_paths("--dataset", dataset),
        "splits": named_paths("--splits", splits),
    }
    params = flow_params(nightly_flow.NightlyParams, {RENAMED.get(k, k): v for k, v in options.items()})
    typer.echo(json.dumps(nightly_flow.nightly(params), indent=2, default=str))
