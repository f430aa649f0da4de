"""The `suggest_schema` flow: unlabelled documents -> a suggested record JSON Schema to edit.

A model (by default the local reflection model) reads a sample of the documents (ingest's
documents.parquet or a folder) and proposes fields per document; the fields are merged across the
sample and the JSON Schema is built and checked in code (`ieflow.labelfree.suggest`). The flow
writes `<out>` and a markdown artifact of which fields were seen in how many documents.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from ieflow import config
from ieflow.labelfree.suggest import SchemaSuggestion, SuggestConfig
from ieflow_tasks.labelfree import load_unlabelled, propose_schema, write_schema


class SuggestSchemaParams(BaseModel):
    documents: str = Field(description="A folder of documents, or documents.parquet from ingest.")
    out: str = Field(description="Where to write the suggested JSON Schema (a .json path).")
    sample: int = Field(5, ge=1, description="Documents the model reads.")
    model: str | None = Field(None, description="litellm model name; default: the local reflection model.")
    fields: list[str] = Field(default_factory=list, description="Fields you expect (hints for the model).")
    min_support: int | None = Field(
        None, ge=1, description="Documents that must propose a field (default 2, or 1 for one document)."
    )


def summary_markdown(suggestion: SchemaSuggestion, out: str) -> str:
    lines = [
        f"Suggested schema written to `{out}` from {suggestion.documents} documents.",
        "",
        "| field | type | seen in | description |",
        "|---|---|---|---|",
    ]
    for f in suggestion.fields:
        lines.append(f"| {f.name} | {f.type} | {f.support}/{suggestion.documents} | {f.description} |")
    if suggestion.dropped:
        lines += [
            "",
            "Dropped (too few documents): " + ", ".join(f"{n} ({k})" for n, k in suggestion.dropped.items()),
        ]
    for failure in suggestion.failures:
        lines += [f"- no fields from {failure.doc_id}: {failure.reason}"]
    return "\n".join(lines)


@flow(name="suggest_schema", log_prints=True)
def suggest_schema(params: SuggestSchemaParams) -> dict[str, Any]:
    """Suggest a record JSON Schema from a sample of documents; returns the support per field."""
    loaded = load_unlabelled(params.documents, params.sample)
    for skipped in loaded.skipped:
        print(f"skipped {skipped.source}: {skipped.reason}")
    cfg = SuggestConfig(
        model=params.model or config.reflection_model(),
        hints=tuple(params.fields),
        min_support=params.min_support,
    )
    suggestion = propose_schema(loaded.examples, cfg)
    write_schema(suggestion, params.out)
    create_markdown_artifact(
        markdown=summary_markdown(suggestion, params.out),
        key="suggested-schema",
        description=f"{len(suggestion.fields)} fields from {suggestion.documents} documents",
    )
    print(f"schema written to {params.out}: {len(suggestion.fields)} fields")
    return {
        "out": params.out,
        "documents": suggestion.documents,
        "support": {f.name: f.support for f in suggestion.fields},
        "dropped": suggestion.dropped,
        "failed": [{"doc_id": f.doc_id, "reason": f.reason} for f in suggestion.failures],
    }


if __name__ == "__main__":
    import sys

    print(suggest_schema(SuggestSchemaParams.model_validate_json(sys.argv[1])))
