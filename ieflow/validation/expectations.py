"""The expectation suite: generated from the JSON Schema, plus the user's own from a JSON file.

Columns are field paths of the flattened tables (see `ieflow.validation.flatten`): a field's value
`P`, and beside it `raw:P` (type and not-null checks), `len:P` (array lengths), `match:P` and
`format:P` (whether a string matches the schema's `pattern` or its format's regex, found with RE2),
`missing:P` / `extra:P` (required keys absent / keys the schema does not allow, for the object at P).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ieflow.schema import is_nullable, kind_of, resolve, types_of
from ieflow.schema_safety import compile_pattern

ROOT = ""  # the table with one row per record; an array's table is named by its path, e.g. `lines[]`
PY_TYPES = {
    "string": ["str"],
    "number": ["int", "float"],
    "integer": ["int"],
    "boolean": ["bool"],
    "array": ["list"],
    "object": ["dict"],
}
_DATE = r"^\d{4}-\d{2}-\d{2}$"
FORMAT_REGEX = {
    "date": _DATE,
    "date-time": r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$",
    "email": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    "uri": r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$",
}


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


# -- the suite from a JSON Schema -----------------------------------------------------------------


def schema_expectations(schema: dict[str, Any]) -> list[ExpectationSpec]:
    """Expectations implied by the schema: types, required and non-null, enums, formats, patterns,
    string lengths, numeric ranges, array lengths and (with additionalProperties false) no extras."""
    builder = _SchemaSuite(schema)
    builder.walk_object(resolve(schema, schema), "", ROOT, True)
    return builder.specs


class _SchemaSuite:
    """Walks the schema once, collecting the expectations of every object, field and array."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.specs: list[ExpectationSpec] = []

    def add(self, kind: str, column: str, table: str, **kwargs: Any) -> None:
        self.specs.append(ExpectationSpec(f"{kind}({column})", kind, {"column": column, **kwargs}, table))

    def add_match(self, path: str, column: str, table: str, detail: str = "") -> None:
        """A regex check: flatten matched it with RE2 into `column`, and GE checks that column; the
        name is the one quarantine rows have always listed."""
        kind = "expect_column_values_to_match_regex"
        name = f"{kind}({path}, {detail})" if detail else f"{kind}({path})"
        kwargs = {"column": column, "value_set": [True]}
        self.specs.append(ExpectationSpec(name, "expect_column_values_to_be_in_set", kwargs, table))

    def walk_object(self, node: dict[str, Any], prefix: str, table: str, always: bool) -> None:
        # `always`: this object is present in every row of `table` (so required children are too)
        where = prefix.removesuffix(".")
        if node.get("required"):
            self.add("expect_column_values_to_be_null", f"missing:{where}", table)
        if node.get("additionalProperties") is False:
            self.add("expect_column_values_to_be_null", f"extra:{where}", table)
        required = set(node.get("required") or [])
        for name, sub in (node.get("properties") or {}).items():
            self.walk_field(resolve(self.schema, sub), f"{prefix}{name}", table, always and name in required)

    def walk_field(self, node: dict[str, Any], path: str, table: str, present: bool) -> None:
        kinds = [t for t in types_of(node) if t != "null"]
        non_null = present and not is_nullable(node)
        py_types = sorted({p for k in kinds for p in PY_TYPES.get(k, [])})
        if py_types:
            self.add("expect_column_values_to_be_in_type_list", f"raw:{path}", table, type_list=py_types)
        if non_null:
            self.add("expect_column_values_to_not_be_null", f"raw:{path}", table)
        kind = kind_of(self.schema, node)
        if kind == "object":
            self.walk_object(node, f"{path}.", table, non_null)
        elif kind in ("scalar_array", "object_array"):
            self.walk_array(node, kind, path, table)
        else:
            self.add_value_checks(node, path, table)

    def walk_array(self, node: dict[str, Any], kind: str, path: str, table: str) -> None:
        low, high = node.get("minItems"), node.get("maxItems")
        if low is not None or high is not None:
            self.add(
                "expect_column_values_to_be_between", f"len:{path}", table, min_value=low, max_value=high
            )
        items = resolve(self.schema, node["items"]) if isinstance(node.get("items"), dict) else {}
        if kind == "object_array":
            self.add(
                "expect_column_values_to_be_in_type_list", f"raw:{path}[]", f"{path}[]", type_list=["dict"]
            )
            self.walk_object(items, f"{path}[].", f"{path}[]", True)
        elif items:
            self.walk_field(items, f"{path}[]", f"{path}[]", True)

    def add_value_checks(self, node: dict[str, Any], path: str, table: str) -> None:
        values = [v for v in node.get("enum", []) if v is not None]
        if "const" in node:
            values = [node["const"]]
        if values:
            self.add("expect_column_values_to_be_in_set", path, table, value_set=values)
        fmt = node.get("format")
        if fmt in FORMAT_REGEX:  # matched with RE2 by flatten (the email regex backtracks in `re`)
            self.add_match(path, f"format:{path}", table)
        if fmt == "date":  # the regex checks the shape, strptime the calendar (no 2024-02-30)
            self.add("expect_column_values_to_match_strftime_format", path, table, strftime_format="%Y-%m-%d")
        if isinstance(node.get("pattern"), str):
            # A stranger's regex: GE would run it with Python's `re`, hours on `^(a+)+$`.
            compile_pattern(node["pattern"], path)  # refused here, not mid-batch, if RE2 cannot run it
            self.add_match(path, f"match:{path}", table, "pattern")
        if "minLength" in node or "maxLength" in node:
            self.add(
                "expect_column_value_lengths_to_be_between",
                path,
                table,
                min_value=node.get("minLength"),
                max_value=node.get("maxLength"),
            )
        self.add_range_check(node, path, table)

    def add_range_check(self, node: dict[str, Any], path: str, table: str) -> None:
        bounds = {"min_value": node.get("minimum"), "max_value": node.get("maximum")}
        if "exclusiveMinimum" in node:
            bounds.update(min_value=node["exclusiveMinimum"], strict_min=True)
        if "exclusiveMaximum" in node:
            bounds.update(max_value=node["exclusiveMaximum"], strict_max=True)
        if bounds["min_value"] is not None or bounds["max_value"] is not None:
            self.add("expect_column_values_to_be_between", path, table, **bounds)


# -- the user's expectations ----------------------------------------------------------------------


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
