"""great-expectations on grounding: per field, the share of values found in their document.

The evidence table (one row per doc_id and leaf path, see `ieflow.batch.evidence`) is widened with
one helper column per field, `grounded:<field>`: true where the value was found (exact,
normalized, fuzzy), false where it was not (not found, or skipped by the grounding budget), and
null on other fields' rows and on derived values, which are judgements rather than copies. Each
field then gets one plain column expectation, `expect_column_values_to_be_in_set([True])` with
`mostly` = the threshold the user set: great-expectations ignores the nulls, so `mostly` is exactly
the field's grounded share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ieflow.grounding import GROUNDED
from ieflow.validation.expectations import ExpectationSpec
from ieflow.validation.validator import _batch_definition, _exception_message, _suite, _trimmed

UNGROUNDED = frozenset({"not_found", "skipped"})  # derived values are not counted either way


@dataclass(frozen=True)
class EvidenceRow:
    """What the check reads of one evidence row."""

    doc_id: str
    field: str  # the program's field name (`lines[].amount`)
    method: str


@dataclass
class GroundingReport:
    """Per field: values counted, values grounded, and whether the share met the threshold."""

    counted: dict[str, int] = field(default_factory=dict)
    grounded: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # fields whose share is below the threshold
    errors: list[str] = field(default_factory=list)  # expectations that raised
    result: dict[str, Any] | None = None  # the great-expectations result, as JSON


def grounding_expectations(fields: list[str], min_share: float) -> list[ExpectationSpec]:
    """One expectation per field: at least `min_share` of its values grounded."""
    return [
        ExpectationSpec(
            f"grounded share of {name} >= {min_share:g}",
            "expect_column_values_to_be_in_set",
            {"column": f"grounded:{name}", "value_set": [True], "mostly": min_share},
            source="grounding",
        )
        for name in fields
    ]


def check_grounding(rows: list[EvidenceRow], min_share: float, suite_name: str) -> GroundingReport:
    """Run the per-field expectations over a shard's evidence rows."""
    import pandas as pd

    report = GroundingReport()
    counted = [r for r in rows if r.method in GROUNDED or r.method in UNGROUNDED]
    for r in counted:
        report.counted[r.field] = report.counted.get(r.field, 0) + 1
        report.grounded[r.field] = report.grounded.get(r.field, 0) + (r.method in GROUNDED)
    fields = sorted(report.counted)
    if not fields:
        return report
    columns: dict[str, Any] = {"doc_id": pd.Series([r.doc_id for r in counted], dtype=object)}
    for name in fields:
        values = [(r.method in GROUNDED) if r.field == name else None for r in counted]
        columns[f"grounded:{name}"] = pd.Series(values, dtype=object)
    specs = grounding_expectations(fields, min_share)
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": pd.DataFrame(columns)})
    result = batch.validate(_suite(suite_name, specs), result_format={"result_format": "SUMMARY"})
    for item in result.results:  # matched by column: GE need not keep the suite's order
        name = str(item.expectation_config.kwargs["column"]).removeprefix("grounded:")
        problem = _exception_message(item.exception_info)
        if problem:
            report.errors.append(f"grounded share of {name}: {problem}")
        elif not item.success:
            report.failed.append(name)
    report.failed.sort()
    report.result = _trimmed(result.to_json_dict())
    return report
