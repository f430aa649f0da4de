"""Running the suite: great-expectations on each flattened table, failures traced back to documents.

great-expectations 1.24 has no polars datasource: each table is validated as a pandas frame with
object columns (pandas 3 would otherwise turn strings into its `str` dtype, which the type checks
reject) in an ephemeral context, with COMPLETE results indexed by `doc_id`. Validating is fast
(about 0.1 s per 500 rows) but importing great_expectations takes ~4 s, so it is imported lazily.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ieflow.schema import top_level_fields
from ieflow.validation.expectations import ROOT, ExpectationSpec, schema_expectations
from ieflow.validation.fields import FIELD, NON_NULL, TYPES, FieldChecks, is_field_check
from ieflow.validation.flatten import flatten

_KEEP_FAILURES = 50  # failing values kept per expectation in stored results (Data Docs stay small)


@dataclass
class ValidationReport:
    row_failures: dict[str, list[str]] = field(default_factory=dict)  # doc_id -> expectation names
    counts: dict[str, int] = field(default_factory=dict)  # expectation name -> failing documents
    batch_failures: list[str] = field(default_factory=list)  # failed, but no row to blame
    errors: list[str] = field(default_factory=list)  # expectations that raised (e.g. a bad regex)
    results: list[dict[str, Any]] = field(default_factory=list)  # GE results as JSON, per table
    n_rows: int = 0


_LOCAL = threading.local()  # one GE context per thread: contexts are not meant to be shared


def _batch_definition() -> Any:
    if getattr(_LOCAL, "batch_definition", None) is None:
        import logging

        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # An ephemeral context announces the temporary docs site it makes: noise in every task log.
        logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm in task logs
        asset = context.data_sources.add_pandas("ieflow").add_dataframe_asset("records")
        _LOCAL.batch_definition = asset.add_batch_definition_whole_dataframe("batch")
    return _LOCAL.batch_definition


def build_suite(name: str, specs: list[ExpectationSpec]) -> Any:
    """A great-expectations suite named `name` holding `specs`."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectations = [
        ExpectationConfiguration(
            type=s.type, kwargs=s.kwargs, meta={"name": s.name, "source": s.source}
        ).to_domain_obj()
        for s in specs
    ]
    return gx.ExpectationSuite(name=name, expectations=expectations)


