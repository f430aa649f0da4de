"""Record validation with great-expectations: a suite generated from the JSON Schema, plus yours.

great-expectations validates flat tables, records are nested, so a batch of records is flattened
into tables first (see `flatten`): the root table has one row per document, and every array gets a
table of its own with one row per item (`lines[]`, `lines[].taxes[]`, `tags[]`), each row keyed by
`doc_id`, so a failing item names its document. Column names are field paths. Beside each field
`P` there are helper columns: `raw:P` (the value as the model gave it, for the type and not-null
checks), `len:P` (array lengths), `missing:P` / `extra:P` (required keys absent / keys the schema
does not allow, for the object at P; `missing:` alone is the record itself). `P` holds the value
only when its type is right, so range, format and length checks never crash on a wrong type: a
wrong type is reported once, by the type check on `raw:P`.

great-expectations 1.24 has no polars datasource: each table is validated as a pandas frame with
object columns (pandas 3 would otherwise turn strings into its `str` dtype, which the type checks
reject) in an ephemeral context, with COMPLETE results indexed by `doc_id`. Validating is fast
(about 0.1 s per 500 rows) but importing great_expectations takes ~4 s, so it is imported lazily.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ieflow.schema import is_nullable, kind_of, resolve, top_level_fields, types_of

_PY_TYPES = {
    "string": ["str"],
    "number": ["int", "float"],
    "integer": ["int"],
    "boolean": ["bool"],
    "array": ["list"],
    "object": ["dict"],
}
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_FORMAT_REGEX = {
    "date": _DATE,
    "date-time": r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$",
    "email": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    "uri": r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$",
}
_KEEP_FAILURES = 50  # failing values kept per expectation in stored results (Data Docs stay small)
ROOT = ""


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation, described without great-expectations objects (so it pickles and prints).

    `name` is what quarantine rows list; `table` is `""` (one row per record) or an array path
    such as `lines[]` (one row per item).
    """

    name: str
    type: str
    kwargs: dict[str, Any]
    table: str = ROOT
    source: str = "schema"


@dataclass
class ValidationReport:
    row_failures: dict[str, list[str]] = field(default_factory=dict)  # doc_id -> expectation names
    counts: dict[str, int] = field(default_factory=dict)  # expectation name -> failing documents
    batch_failures: list[str] = field(default_factory=list)  # failed, but no row to blame
    errors: list[str] = field(default_factory=list)  # expectations that raised (e.g. a bad regex)
    results: list[dict[str, Any]] = field(default_factory=list)  # GE results as JSON, per table
    n_rows: int = 0


# -- the suite from a JSON Schema -----------------------------------------------------------------


def schema_expectations(schema: dict[str, Any]) -> list[ExpectationSpec]:
    """Expectations implied by the schema: types, required and non-null, enums, formats, patterns,
    string lengths, numeric ranges, array lengths and (with additionalProperties false) no extras."""
    out: list[ExpectationSpec] = []

    def add(kind: str, column: str, table: str, **kwargs: Any) -> None:
        out.append(ExpectationSpec(f"{kind}({column})", kind, {"column": column, **kwargs}, table))

    def walk_object(node: dict[str, Any], prefix: str, table: str, always: bool) -> None:
        # `always`: this object is present in every row of `table` (so required children are too)
        where = prefix.removesuffix(".")
        if node.get("required"):
            add("expect_column_values_to_be_null", f"missing:{where}", table)
        if node.get("additionalProperties") is False:
            add("expect_column_values_to_be_null", f"extra:{where}", table)
        required = set(node.get("required") or [])
        for name, sub in (node.get("properties") or {}).items():
            walk_field(resolve(schema, sub), f"{prefix}{name}", table, always and name in required)

    def walk_field(node: dict[str, Any], path: str, table: str, present: bool) -> None:
        kinds = [t for t in types_of(node) if t != "null"]
        non_null = present and not is_nullable(node)
        py_types = sorted({p for k in kinds for p in _PY_TYPES.get(k, [])})
        if py_types:
            add("expect_column_values_to_be_in_type_list", f"raw:{path}", table, type_list=py_types)
        if non_null:
            add("expect_column_values_to_not_be_null", f"raw:{path}", table)
        kind = kind_of(schema, node)
        if kind == "object":
            walk_object(node, f"{path}.", table, non_null)
            return
        if kind in ("scalar_array", "object_array"):
            low, high = node.get("minItems"), node.get("maxItems")
            if low is not None or high is not None:
                add("expect_column_values_to_be_between", f"len:{path}", table, min_value=low, max_value=high)
            items = resolve(schema, node["items"]) if isinstance(node.get("items"), dict) else {}
            if kind == "object_array":
                add(
                    "expect_column_values_to_be_in_type_list",
                    f"raw:{path}[]",
                    f"{path}[]",
                    type_list=["dict"],
                )
                walk_object(items, f"{path}[].", f"{path}[]", True)
            elif items:
                walk_field(items, f"{path}[]", f"{path}[]", True)
            return
        add_value_checks(node, path, table)

    def add_value_checks(node: dict[str, Any], path: str, table: str) -> None:
        values = [v for v in node.get("enum", []) if v is not None]
        if "const" in node:
            values = [node["const"]]
        if values:
            add("expect_column_values_to_be_in_set", path, table, value_set=values)
        fmt = node.get("format")
        if fmt in _FORMAT_REGEX:
            add("expect_column_values_to_match_regex", path, table, regex=_FORMAT_REGEX[fmt])
        if fmt == "date":  # the regex checks the shape, strptime the calendar (no 2024-02-30)
            add("expect_column_values_to_match_strftime_format", path, table, strftime_format="%Y-%m-%d")
        if isinstance(node.get("pattern"), str):
            out.append(
                ExpectationSpec(
                    f"expect_column_values_to_match_regex({path}, pattern)",
                    "expect_column_values_to_match_regex",
                    {"column": path, "regex": node["pattern"]},
                    table,
                )
            )
        if "minLength" in node or "maxLength" in node:
            add(
                "expect_column_value_lengths_to_be_between",
                path,
                table,
                min_value=node.get("minLength"),
                max_value=node.get("maxLength"),
            )
        bounds = {"min_value": node.get("minimum"), "max_value": node.get("maximum")}
        if "exclusiveMinimum" in node:
            bounds.update(min_value=node["exclusiveMinimum"], strict_min=True)
        if "exclusiveMaximum" in node:
            bounds.update(max_value=node["exclusiveMaximum"], strict_max=True)
        if bounds["min_value"] is not None or bounds["max_value"] is not None:
            add("expect_column_values_to_be_between", path, table, **bounds)

    walk_object(resolve(schema, schema), "", ROOT, True)
    return out


