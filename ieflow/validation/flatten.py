"""Records into flat tables, the shape great-expectations validates.

The root table has one row per document, and every array gets a table of its own with one row per
item (`lines[]`, `lines[].taxes[]`, `tags[]`), each row keyed by `doc_id`, so a failing item names
its document. `P` holds the value only when its type is right, so range, format and length checks
never crash on a wrong type: a wrong type is reported once, by the type check on `raw:P`. A schema
`pattern` and a `format`'s regex are matched here, with RE2 (linear time), into `match:P` and
`format:P`: great-expectations would run them with Python's `re`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ieflow.schema import kind_of, resolve, types_of
from ieflow.schema_safety import compile_pattern
from ieflow.validation.expectations import FORMAT_REGEX, ROOT


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


def _matched(regex: str, value: Any, where: str) -> bool | None:
    """Whether `regex` is found in a string `value`, by RE2 in linear time (None for a non-string,
    which JSON Schema's `pattern` ignores)."""
    return compile_pattern(regex, where).search(value) is not None if isinstance(value, str) else None


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
        if isinstance(node.get("pattern"), str):
            row[f"match:{path}"] = _matched(node["pattern"], value, path)
        if node.get("format") in FORMAT_REGEX:
            row[f"format:{path}"] = _matched(FORMAT_REGEX[node["format"]], value, path)

    root = resolve(schema, schema)
    for doc_id, value in records.items():
        row: dict[str, Any] = {"doc_id": doc_id, "raw:": value}
        fill_object(value, root, "", row, doc_id)
        if not isinstance(value, dict):
            row["missing:"] = "the answer is not a JSON object"
        tables[ROOT].append(row)
    return tables
