"""ieflow.schema: loading, field paths, sub-schemas, validation, null records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from ieflow.schema import (
    SchemaError,
    field_paths,
    field_schema,
    is_nullable,
    kind_of,
    load_schema,
    null_record,
    validate_record,
)

DATASETS = Path("/work/shared/datasets")

NESTED = {
    "type": "object",
    "properties": {
        "date": {"type": ["string", "null"], "format": "date"},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "qty": {"type": "number"}},
            },
        },
        "party": {"type": "array", "items": {"type": "string"}},
        "total": {"type": ["number", "null"]},
    },
    "required": ["date"],
}


def test_field_paths_cover_top_level_and_nested_leaves() -> None:
    assert field_paths(NESTED) == [
        "date",
        "address",
        "address.city",
        "address.zip",
        "lines",
        "lines[].name",
        "lines[].qty",
        "party",
        "total",
    ]


def test_field_schema_follows_paths() -> None:
    assert field_schema(NESTED, "address.city") == {"type": "string"}
    assert field_schema(NESTED, "lines[].qty") == {"type": "number"}
    assert field_schema(NESTED, "lines[]")["type"] == "object"
    assert field_schema(NESTED, "date")["format"] == "date"
    with pytest.raises(KeyError, match="nope"):
        field_schema(NESTED, "address.nope")


def test_load_schema_rejects_invalid_schemas(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="invalid JSON Schema"):
        load_schema({"type": "object", "properties": {"a": {"type": "strin"}}})
    with pytest.raises(SchemaError, match="object with 'properties'"):
        load_schema({"type": "string"})
    bad = tmp_path / "schema.json"
    bad.write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        load_schema(bad)
    with pytest.raises(SchemaError, match="not found"):
        load_schema(tmp_path / "missing.json")


def test_load_schema_accepts_every_shared_dataset_and_pydantic_models() -> None:
    for schema_file in sorted(DATASETS.glob("*/schema.json")):
        schema = load_schema(schema_file)
        assert schema == json.loads(schema_file.read_text())

    class Line(BaseModel):
        name: str
        qty: float | None = None

    class Invoice(BaseModel):
        number: str | None
        lines: list[Line]

    schema = load_schema(Invoice)
    assert field_paths(schema) == ["number", "lines", "lines[].name", "lines[].qty"]
    assert "null" in field_schema(schema, "lines[].qty")["type"]


def test_validate_record_reports_readable_errors() -> None:
    assert validate_record(NESTED, {"date": "2018-03-01", "total": 3.5}) == []
    errors = validate_record(NESTED, {"date": "03/01/2018", "total": "$3", "lines": [{"qty": "x"}]})
    joined = "\n".join(errors)
    assert "date: '03/01/2018' is not a 'date'" in joined
    assert "total: '$3' is not of type 'number', 'null'" in joined
    assert "lines[0].qty" in joined
    assert validate_record(NESTED, {})[0].startswith("<record>: 'date' is a required property")


def test_null_record_is_valid_for_nullable_schemas() -> None:
    for schema_file in sorted(DATASETS.glob("*/schema.json")):
        schema = load_schema(schema_file)
        record = null_record(schema)
        assert set(record) == set(schema["properties"])
        # A record that extracts nothing claims nothing: a non-nullable flag (CUAD's 33 clause
        # booleans) stays None and is the only thing validation reports, one error per such field.
        not_nullable = sorted(
            name
            for name, node in schema["properties"].items()
            if not is_nullable(node) and kind_of(schema, node) == "scalar"
        )
        errors = validate_record(schema, record)
        assert [e.split(":")[0] for e in errors] == not_nullable
        assert all("None is not of type" in e for e in errors)
    assert null_record(NESTED) == {
        "date": None,
        "address": {"city": None, "zip": None},
        "lines": [],
        "party": [],
        "total": None,
    }
