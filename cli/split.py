"""`ieflow split`: labelled documents -> splits.parquet (the `split` flow; wired into `ieflow_cli.main`).

Unset options take `SplitParams`' defaults (see `ieflow_cli.params`).
"""

from __future__ import annotations

import json

import typer


def split_command(
    labels_path: str = typer.Argument(
        ..., help="Labels (.jsonl or .csv of doc_id + gold record) or a dataset folder."
    ),
    output_dir: str = typer.Option(..., help="Folder (or fsspec URL) for splits.parquet."),
    schema_path: str = typer.Option(None, help="Record JSON Schema; default: schema.json beside the labels."),
    documents_path: str = typer.Option(None, help="documents.parquet from ingest (doc_id, sha256)."),
    seed: int = typer.Option(None, help="Changes every hash-based assignment."),
    train: float = typer.Option(None, help="Share of train."),
    val: float = typer.Option(None, help="Share of val."),
    test: float = typer.Option(None, help="Share of test."),
    stratify_by: str = typer.Option(None, help="A record field or documents column to balance splits on."),
    respect_existing: bool = typer.Option(
        None,
        "--respect-existing/--ignore-existing",
        help="Keep a split given in the labels (default: keep it).",
    ),
    keep_previous: bool = typer.Option(
        None,
        "--keep-previous/--reassign",
        help="Keep assignments of an existing splits.parquet (default: keep it).",
    ),
) -> None:
    """Assign labelled documents to train/val/test (the `split` flow); prints the summary."""
    from ieflow_cli.params import flow_params
    from ieflow_flows import split as split_flow

    params = flow_params(split_flow.SplitParams, locals())
    typer.echo(json.dumps(split_flow.split(params), indent=2, default=str))