def load_expectations(source: str | Path | Iterable[Mapping[str, Any]] | None) -> list[ExpectationSpec]:
    """User expectations: a JSON file (or list) of `{"type": "expect_...", "kwargs": {...},
    "meta": {"name": "..."}}` (`expectation_type` is accepted for `type`). Columns are field paths
    (`total`, `buyer.name`, `lines[].quantity`, `len:lines`); the table is taken from the path
    unless `"table"` is given."""
    if source is None:
        return []
    if isinstance(source, str | Path):
        from ieflow import storage

        source = storage.read_json(source)
    specs = []
    for i, item in enumerate(source):  # type: ignore[arg-type]
        kind = item.get("type") or item.get("expectation_type")
        if not isinstance(kind, str) or not kind.startswith("expect_"):
            raise ValueError(f"expectation #{i}: 'type' must name a great-expectations expectation")
        kwargs = dict(item.get("kwargs") or {})
        columns = [kwargs.get("column"), kwargs.get("column_A"), *(kwargs.get("column_list") or [])]
        column = next((c for c in columns if c), "")
        # Unnamed: type, column and the other arguments, so it differs from the schema's own.
        details = "".join(f", {k}={v!r}" for k, v in sorted(kwargs.items()) if v != column)
        name = (item.get("meta") or {}).get("name") or f"{kind}({column}{details})"
        specs.append(ExpectationSpec(name, kind, kwargs, item.get("table", _table_of(column)), "user"))
    return specs


def _table_of(column: str) -> str:
    path = column.split(":", 1)[-1]
    return path[: path.rindex("[]") + 2] if "[]" in path else ROOT


# -- flattening records into tables ---------------------------------------------------------------


def _type_ok(value: Any, kinds: list[str]) -> bool:
    if not kinds:
        return True
    for kind in kinds:
        if kind == "string" and isinstance(value, str):
            return True
        if kind == "boolean" and isinstance(value, bool):
            return True
        if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if (kind == "array" and isinstance(value, list)) or (kind == "object" and isinstance(value, dict)):
            return True
    return False


