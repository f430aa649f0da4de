"""great-expectations on grounding: per field, the share of values found in their document.

The evidence rows (one per doc_id and leaf path, see `ieflow.batch.evidence`) are summed into a
table with one row per field: `field`, `values` (counted), `grounded` (found exact, normalized or
fuzzy) and `grounded_share`. Not found and skipped values count as not grounded; derived values
(judgements, not copies) are not counted either way. One expectation,
`expect_column_values_to_be_between(grounded_share, min_value=<the user's threshold>)`, checks
every field at once, and its failing rows name the fields (`unexpected_index_list` by `field`).

One expectation for all fields rather than one per field: great-expectations costs about 35 ms per
expectation, so a 500-field schema took 17 s per shard with one per field, and the summed table
is what a person reads anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ieflow.grounding import GROUNDED
from ieflow.validation.expectations import ExpectationSpec
from ieflow.validation.validator import build_suite, exception_message, run_suite, trimmed

UNGROUNDED = frozenset({"not_found", "skipped"})  # derived values are not counted either way


@dataclass(frozen=True)
class EvidenceRow:
    """What the check reads of one evidence row."""

    doc_id: str
    field: str  # the program's field name (`lines[].amount`)
    method: str


@dataclass
class GroundingReport:
    """Per field: values counted, values grounded, and the fields whose share is too low."""

    counted: dict[str, int] = field(default_factory=dict)
    grounded: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # fields whose share is below the threshold
    errors: list[str] = field(default_factory=list)  # the expectation raised
    result: dict[str, Any] | None = None  # the great-expectations result, as JSON


def grounding_expectation(min_share: float) -> ExpectationSpec:
    """Every field: at least `min_share` of its values grounded."""
    return ExpectationSpec(
        f"grounded share per field >= {min_share:g}",
        "expect_column_values_to_be_between",
        {"column": "grounded_share", "min_value": min_share},
        source="grounding",
    )


def check_grounding(rows: list[EvidenceRow], min_share: float, suite_name: str) -> GroundingReport:
    """Run the grounding expectation over a shard's evidence rows."""
    import pandas as pd

    report = GroundingReport()
    for r in rows:
        if r.method in GROUNDED or r.method in UNGROUNDED:
            report.counted[r.field] = report.counted.get(r.field, 0) + 1
            report.grounded[r.field] = report.grounded.get(r.field, 0) + (r.method in GROUNDED)
    fields = sorted(report.counted)
    if not fields:
        return report
    table = pd.DataFrame(
        {
            "field": pd.Series(fields, dtype=object),
            "values": [report.counted[f] for f in fields],
            "grounded": [report.grounded[f] for f in fields],
            "grounded_share": [report.grounded[f] / report.counted[f] for f in fields],
        }
    )
    spec = grounding_expectation(min_share)
    result = run_suite(build_suite(suite_name, [spec]), table, ["field"])
    for item in result.results:
        problem = exception_message(item.exception_info)
        if problem:
            report.errors.append(f"{spec.name}: {problem}")
        elif not item.success:
            report.failed = sorted(e["field"] for e in item.result.get("unexpected_index_list") or [])
    report.result = trimmed(result.to_json_dict())
    return report
