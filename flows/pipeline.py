"""The whole pipeline in one flow: ingest, split, optimize, extract. `ieflow demo` runs it on data/.

Each stage is its own flow (a subflow here), so the same stages run alone from the UI or on a
schedule, with the same parameters.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from ieflow import config, storage
from ieflow_flows.extract import ExtractParams, extract
from ieflow_flows.ingest import IngestParams, ingest
from ieflow_flows.optimize import OptimizeParams, OptimizerName, optimize
from ieflow_flows.split import SplitParams, split


class PipelineParams(BaseModel):
    """A labelled folder in, an optimized program and validated records out."""

    data: str = Field("data/receipts", description="Labelled folder: schema.json, labels.jsonl, documents/.")
    output_dir: str = Field("runs/demo", description="Where every stage writes its outputs.")
    optimizer: OptimizerName = Field("gepa", description="Which optimizer to run.")
    max_metric_calls: int = Field(30, ge=1, description="Optimization budget (examples evaluated).")
    train: float = Field(0.5, ge=0, description="Share of labelled documents used to optimize.")
    val: float = Field(0.25, ge=0, description="Share used to select among candidates.")
    test: float = Field(0.25, ge=0, description="Share held out to report the result.")
    student_model: str = Field(
        config.DEFAULT_STUDENT_MODEL, description="litellm name of the extraction model."
    )
    reflection_model: str = Field(
        config.DEFAULT_REFLECTION_MODEL, description="litellm name of the proposal model."
    )
    seed: int = Field(0, description="Seeds the split and the optimizer.")


@flow(name="pipeline", log_prints=True)
def pipeline(params: PipelineParams = PipelineParams()) -> dict[str, Any]:
    logger = get_run_logger()
    out = params.output_dir.rstrip("/")
    documents = storage.join(out, "ingest", "documents.parquet")

    ingested = ingest(
        IngestParams(source=storage.join(params.data, "documents"), out=storage.join(out, "ingest"))
    )
    logger.info("ingest: %s", ingested.get("status_counts", ingested))

    splits = split(
        SplitParams(
            labels_path=params.data,
            output_dir=out,
            documents_path=documents,
            seed=params.seed,
            train=params.train,
            val=params.val,
            test=params.test,
        )
    )

    optimized = optimize(
        OptimizeParams(
            dataset=params.data,
            splits_path=splits["output"],
            optimizer=params.optimizer,
            max_metric_calls=params.max_metric_calls,
            student_model=params.student_model,
            reflection_model=params.reflection_model,
            max_val=None,
            output_dir=storage.join(out, "optimize"),
            seed=params.seed,
        )
    )

    extracted = extract(
        ExtractParams(
            documents=documents, program=optimized["program"], output_dir=storage.join(out, "extract")
        )
    )
    return {"ingest": ingested, "split": splits, "optimize": optimized, "extract": extracted}


if __name__ == "__main__":
    pipeline()