class RecordValidator:
    """Validates batches of records against the schema's suite and the user's expectations.

    `specs` are the expectations as named in reports and quarantine rows; the schema's per-field
    type and not-null checks among them run as a few expectations on long tables (see `fields`),
    so `tables` and `run_specs` are what great-expectations runs."""

    def __init__(
        self, schema: dict[str, Any], expectations: Iterable[ExpectationSpec] = (), name: str | None = None
    ) -> None:
        self.schema = schema
        self.name = _slug(name or str(schema.get("title") or "")) or "records"
        self.specs = [*schema_expectations(schema), *expectations]
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"expectation names must be unique, repeated: {dupes}")
        self.field_checks = FieldChecks(s for s in self.specs if is_field_check(s))
        self._run = [*(s for s in self.specs if not is_field_check(s)), *self.field_checks.specs()]
        self.tables = sorted({s.table for s in self._run})
        self._suite_names = _suite_names(self.name, self.tables)
        # The schema's columns always exist in a frame (a row may lack a key: a null object has no
        # children); a user's column that is in no row stays absent, so GE reports it.
        self._schema_columns = {"doc_id"} | {s.kwargs["column"] for s in self._run if s.source == "schema"}
        self._local = threading.local()  # suites per thread: shards validate in parallel threads

    def suite_name(self, table: str) -> str:
        return self._suite_names[table]

    def run_specs(self, table: str) -> list[ExpectationSpec]:
        """The expectations great-expectations runs on `table`."""
        return [s for s in self._run if s.table == table]

    def suite(self, table: str) -> Any:
        suites = self._local.__dict__.setdefault("suites", {})
        if table not in suites:
            suites[table] = build_suite(self.suite_name(table), self.run_specs(table))
        return suites[table]

    def validate(self, records: Mapping[str, Any]) -> ValidationReport:
        """Validate {doc_id: parsed JSON value}; values need not match the schema at all."""
        report = ValidationReport(n_rows=len(records))
        if not records:
            return report
        tables = flatten(self.schema, records)
        tables.update(self.field_checks.long_tables(tables))
        failing: dict[str, set[str]] = {}
        for table in self.tables:
            rows = tables.get(table, [])
            if rows:
                self._validate_table(table, rows, report, failing)
        report.row_failures = {doc: sorted(names) for doc, names in sorted(failing.items())}
        return report

    def validate_frame(self, df: Any) -> ValidationReport:
        """Validate a polars DataFrame of records (doc_id plus one column per top-level field,
        structs and lists for nested ones), e.g. a records Parquet file read back."""
        fields = [name for name in top_level_fields(self.schema) if name in df.columns]
        records = {
            row["doc_id"]: {k: _jsonable(row[k]) for k in fields}
            for row in df.select(["doc_id", *fields]).to_dicts()
        }
        return self.validate(records)

    def _validate_table(
        self, table: str, rows: list[dict[str, Any]], report: ValidationReport, failing: dict[str, set[str]]
    ) -> None:
        long = table in (TYPES, NON_NULL)
        index_columns = ["doc_id", FIELD] if long else ["doc_id"]
        result = run_suite(self.suite(table), self._frame(table, rows, index_columns), index_columns)
        for item in result.results:
            config = item.expectation_config
            name = (config.meta or {}).get("name") or config.type
            problem = exception_message(item.exception_info)
            if problem:
                report.errors.append(f"{name}: {problem}")
                continue
            if item.success:
                continue
            index = item.result.get("unexpected_index_list")
            if not index:
                report.batch_failures.append(name)
                continue
            blamed = (
                self.field_checks.blamed(config.type, index) if long else {name: {e["doc_id"] for e in index}}
            )
            for blamed_name, docs in blamed.items():
                report.counts[blamed_name] = report.counts.get(blamed_name, 0) + len(docs)
                for doc in docs:
                    failing.setdefault(doc, set()).add(blamed_name)
        report.results.append(trimmed(result.to_json_dict()))

    def _frame(self, table: str, rows: list[dict[str, Any]], index_columns: list[str]) -> Any:
        import pandas as pd

        known = self._schema_columns | {key for row in rows for key in row}
        columns = {
            s.kwargs[k]
            for s in self.run_specs(table)
            for k in ("column", "column_A", "column_B")
            if k in s.kwargs
        } & known
        columns.update(index_columns)
        return pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object) for c in sorted(columns)})


def run_suite(suite: Any, frame: Any, index_columns: list[str]) -> Any:
    """`suite` run on a pandas frame, every failing row named by `index_columns`."""
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    return batch.validate(
        suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns}
    )


def _slug(text: str) -> str:
    # Suite names become Data Docs file and folder names (GE splits them at dots) and page text:
    # a schema title or field name must not reach them as written.
    return re.sub(r"[^a-z0-9_\-\[\]]+", "_", text.lower()).strip("_")


def _suite_names(name: str, tables: list[str]) -> dict[str, str]:
    """A distinct, file-name-safe suite name per table: `name`, then `name.<table>`."""
    names: dict[str, str] = {}
    for table in tables:
        candidate = name if table == ROOT else f"{name}.{_slug(table) or 'table'}"
        unique, n = candidate, 1
        while unique in names.values():
            n += 1
            unique = f"{candidate}_{n}"
        names[table] = unique
    return names


def exception_message(info: Any) -> str | None:
    # GE reports an expectation that raised either flat ({"raised_exception": True, ...}) or, when a
    # metric failed (e.g. a missing column), as {metric id: {"exception_message": ...}}.
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("exception_message"):
            return str(value["exception_message"])
    return None


def _jsonable(value: Any) -> Any:
    """A records-frame value back as JSON: dates to ISO text, structs and lists recursively."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def trimmed(result: dict[str, Any]) -> dict[str, Any]:
    # COMPLETE results list every failing value; Data Docs need a sample, not thousands.
    for item in result.get("results", []):
        detail = item.get("result") or {}
        for key in (
            "unexpected_list",
            "unexpected_index_list",
            "partial_unexpected_list",
            "partial_unexpected_index_list",
            "partial_unexpected_counts",
        ):
            if isinstance(detail.get(key), list):
                detail[key] = detail[key][:_KEEP_FAILURES]
        detail.pop("unexpected_index_query", None)  # a pandas expression listing every index
    return json.loads(json.dumps(result, default=str))
