"""Train/val/test splits: the deterministic assignment and the split run built on it.

`assign` holds the hash assignment (`assign_splits`, `find_leaks`, `hash_unit`); a split run reads
its inputs (`inputs`), plans the rows and the summary (`plan`) and reports them (`report`). Plain
functions, no Prefect: the split flow's tasks wrap them.
"""

from ieflow.splits.assign import DEFAULT_RATIOS, assign_splits, find_leaks, hash_unit
from ieflow.splits.inputs import MatchedDocument, SplitInputs, read_split_inputs
from ieflow.splits.plan import SplitPlan, SplitRow, SplitSummary, plan_splits, write_split_rows
from ieflow.splits.report import summary_markdown

__all__ = [
    "DEFAULT_RATIOS",
    "MatchedDocument",
    "SplitInputs",
    "SplitPlan",
    "SplitRow",
    "SplitSummary",
    "assign_splits",
    "find_leaks",
    "hash_unit",
    "plan_splits",
    "read_split_inputs",
    "summary_markdown",
    "write_split_rows",
]
