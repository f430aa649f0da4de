"""Prefect tasks of the split flow, thin wrappers over `ieflow.splits`.

The work is a few thousand small rows, so the flow is three tasks, not one per document. None of them
is cached: their inputs are files whose contents can change under the same path, and recomputing is
cheaper than hashing them.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from ieflow.splits import plan_splits, read_split_inputs, write_split_rows

load_split_inputs = task(read_split_inputs, name="load-split-inputs", cache_policy=NO_CACHE)
compute_splits = task(plan_splits, name="compute-splits", cache_policy=NO_CACHE)
write_splits = task(write_split_rows, name="write-splits", cache_policy=NO_CACHE)
