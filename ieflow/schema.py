"""JSON Schema helpers shared by the whole library.

A record schema is a JSON Schema whose top level is an object with `properties`. Fields are named by
paths: top-level `date`, nested object `address.city`, array of objects `lines[].name`; an array of
scalars is a single field (`party`). Pydantic's `Optional[...]` (an `anyOf` with a null branch) and
local `$ref`s into `$defs` are understood, so `Model.model_json_schema()` works as a record schema.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError as _JsonSchemaError

from ieflow.errors import SchemaError  # defined with the other user errors; importable here too
from ieflow.schema_safety import UnsafeSchemaError, check_untrusted, make_validator

SCALAR_TYPES = ("string", "number", "integer", "boolean")


def load_schema(source: str | Path | dict[str, Any] | type) -> dict[str, Any]:
    """Load a record schema from a path, a dict or a Pydantic model class, and check it.

    Raises `SchemaError` with the reason when the document is not valid JSON, not a valid JSON Schema
    (metaschema check of its declared draft, 2020-12 by default) or not an object schema with properties.
    """
    if isinstance(source, type) and hasattr(source, "model_json_schema"):
        schema: Any = source.model_json_schema()
    elif isinstance(source, dict):
        schema = source
    elif isinstance(source, str | Path):
        path = Path(source)
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SchemaError(f"schema file not found: {path}") from exc
        except json.JSONDecodeError as exc:
            raise SchemaError(f"schema file {path} is not valid JSON: {exc}") from exc
    else:
        raise SchemaError(f"cannot load a schema from {type(source).__name__}")
    if not isinstance(schema, dict):
        raise SchemaError(f"a schema must be a JSON object, got {type(schema).__name__}")
    validator_cls = jsonschema.validators.validator_for(schema, default=Draft202012Validator)
    try:
        validator_cls.check_schema(schema)
    except _JsonSchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "<root>"
        raise SchemaError(f"invalid JSON Schema at {where}: {exc.message}") from exc
    except RecursionError:
        raise SchemaError("the schema is nested too deeply to check") from None
    try:
        check_untrusted(schema)  # schemas come from strangers: nothing fetched, looped or hung on
    except UnsafeSchemaError as exc:
        raise SchemaError(str(exc)) from None
    root = resolve(schema, schema)
    if "object" not in types_of(root) or not isinstance(root.get("properties"), dict):
        raise SchemaError("a record schema must be an object with 'properties' at the top level")
    return schema


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow local `$ref`s (`#/$defs/X`, `#/definitions/X`) and drop a nullable `anyOf` wrapper.

    `anyOf: [X, {"type": "null"}]` becomes X with "null" added to its types, so callers see one schema.
    """
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise SchemaError(f"only local $ref values are supported, got {ref!r}")
        target: Any = schema
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise SchemaError(f"$ref {ref!r} does not resolve")
            target = target[part]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **extra}
        seen += 1
        if seen > 32:
            raise SchemaError(f"$ref chain too deep (cycle?) at {ref!r}")
    for key in ("anyOf", "oneOf"):
        branches = node.get(key) if isinstance(node, dict) else None
        if isinstance(branches, list):
            non_null = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            if len(non_null) == 1 and len(branches) == 2:
                inner = resolve(schema, non_null[0])
                rest = {k: v for k, v in node.items() if k != key}
                merged = {**inner, **rest}
                merged["type"] = [*types_of(inner), "null"]
                return merged
    return node


def types_of(node: dict[str, Any]) -> list[str]:
    """The node's JSON types as a list (`"type": "x"` and `"type": [...]` alike); inferred if absent."""
    declared = node.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    if "properties" in node:
        return ["object"]
    if "items" in node:
        return ["array"]
    if "enum" in node:
        kinds = {type(v).__name__ for v in node["enum"]}
        return ["string"] if kinds <= {"str"} else []
    return []


def type_label(node: dict[str, Any], *, empty: str = "value", detail: bool = False) -> str:
    """A field's type as prompts show it: "number or string, YYYY-MM-DD"; with `detail`, also its
    enum values and ", or null" when it is nullable."""
    kinds = [t for t in types_of(node) if t != "null"]
    label = " or ".join(kinds) or empty
    if node.get("format") == "date":
        label += ", YYYY-MM-DD"
    if detail and "enum" in node:
        label += ", one of " + ", ".join(json.dumps(v) for v in node["enum"] if v is not None)
    if detail and "null" in types_of(node):
        label += ", or null"
    return label


