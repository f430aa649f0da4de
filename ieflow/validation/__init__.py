"""Record validation with great-expectations: a suite generated from the JSON Schema, plus yours.

great-expectations validates flat tables, records are nested, so a batch of records is flattened
into tables first (see `flatten`): the root table has one row per document, and every array gets a
table of its own with one row per item (`lines[]`, `lines[].taxes[]`, `tags[]`), each row keyed by
`doc_id`, so a failing item names its document. Column names are field paths. Beside each field
`P` there are helper columns: `raw:P` (the value as the model gave it, for the type and not-null
checks), `len:P` (array lengths), `match:P` (the schema's `pattern`, matched with RE2), `missing:P`
/ `extra:P` (required keys absent / keys the schema does not allow, for the object at P;
`missing:` alone is the record itself). `P` holds the value only when its type is right, so range,
format and length checks never crash on a wrong type: a wrong type is reported once, by the type
check on `raw:P`. The type and not-null checks of all fields run as a few expectations on two long
tables, one row per (row, field), so a wide schema stays fast (see `fields`).

Modules: `expectations` (the suite from the schema, and the user's), `flatten` (records into
tables), `fields` (the type and not-null checks as long tables), `validator` (running
great-expectations, per-row failures) and `data_docs` (the HTML site, escaped).
"""

from ieflow.validation.data_docs import build_data_docs
from ieflow.validation.expectations import ROOT, ExpectationSpec, load_expectations, schema_expectations
from ieflow.validation.flatten import flatten
from ieflow.validation.validator import RecordValidator, ValidationReport

__all__ = [
    "ROOT",
    "ExpectationSpec",
    "RecordValidator",
    "ValidationReport",
    "build_data_docs",
    "flatten",
    "load_expectations",
    "schema_expectations",
]
