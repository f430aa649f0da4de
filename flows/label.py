"""The `label` flow: unlabelled documents -> teacher drafts -> labels.jsonl, with a person's review in
the Prefect UI.

The teacher (`ieflow.labelfree.teacher.draft_labels`) drafts a record per document; drafts without
problems are appended to the labels as `teacher` rows, the rest go to review.jsonl. Then the run
pauses with a typed form (Prefect's `RunInput`), `review_batch` drafts at a time: the person corrects
values and ticks accept, and accepted records are appended as `human` rows. review.jsonl always holds
what is still to review, so a timeout loses nothing: run the flow again (it reviews the queue before
drafting more) or use the file round trip (`ieflow review export` / `import`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field

from ieflow import config
from ieflow.errors import ConfigError
from ieflow.labelfree.drafts import DraftRecord, teacher_row
from ieflow.labelfree.review_form import review_form, review_model
from ieflow.labelfree.review_queue import labelled_doc_ids, read_review_queue
from ieflow.labelfree.teacher import TeacherConfig
from ieflow.schema import load_schema
from ieflow_tasks.label import draft_documents, find_documents, save_review_queue, write_labels


class LabelParams(BaseModel):
    documents: str = Field(description="documents.parquet from the ingest flow (doc_id, text).")
    schema_path: str = Field(description="Record JSON Schema (e.g. from `ieflow schema suggest`, edited).")
    labels_path: str = Field(description="labels.jsonl: accepted records are appended here.")
    review_path: str | None = Field(
        None, description="Drafts that need a person (default: review.jsonl beside the labels)."
    )
    limit: int = Field(20, ge=0, description="Draft at most this many new documents (0: only review).")
    teacher_model: str = Field(config.DEFAULT_REFLECTION_MODEL, description="litellm name of the teacher.")
    samples: int = Field(3, ge=1, description="Self-consistency samples per document.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature of the teacher.")
    min_agreement: float = Field(0.67, ge=0, le=1, description="Per field; below, a person must look.")
    review_in_ui: bool = Field(
        True, description="Pause for a person in the UI; off: leave review.jsonl for `ieflow review`."
    )
    review_batch: int = Field(3, ge=1, description="Drafts per pause (one form).")
    review_timeout_s: int = Field(3600, ge=1, description="How long each pause waits for a person.")
    review_poll_s: int = Field(10, ge=1, description="How often a paused run checks for the answer.")

    @property
    def queue_path(self) -> str:
        return self.review_path or str(Path(self.labels_path).parent / "review.jsonl")

    @property
    def teacher(self) -> TeacherConfig:
        return TeacherConfig(self.teacher_model, self.samples, self.temperature, self.min_agreement)


@dataclass
class LabelSummary:
    drafted: int = 0
    teacher_rows: int = 0
    human_rows: int = 0
    in_review: int = 0
    timed_out: bool = False
    remaining: list[DraftRecord] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "remaining"}


def _resume_hint(params: LabelParams) -> str:
    return (
        f"{len(read_review_queue(params.queue_path)[0])} drafts wait in {params.queue_path}: run the label "
        f"flow again with limit 0 to review them in the UI, or `ieflow review export {params.queue_path} "
        f"--schema {params.schema_path} --out review.csv` and `ieflow review import`"
    )


def review_in_ui(
    queue: list[DraftRecord], schema: dict[str, Any], params: LabelParams, summary: LabelSummary
) -> None:
    """Pause once per batch of drafts with a typed form; accepted records become `human` rows and
    review.jsonl is rewritten after each answer with what is left."""
    remaining = list(queue)
    batches = math.ceil(len(queue) / params.review_batch)
    for number in range(batches):
        batch = queue[number * params.review_batch : (number + 1) * params.review_batch]
        form = review_form(
            batch, schema, f"Review {len(batch)} teacher drafts (form {number + 1} of {batches})"
        )
        model = review_model(form, RunInput, "LabelReview").with_initial_data(description=form.description)
        try:
            answers = pause_flow_run(
                wait_for_input=model,
                timeout=params.review_timeout_s,
                poll_interval=params.review_poll_s,
                key=f"label-review-{number}",
            )
        except FlowPauseTimeout:
            summary.timed_out = True
            break
        outcome = form.outcome(answers.model_dump(), schema)
        summary.human_rows += len(write_labels(params.labels_path, outcome.labels))
        done = {row.doc_id for row in outcome.labels}
        kept = {draft.doc_id: draft for draft in outcome.kept}
        remaining = [kept.get(d.doc_id, d) for d in remaining if d.doc_id not in done]
        save_review_queue(params.queue_path, remaining)
    summary.remaining = remaining


@flow(name="label", log_prints=True)
def label(params: LabelParams) -> dict[str, Any]:
    """Draft labels with the teacher, append the good ones, and ask a person about the rest."""
    schema = load_schema(params.schema_path)
    queue, bad_lines = read_review_queue(params.queue_path)
    if bad_lines:  # rewriting the queue would drop them: stop instead
        raise ConfigError(f"{params.queue_path} {bad_lines[0]}; fix or remove that line and run again")
    exclude = labelled_doc_ids(params.labels_path) | {draft.doc_id for draft in queue}
    examples = find_documents(params.documents, exclude, params.limit) if params.limit else []
    drafts = draft_documents(examples, schema, params.teacher) if examples else []
    summary = LabelSummary(drafted=len(drafts))
    accepted = [teacher_row(draft) for draft in drafts if not draft.needs_review]
    summary.teacher_rows = len(write_labels(params.labels_path, accepted))
    queue += [draft for draft in drafts if draft.needs_review]
    save_review_queue(params.queue_path, queue)
    summary.remaining = queue
    if params.review_in_ui and queue:
        review_in_ui(queue, schema, params, summary)
    summary.in_review = len(summary.remaining)
    hint = _resume_hint(params) if summary.in_review else "nothing left to review"
    create_markdown_artifact(
        markdown=_summary_markdown(summary, params, hint), key="label-summary", description=hint[:200]
    )
    print(f"label: {summary.to_dict()}; {hint}")
    if summary.timed_out:
        raise FlowPauseTimeout(f"no answer within {params.review_timeout_s} s; {hint}")
    return {**summary.to_dict(), "labels": params.labels_path, "review": params.queue_path}


def _summary_markdown(summary: LabelSummary, params: LabelParams, hint: str) -> str:
    return "\n".join(
        [
            "# Label run",
            "",
            f"- drafted by the teacher ({params.teacher_model}): {summary.drafted}",
            f"- appended to `{params.labels_path}` as teacher labels: {summary.teacher_rows}",
            f"- appended as human labels after review: {summary.human_rows}",
            f"- still to review in `{params.queue_path}`: {summary.in_review}",
            "",
            hint,
        ]
    )


if __name__ == "__main__":
    import sys

    print(label(LabelParams.model_validate_json(sys.argv[1])))