def is_nullable(node: dict[str, Any]) -> bool:
    return "null" in types_of(node) or (isinstance(node.get("enum"), list) and None in node["enum"])


def kind_of(schema: dict[str, Any], node: dict[str, Any]) -> str:
    """Classify a (resolved) node: 'object', 'object_array', 'scalar_array' or 'scalar'."""
    node = resolve(schema, node)
    kinds = types_of(node)
    if "object" in kinds and isinstance(node.get("properties"), dict):
        return "object"
    if "array" in kinds:
        items = node.get("items")
        if isinstance(items, dict):
            items = resolve(schema, items)
            if "object" in types_of(items) and isinstance(items.get("properties"), dict):
                return "object_array"
        return "scalar_array"
    return "scalar"


def _properties(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    node = resolve(schema, node)
    if kind_of(schema, node) == "object_array":
        node = resolve(schema, node["items"])
    props = node.get("properties")
    return props if isinstance(props, dict) else {}


def field_paths(schema: dict[str, Any]) -> list[str]:
    """Every top-level field path plus every nested leaf path, in schema order.

    `{"date", "address": {city}, "lines": [{name}], "party": [str]}` gives
    `["date", "address", "address.city", "lines", "lines[].name", "party"]`.
    """
    out: list[str] = []

    def walk(node: dict[str, Any], prefix: str, top: bool) -> None:
        for name, sub in _properties(schema, node).items():
            path = f"{prefix}{name}"
            kind = kind_of(schema, sub)
            if top or kind not in ("object", "object_array"):
                out.append(path)
            if kind == "object":
                walk(sub, f"{path}.", top=False)
            elif kind == "object_array":
                walk(sub, f"{path}[].", top=False)

    walk(schema, "", top=True)
    return out


def top_level_fields(schema: dict[str, Any]) -> list[str]:
    return list(_properties(schema, schema))


def field_schema(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """The (resolved) sub-schema of a field path; `lines[]` is the item schema of `lines`.

    Raises KeyError naming the missing segment.
    """
    node = resolve(schema, schema)
    for segment in path.split("."):
        is_items = segment.endswith("[]")
        name = segment[:-2] if is_items else segment
        props = resolve(schema, node).get("properties")
        if not isinstance(props, dict) or name not in props:
            raise KeyError(f"field path {path!r}: no property {name!r}")
        node = resolve(schema, props[name])
        if is_items:
            items = node.get("items")
            if not isinstance(items, dict):
                raise KeyError(f"field path {path!r}: {name!r} is not an array with an item schema")
            node = resolve(schema, items)
    return node


# Validators are reused: building one costs far more than a validation of a small record.
_VALIDATORS: OrderedDict[str, jsonschema.protocols.Validator] = OrderedDict()
_VALIDATORS_LOCK = threading.Lock()  # evaluators validate from worker threads


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    key = json.dumps(schema, sort_keys=True, default=str)
    with _VALIDATORS_LOCK:
        validator = _VALIDATORS.get(key)
        if validator is None:
            validator = make_validator(schema)
            _VALIDATORS[key] = validator
            if len(_VALIDATORS) > 64:
                _VALIDATORS.popitem(last=False)
        else:
            _VALIDATORS.move_to_end(key)
    return validator


def validate_record(schema: dict[str, Any], record: Any) -> list[str]:
    """Human-readable validation errors ('flight_from: '03/01/2020' is not a 'date''), [] if valid."""
    errors = []
    for error in _validator(schema).iter_errors(record):
        where = _error_path(error.absolute_path)
        errors.append(f"{where}: {error.message}")
    return sorted(errors)


def _error_path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<record>"


def null_record(schema: dict[str, Any]) -> dict[str, Any]:
    """A record that extracts nothing: arrays empty, nested required objects recursed, the rest null."""

    def build(node: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for name, sub in _properties(schema, node).items():
            kind = kind_of(schema, sub)
            resolved = resolve(schema, sub)
            if kind in ("scalar_array", "object_array"):
                record[name] = None if is_nullable(resolved) else []
            elif kind == "object" and not is_nullable(resolved):
                record[name] = build(resolved)
            else:
                record[name] = None
        return record

    return build(schema)
