"""Prefect tasks of the label-free flows, thin wrappers over `ieflow.labelfree`.

Not cached by Prefect: model answers are cached by the LM client already, and the documents are
files whose contents can change under the same path.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from ieflow.labelfree.documents import load_documents
from ieflow.labelfree.suggest import suggest_schema, write_suggestion

load_unlabelled = task(load_documents, name="load-unlabelled-documents", cache_policy=NO_CACHE)
# One task: the model reads the sample concurrently inside it (a retry re-asks only what failed,
# as answers are cached).
propose_schema = task(suggest_schema, name="suggest-schema", cache_policy=NO_CACHE)
write_schema = task(write_suggestion, name="write-schema", cache_policy=NO_CACHE)
