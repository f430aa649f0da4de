"""`ieflow review export|import`: the review queue's file round trip, for people outside the Prefect UI.

`export` writes the drafts of a review.jsonl (written by the `label` flow) to CSV or JSONL; a person
corrects values and sets `accept` to yes; `import` appends those rows to labels.jsonl as `human`
labels. Rows that cannot be used are printed as warnings and stay in the file with their reason.
"""

from __future__ import annotations

from pathlib import Path

import typer

review_app = typer.Typer(
    help="Review teacher drafts in a file: export, correct, import.", no_args_is_help=True
)


@review_app.command("export")
def export_command(
    queue: Path = typer.Argument(..., help="review.jsonl written by the label flow."),
    schema: Path = typer.Option(..., help="Record JSON Schema."),
    out: Path = typer.Option(..., help="The file to write for a person: .csv or .jsonl."),
) -> None:
    """Write the drafts that need a person to a CSV (one column per field) or JSONL file."""
    from ieflow.labelfree.review_queue import export_review, read_review_queue
    from ieflow.schema import load_schema

    loaded = load_schema(schema)
    if not queue.is_file():
        raise FileNotFoundError(f"review queue not found: {queue}")
    drafts, errors = read_review_queue(queue)
    for error in errors:
        typer.echo(f"warning: {queue} {error}; not exported (it stays in the queue)", err=True)
    export_review(drafts, loaded, out)
    typer.echo(
        f"exported {len(drafts)} drafts to {out}; set accept to yes on the rows you checked, then run "
        f"`ieflow review import {out} --schema {schema} --labels LABELS --queue {queue}`"
    )


@review_app.command("import")
def import_command(
    edited: Path = typer.Argument(..., help="The exported file, corrected by a person."),
    schema: Path = typer.Option(..., help="Record JSON Schema."),
    labels: Path = typer.Option(..., help="labels.jsonl to append the human rows to."),
    queue: Path = typer.Option(None, help="review.jsonl: imported documents leave it."),
) -> None:
    """Append accepted, schema-valid rows to the labels as `human` rows; the rest stay in the file."""
    from ieflow.labelfree.review_queue import import_review
    from ieflow.schema import load_schema

    loaded = load_schema(schema)
    if not edited.is_file():
        raise FileNotFoundError(f"review file not found: {edited}")
    result = import_review(edited, loaded, labels, queue)
    for error in result.errors:
        typer.echo(f"warning: {edited} {error}; kept in the file", err=True)
    typer.echo(
        f"imported {len(result.added)} human labels into {labels}; {result.remaining} rows left in "
        f"{edited} ({len(result.errors)} with an error, {result.not_accepted} not accepted yet)"
    )