def flatten(schema: dict[str, Any], records: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """{table: rows} for records given as {doc_id: parsed JSON value} (see the module docstring)."""
    tables: dict[str, list[dict[str, Any]]] = {ROOT: []}

    def fill_object(value: Any, node: dict[str, Any], prefix: str, row: dict[str, Any], doc_id: str) -> None:
        obj = value if isinstance(value, dict) else {}
        props = node.get("properties") or {}
        where = prefix.removesuffix(".")
        if isinstance(value, dict):
            missing = [k for k in node.get("required") or [] if k not in obj]
            row[f"missing:{where}"] = ", ".join(missing) or None
            extra = [k for k in obj if k not in props]
            row[f"extra:{where}"] = ", ".join(extra) or None
        for name, sub in props.items():
            fill_field(obj.get(name), resolve(schema, sub), f"{prefix}{name}", row, doc_id)

    def fill_field(value: Any, node: dict[str, Any], path: str, row: dict[str, Any], doc_id: str) -> None:
        row[f"raw:{path}"] = value
        kind = kind_of(schema, node)
        if kind == "object":
            fill_object(value, node, f"{path}.", row, doc_id)
            return
        if kind in ("scalar_array", "object_array"):
            items = value if isinstance(value, list) else []
            row[f"len:{path}"] = len(value) if isinstance(value, list) else None
            item_node = resolve(schema, node["items"]) if isinstance(node.get("items"), dict) else {}
            table = tables.setdefault(f"{path}[]", [])
            for item in items:
                item_row: dict[str, Any] = {"doc_id": doc_id}
                if kind == "object_array":
                    item_row[f"raw:{path}[]"] = item
                    fill_object(item, item_node, f"{path}[].", item_row, doc_id)
                else:
                    fill_field(item, item_node, f"{path}[]", item_row, doc_id)
                table.append(item_row)
            return
        kinds = [t for t in types_of(node) if t != "null"]
        row[path] = value if _type_ok(value, kinds) else None

    root = resolve(schema, schema)
    for doc_id, value in records.items():
        row: dict[str, Any] = {"doc_id": doc_id, "raw:": value}
        fill_object(value, root, "", row, doc_id)
        if not isinstance(value, dict):
            row["missing:"] = "the answer is not a JSON object"
        tables[ROOT].append(row)
    return tables


# -- running great-expectations ------------------------------------------------------------------

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


def _suite(name: str, specs: list[ExpectationSpec]) -> Any:
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
    """Validates batches of records against the schema's suite and the user's expectations."""

    def __init__(
        self, schema: dict[str, Any], expectations: Iterable[ExpectationSpec] = (), name: str | None = None
    ) -> None:
        self.schema = schema
        self.name = name or str(schema.get("title") or "records").lower().replace(" ", "_")
        self.specs = [*schema_expectations(schema), *expectations]
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"expectation names must be unique, repeated: {dupes}")
        self.tables = sorted({s.table for s in self.specs})
        self._local = threading.local()  # suites per thread: shards validate in parallel threads

    def suite_name(self, table: str) -> str:
        return self.name if table == ROOT else f"{self.name}.{table}"

    def suite(self, table: str) -> Any:
        suites = self._local.__dict__.setdefault("suites", {})
        if table not in suites:
            suites[table] = _suite(self.suite_name(table), [s for s in self.specs if s.table == table])
        return suites[table]

    def validate(self, records: Mapping[str, Any]) -> ValidationReport:
        """Validate {doc_id: parsed JSON value}; values need not match the schema at all."""
        report = ValidationReport(n_rows=len(records))
        if not records:
            return report
        tables = flatten(self.schema, records)
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
        import pandas as pd

        suite = self.suite(table)
        # The schema's columns always exist (a row may lack a key: a null object has no children);
        # a user's column that is neither there nor in any row stays absent, so GE reports it.
        known = {"doc_id"} | {s.kwargs["column"] for s in self.specs if s.source == "schema"}
        known |= {key for row in rows for key in row}
        columns = {
            s.kwargs[k]
            for s in self.specs
            if s.table == table
            for k in ("column", "column_A", "column_B")
            if k in s.kwargs
        } & known
        columns.add("doc_id")
        frame = pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object) for c in sorted(columns)})
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(
            suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["doc_id"]}
        )
        for item in result.results:
            name = (item.expectation_config.meta or {}).get("name") or item.expectation_config.type
            problem = _exception_message(item.exception_info)
            if problem:
                report.errors.append(f"{name}: {problem}")
                continue
            if item.success:
                continue
            index = item.result.get("unexpected_index_list")
            if not index:
                report.batch_failures.append(name)
                continue
            docs = {entry["doc_id"] for entry in index}
            report.counts[name] = report.counts.get(name, 0) + len(docs)
            for doc in docs:
                failing.setdefault(doc, set()).add(name)
        report.results.append(_trimmed(result.to_json_dict()))


def _exception_message(info: Any) -> str | None:
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


def _trimmed(result: dict[str, Any]) -> dict[str, Any]:
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


# -- Data Docs -------------------------------------------------------------------------------------


def build_data_docs(
    validator: RecordValidator, results: Iterable[tuple[str, dict[str, Any]]], directory: str | Path
) -> str:
    """Write great-expectations Data Docs (index, one page per (run name, table), the suites) for
    stored results `[(run_name, result_json)]` into a local folder; returns the index path."""
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    directory = Path(directory).resolve()  # GE's site store refuses a relative base_directory
    directory.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="ephemeral")
    context.add_data_docs_site(
        site_name="ieflow",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(directory)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    for table in validator.tables:
        context.suites.add(validator.suite(table))
    loader = ExpectationSuiteValidationResultSchema()
    for run_name, stored in results:
        result = loader.load(stored)
        suite_name = result.suite_name
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
            run_id=RunIdentifier(run_name=run_name),
            batch_identifier=run_name,
        )
        context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=["ieflow"])
    return str(directory / "index.html")
