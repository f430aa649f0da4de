"""The schema's per-field type and not-null checks, run as a few expectations on two long tables.

One great-expectations expectation per field and check made a wide schema slow: each costs GE
~16-30 ms however few rows there are, and GE scans every column of the frame for each expectation,
so 5,000 fields took minutes a batch (docs/throughput.md). Here the fields are rows instead: the
`types` table has a row per (row of a flattened table, field with a type check) and one value
column per distinct type list, checked by one `expect_column_values_to_be_in_type_list` each; the
`non_null` table has a row per (row, field that must not be null), checked by one
`expect_column_values_to_not_be_null`. GE still judges every value; a failing row names its
document and its `field`, which maps back to the per-field expectation name the quarantine lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ieflow.validation.expectations import ExpectationSpec

TYPES = "types"  # table names: array tables end in `[]` and the root table is "", so no clash
NON_NULL = "non_null"
FIELD = "field"  # the long tables' column naming the checked field column, e.g. `raw:total`
VALUE = "value"
TYPE_CHECK = "expect_column_values_to_be_in_type_list"
NOT_NULL = "expect_column_values_to_not_be_null"


def is_field_check(spec: ExpectationSpec) -> bool:
    """Whether `spec` is one of the schema's per-field type or not-null checks (run here)."""
    return spec.source == "schema" and spec.type in (TYPE_CHECK, NOT_NULL)


class FieldChecks:
    """Per-field type and not-null specs, as the long tables and the few expectations run on them."""

    def __init__(self, specs: Iterable[ExpectationSpec]) -> None:
        self.names: dict[tuple[str, str], str] = {}  # (expectation type, field column) -> name
        self.typed: dict[str, list[tuple[str, str]]] = {}  # table -> [(field column, value column)]
        self.required: dict[str, list[str]] = {}  # table -> field columns that must not be null
        self.type_lists: dict[str, list[str]] = {}  # value column of `types` -> its type list
        for spec in specs:
            column = spec.kwargs["column"]
            self.names[(spec.type, column)] = spec.name
            if spec.type == TYPE_CHECK:
                value_column = "type:" + "|".join(spec.kwargs["type_list"])
                self.type_lists[value_column] = list(spec.kwargs["type_list"])
                self.typed.setdefault(spec.table, []).append((column, value_column))
            else:
                self.required.setdefault(spec.table, []).append(column)

    def specs(self) -> list[ExpectationSpec]:
        """What great-expectations runs: a type check per distinct type list, one not-null check."""
        specs = [
            ExpectationSpec(
                f"{TYPE_CHECK}({column})", TYPE_CHECK, {"column": column, "type_list": types}, TYPES
            )
            for column, types in sorted(self.type_lists.items())
        ]
        if self.required:
            specs.append(ExpectationSpec(f"{NOT_NULL}({VALUE})", NOT_NULL, {"column": VALUE}, NON_NULL))
        return specs

    def long_tables(self, tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        """The `types` and `non_null` rows of flattened `tables` (see the module docstring)."""
        typed = [
            {"doc_id": row["doc_id"], FIELD: column, value_column: row.get(column)}
            for table, columns in self.typed.items()
            for row in tables.get(table, [])
            for column, value_column in columns
        ]
        required = [
            {"doc_id": row["doc_id"], FIELD: column, VALUE: row.get(column)}
            for table, columns in self.required.items()
            for row in tables.get(table, [])
            for column in columns
        ]
        return {TYPES: typed, NON_NULL: required}

    def blamed(self, expectation_type: str, failures: list[dict[str, Any]]) -> dict[str, set[str]]:
        """{per-field expectation name: failing doc_ids} from a long table's failing rows."""
        blamed: dict[str, set[str]] = {}
        for failure in failures:
            name = self.names[(expectation_type, failure[FIELD])]
            blamed.setdefault(name, set()).add(failure["doc_id"])
        return blamed
