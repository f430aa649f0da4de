"""Prefect tasks of the label flow, thin wrappers over `ieflow.labelfree`.

Not cached: their inputs are files that change under the same path (labels.jsonl, review.jsonl),
and the teacher's model calls are cached by the LM client's own cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ieflow.datasets import Example
from ieflow.labelfree import teacher
from ieflow.labelfree.drafts import DraftRecord
from ieflow.labelfree.review_queue import append_label_rows, write_review_queue
from ieflow.labelfree.unlabelled import unlabelled_examples

find_documents = task(unlabelled_examples, name="find-unlabelled-documents", cache_policy=NO_CACHE)
write_labels = task(append_label_rows, name="append-label-rows", cache_policy=NO_CACHE)
save_review_queue = task(write_review_queue, name="save-review-queue", cache_policy=NO_CACHE)


@task(name="draft-labels", cache_policy=NO_CACHE, persist_result=False)
def draft_documents(
    examples: Sequence[Example], schema: dict[str, Any], config: teacher.TeacherConfig
) -> list[DraftRecord]:
    """The teacher's drafts (looked up on the module at call time, so tests can script it)."""
    return teacher.draft_labels(examples, schema, config)
