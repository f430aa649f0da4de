"""The `split` flow: labelled documents -> splits.parquet (doc_id, split, assigned_by, document_id).

Reads the labels (JSONL or CSV of doc_id + gold record, or a dataset folder in the shared layout),
optionally joined to the ingest flow's documents.parquet (by doc_id, else by file name: ingest
names documents by content hash) for content hashes and `document_id`, assigns train/val/test
deterministically (see `ieflow.splits.assign_splits`) and writes `<output_dir>/splits.parquet` and
a markdown summary artifact. Re-running keeps every earlier assignment (`keep_previous`), so adding
labelled documents only places the new ones.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field, model_validator

from ieflow import storage
from ieflow.splits import summary_markdown
from ieflow_tasks.split import compute_splits, load_split_inputs, write_splits


class SplitParams(BaseModel):
    labels_path: str = Field(
        description="Labels (.jsonl or .csv of doc_id + gold record) or a dataset folder."
    )
    output_dir: str = Field(description="Folder (or fsspec URL) for splits.parquet.")
    schema_path: str | None = Field(
        None, description="Record JSON Schema; default: schema.json beside the labels."
    )
    documents_path: str | None = Field(None, description="documents.parquet from ingest (doc_id, sha256).")
    seed: int = Field(0, description="Changes every hash-based assignment.")
    train: float = Field(0.8, ge=0)
    val: float = Field(0.1, ge=0)
    test: float = Field(0.1, ge=0)
    stratify_by: str | None = Field(
        None, description="A record field or documents column to balance splits on."
    )
    respect_existing: bool = Field(True, description="Keep a split given in the labels' split column.")
    keep_previous: bool = Field(True, description="Keep assignments of an existing splits.parquet.")

    @model_validator(mode="after")
    def _ratios_positive(self) -> SplitParams:
        if self.train + self.val + self.test <= 0:
            raise ValueError("train, val and test ratios must not all be zero")
        return self

    @property
    def ratios(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def output_path(self) -> str:
        return storage.join(self.output_dir, "splits.parquet")


@flow(name="split", log_prints=True)
def split(params: SplitParams) -> dict[str, Any]:
    """Assign labelled documents to train/val/test and write splits.parquet; returns the summary."""
    output = params.output_path
    inputs = load_split_inputs(
        params.labels_path,
        params.schema_path,
        params.documents_path,
        output if params.keep_previous else None,
        params.stratify_by,
    )
    planned = compute_splits(
        inputs,
        seed=params.seed,
        ratios=params.ratios,
        stratify_by=params.stratify_by,
        respect_existing=params.respect_existing,
        keep_previous=params.keep_previous,
    )
    write_splits(planned.rows, output)
    summary = planned.summary
    create_markdown_artifact(
        markdown=summary_markdown(summary, output),
        key="split-summary",
        description=f"{summary.n_assigned} documents: {summary.splits}",
    )
    print(f"splits written to {output}: {summary.splits} ({len(summary.label_errors)} bad label rows)")
    return {**summary.to_dict(), "output": output}


if __name__ == "__main__":
    import sys

    print(split(SplitParams.model_validate_json(sys.argv[1])))
