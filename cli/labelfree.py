"""`ieflow schema suggest` and `ieflow label`: the label-free path's commands without a person.

Both call the core (`ieflow.labelfree`) directly: they read a sample of documents, ask a model and
write files. The Prefect flows (`suggest_schema`, `label`) wrap the same functions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ieflow import config

if TYPE_CHECKING:  # imported inside the commands, so `ieflow --help` stays fast
    from ieflow.datasets import Example
    from ieflow.lm import LMClient

schema_app = typer.Typer(help="Suggest and check record schemas.", no_args_is_help=True)


def _client(model: str, api_base: str | None, api_key_env: str | None) -> LMClient:
    from ieflow.lm import LMClient

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            typer.echo(f"error: the environment variable {api_key_env} is not set", err=True)
            raise typer.Exit(2)
    return LMClient(model, api_base=api_base, api_key=api_key)


def _documents(documents: str, sample: int | None) -> list[Example]:
    from ieflow.labelfree.documents import load_documents

    if sample is not None and sample < 1:
        typer.echo("error: --sample must be at least 1", err=True)
        raise typer.Exit(2)
    loaded = load_documents(documents, sample)  # NoDocumentsError: one error line, exit 2
    for skipped in loaded.skipped:
        typer.echo(f"skipped {skipped.source}: {skipped.reason}", err=True)
    return loaded.examples


@schema_app.command("suggest")
def suggest_command(
    documents: str = typer.Argument(..., help="A folder of documents, or documents.parquet from ingest."),
    out: Path = typer.Option(..., help="Where to write the suggested JSON Schema."),
    sample: int = typer.Option(5, help="Documents the model reads."),
    model: str = typer.Option(None, help="litellm model name; default: the local reflection model."),
    fields: str = typer.Option(None, help='Fields you expect, comma-separated: "total, date".'),
    min_support: int = typer.Option(None, help="Documents that must propose a field (default 2)."),
    api_base: str = typer.Option(None, help="Base URL of an OpenAI-compatible server."),
    api_key_env: str = typer.Option(None, help="Name of the environment variable holding the API key."),
) -> None:
    """A model reads a sample of the documents and proposes a record JSON Schema to edit."""
    from ieflow.labelfree.suggest import SuggestConfig, SuggestionError, suggest_schema, write_suggestion

    examples = _documents(documents, sample)
    hints = tuple(h.strip() for h in (fields or "").split(",") if h.strip())
    cfg = SuggestConfig(model=model or config.reflection_model(), hints=hints, min_support=min_support)
    try:
        suggestion = suggest_schema(examples, cfg, _client(cfg.model, api_base, api_key_env))
    except SuggestionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    write_suggestion(suggestion, out)
    for failure in suggestion.failures:
        typer.echo(f"no fields from {failure.doc_id}: {failure.reason}", err=True)
    support = ", ".join(f"{f.name} ({f.support}/{suggestion.documents})" for f in suggestion.fields)
    typer.echo(f"{len(suggestion.fields)} fields suggested from {suggestion.documents} documents: {support}")
    typer.echo(f"schema written to {out}; edit it, then pass it as --schema")


def label_command(
    documents: str = typer.Argument(..., help="A folder of documents, or documents.parquet from ingest."),
    schema: Path = typer.Option(..., help="The record JSON Schema."),
    out: Path = typer.Option(..., help="Folder for labels.jsonl and review.jsonl (resumes if they exist)."),
    teacher: str = typer.Option(None, help="litellm model name; default: the local reflection model."),
    samples: int = typer.Option(3, min=1, help="Self-consistency samples per document."),
    temperature: float = typer.Option(0.7, min=0.0, help="The teacher's sampling temperature."),
    min_agreement: float = typer.Option(0.67, min=0.0, max=1.0, help="Per field; below goes to review."),
    sample: int = typer.Option(None, help="Draft only this many documents (default: all)."),
    api_base: str = typer.Option(None, help="Base URL of an OpenAI-compatible server."),
    api_key_env: str = typer.Option(None, help="Name of the environment variable holding the API key."),
) -> None:
    """A teacher model drafts records: agreed, grounded, valid ones become labels; the rest, review."""
    from ieflow.labelfree.labelling import label_documents
    from ieflow.labelfree.teacher import TeacherConfig
    from ieflow.schema import load_schema

    record_schema = load_schema(schema)  # SchemaError: one error line, exit 2
    examples = _documents(documents, sample)
    cfg = TeacherConfig(teacher or config.reflection_model(), samples, temperature, min_agreement)
    summary = label_documents(examples, record_schema, cfg, out, _client(cfg.model, api_base, api_key_env))
    typer.echo(json.dumps(summary.to_dict(), indent=2))
