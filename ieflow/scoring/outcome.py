"""What a comparator is told about a field (`FieldSpec`) and what it answers (`Outcome`).

An outcome's `kind` is None when correct, else one of the error kinds below, and `hint` is a short
clause saying what is wrong and how to fix it (feedback.py turns it into a sentence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

# Error kinds. The optimizers and the reflection prompts key on these names: keep them stable.
MISSING = "missing"  # gold has a value, the prediction has none
EXTRA = "extra"  # gold is null (absent from the document), the prediction has a value
FORMAT = "format"  # right value, wrong notation or JSON type
WRONG_VALUE = "wrong_value"  # a different number / date / item
WRONG_ENTITY = "wrong_entity"  # a string naming something else than the expected one
PARTIAL = "partial"  # the prediction is only part of the expected text
NEAR_MISS = "near_miss"  # almost the expected text: a typo or extra words around it
WRONG_COUNT = "wrong_count"  # a list with too many or too few items
INVALID = "invalid"  # not a value of the field's type at all (unparseable, not an allowed enum value)
ERROR_KINDS = (MISSING, EXTRA, FORMAT, WRONG_VALUE, WRONG_ENTITY, PARTIAL, NEAR_MISS, WRONG_COUNT, INVALID)


class Outcome(NamedTuple):
    score: float
    kind: str | None = None
    hint: str | None = None


CORRECT = Outcome(1.0)


@dataclass(slots=True)
class FieldSpec:
    """How one field is compared; built once per schema by `build_spec` (scorer.py)."""

    path: str
    kind: str  # "scalar" | "scalar_array" | "object" | "object_array"
    match: str = "exact"  # comparator name for scalars (and for the items of a scalar array)
    types: tuple[str, ...] = ()
    enum: tuple[Any, ...] | None = None
    format: str | None = None
    threshold: float = 0.85  # fuzzy similarity needed for a match
    abs_tol: float = 0.005  # numbers: |pred - gold| <= max(abs_tol, rel_tol * |gold|)
    rel_tol: float = 1e-9
    format_credit: float = 0.5
    children: dict[str, FieldSpec] = field(default_factory=dict)  # object / object_array properties
