"""Facts about the data: where a gold value sits in a document and what the training data says
about each field, with no training value in them.

Small local proposal models copy what they are shown and drift when asked open questions, so the
grounding they get is computed here ("date is printed day-first in 6 of 6 documents") and names no
value; `excerpt` finds the document text around a value for the failure reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from ieflow.datasets import Example
from ieflow.formats import amount_printed, date_notation, suggest_date_format
from ieflow.program import ExtractionProgram
from ieflow.schema import field_schema, type_label, types_of

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


# -- values in records and documents ---------------------------------------------------------------


def values_at(record: Any, path: str) -> list[Any]:
    """The values at a field path (`lines[].name` gives one per item); lists are returned whole."""
    current: list[Any] = [record]
    for part in path.split("."):
        many = part.endswith("[]")
        key = part[:-2] if many else part
        nxt: list[Any] = []
        for value in current:
            if not isinstance(value, dict):
                continue
            child = value.get(key)
            if many and isinstance(child, list):
                nxt.extend(child)
            else:
                nxt.append(child)
        current = nxt
    return current


def leaf_values(record: Any) -> list[Any]:
    """Every scalar in a record, depth first (nulls left out)."""
    if isinstance(record, dict):
        return [v for value in record.values() for v in leaf_values(value)]
    if isinstance(record, list):
        return [v for value in record for v in leaf_values(value)]
    return [] if record is None else [record]


def field_kind(schema: dict[str, Any], path: str) -> str:
    """The field's type as proposal prompts show it ("string, YYYY-MM-DD")."""
    return type_label(field_schema(schema, path))


def value_renderings(value: Any) -> list[str]:
    """Ways a gold value may be printed in a document (dates in common notations, amounts)."""
    if value is None or value == [] or isinstance(value, dict):
        return []
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, int | float):
        out = [f"{value:,.2f}", f"{value:.2f}", str(value)]
        return list(dict.fromkeys(out))
    text = str(value).strip()
    renderings = [text]
    try:
        d = date.fromisoformat(text[:10])
    except ValueError:
        d = None
    if d is not None:
        dd, mm, yyyy, yy = f"{d.day:02d}", f"{d.month:02d}", f"{d.year}", f"{d.year % 100:02d}"
        mon = _MONTHS[d.month - 1]
        for sep in ("/", "-", "."):
            renderings += [
                f"{dd}{sep}{mm}{sep}{yyyy}",
                f"{dd}{sep}{mm}{sep}{yy}",
                f"{mm}{sep}{dd}{sep}{yyyy}",
            ]
            renderings += [f"{mm}{sep}{dd}{sep}{yy}"]
        renderings += [f"{d.day} {mon}", f"{mon} {d.day}", f"{dd} {mon}", f"{d.day}{mon.upper()}"]
    return renderings


def excerpt(text: str, value: Any, width: int = 70) -> str | None:
    """A window of the document around the first place `value` appears (case-insensitive)."""
    lowered = text.lower()
    for rendering in value_renderings(value):
        if len(rendering) < 2:
            continue
        at = lowered.find(rendering.lower())
        if at >= 0:
            start, end = max(0, at - width), min(len(text), at + len(rendering) + width)
            return " ".join(text[start:end].split())
    return None


# -- what the training data says per field ----------------------------------------------------


@dataclass(frozen=True)
class FieldFacts:
    """What the training data says about one field, with no value in it: rendered as text for the
    proposal prompts (`text`), and as a rule the student can follow (`rule`). One structure for
    both, so the rule never has to parse the text."""

    path: str
    n_documents: int
    absent: int | None = None  # documents with no value (None: not counted, as for lists)
    sizes: tuple[int, int] | None = None  # items per document, for a list
    notations: tuple[tuple[str, int], ...] = ()  # every date notation seen, most common first
    n_dates: int = 0
    date_unit: str = "documents"
    is_date: bool = False
    copied: tuple[int, int] | None = None  # (values printed verbatim in the document, values)
    amounts: tuple[int, int] | None = None  # number fields: (printed as two-decimal amounts, values)

    def phrases(self) -> list[str]:
        parts = self._absence() + self._shape()
        if self.copied:
            parts.append(f"printed in the document in {self.copied[0]} of {self.copied[1]} cases")
        return parts

    def text(self) -> str:
        """E.g. "printed day-first (DD/MM/YYYY) in 12 of 12 documents; answer as YYYY-MM-DD."."""
        parts = self.phrases()
        return "; ".join(parts) + "." if parts else ""

    def rule(self) -> str:
        """The facts that prescribe something, as a rule; "" if none does.

        Notations and sizes are kept as stated ("In these documents it is printed day-first ...");
        a verbatim-copy rate becomes "copy it as printed" only when most values are copies, and an
        absence rate becomes "answer null" only when absence is common. "Printed in 0 of 40 cases"
        is a fact for the reflection model, not an instruction: seen on sroie, a rule made of it
        won a 6-example minibatch by chance and cost a validation pass.
        """
        shape = self._shape()
        sentences = [f"In these documents it is {'; '.join(shape)}."] if shape else []
        if self.copied and self.copied[1] and self.copied[0] >= 0.8 * self.copied[1]:
            sentences.append("Copy it exactly as printed in the document.")
        if self.absent and self.absent >= 0.2 * self.n_documents:
            n = self.n_documents
            sentences.append(f"It is absent in {self.absent} of {n} documents: then answer null.")
        return " ".join(sentences)

    def _absence(self) -> list[str]:
        return [f"absent (null) in {self.absent} of {self.n_documents} documents"] if self.absent else []

    def _shape(self) -> list[str]:
        if self.sizes:
            return [f"{self.sizes[0]} to {self.sizes[1]} items per document"]
        if not self.is_date:
            return []
        of = f"of {self.n_dates} {self.date_unit}"
        printed = [f"printed {name} in {count} {of}" for name, count in self.notations[:2]]
        return [*printed, "answer as YYYY-MM-DD"]


def field_facts(program: ExtractionProgram, examples: list[Example]) -> list[FieldFacts]:
    """How gold values relate to the documents, per leaf field (absence, date notation, verbatim
    copies, list sizes). Patterns only: no value is quoted, so a proposer cannot leak one."""
    facts: list[FieldFacts] = []
    n = len(examples)
    for path in program.field_descriptions():
        node = field_schema(program.schema, path)
        kinds = types_of(node)
        if "object" in kinds and "properties" in node:
            continue  # its leaves have their own facts
        per_doc = [(ex, values_at(ex.gold, path)) for ex in examples]
        is_list = "array" in kinds and "[]" not in path
        absent = sum(1 for _, vs in per_doc if all(v in (None, "", []) for v in vs))
        fact = FieldFacts(path, n, absent=None if is_list else absent)
        if is_list:  # lists get a size range instead of an absence count
            sizes = [len(vs[0]) if vs and isinstance(vs[0], list) else 0 for _, vs in per_doc]
            fact = replace(fact, sizes=(min(sizes), max(sizes)) if sizes else (0, 0))
        elif node.get("format") == "date" or _looks_iso(per_doc):
            dates = [(ex, v) for ex, vs in per_doc for v in vs if isinstance(v, str) and v]
            notations: dict[str, int] = {}
            for ex, v in dates:
                if found := date_notation(ex.text, v):
                    notations[found] = notations.get(found, 0) + 1
            ranked = tuple(sorted(notations.items(), key=lambda kv: -kv[1]))
            fact = replace(
                fact,
                is_date=True,
                notations=ranked,
                n_dates=len(dates),
                date_unit="items" if "[]" in path else "documents",
            )
        elif {"string", "number", "integer"} & set(kinds):
            present = [(ex, v) for ex, vs in per_doc for v in vs if v not in (None, "", [])]
            if present:
                copies = sum(1 for ex, v in present if printed(ex.text, v))
                fact = replace(fact, copied=(copies, len(present)))
            if "number" in kinds and "string" not in kinds:
                numbers = [(ex, v) for ex, vs in per_doc for v in vs if isinstance(v, int | float)]
                fact = replace(
                    fact, amounts=(sum(1 for ex, v in numbers if amount_printed(ex.text, v)), len(numbers))
                )
        if fact.phrases():
            facts.append(fact)
    return facts


def data_summary(program: ExtractionProgram, examples: list[Example], limit: int = 8) -> list[str]:
    """`field_facts` as prompt lines: "- date: printed day-first (DD/MM/YYYY) in 6 of 6 documents; ..."."""
    return [f"- {fact.path}: {fact.text()}" for fact in field_facts(program, examples)][:limit]


def suggest_formats(program: ExtractionProgram, examples: list[Example]) -> dict[str, str]:
    """Output formats the training data supports, per field path (see ieflow/formats.py)."""
    return formats_from_facts(field_facts(program, examples))


def formats_from_facts(facts: Iterable[FieldFacts]) -> dict[str, str]:
    """A date field gets "date:day-first" when most documents print its date day-first, a number
    field "amount:printed" when at least 80% of its values are printed as two-decimal amounts."""
    out: dict[str, str] = {}
    for fact in facts:
        if fact.amounts and fact.amounts[1] and fact.amounts[0] >= 0.8 * fact.amounts[1]:
            out[fact.path] = "amount:printed"
        elif fact.is_date and (name := suggest_date_format(dict(fact.notations))):
            out[fact.path] = name
    return out


def _looks_iso(per_doc: list[tuple[Example, list[Any]]]) -> bool:
    values = [v for _, vs in per_doc for v in vs if isinstance(v, str) and v]
    return bool(values) and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) for v in values)


def printed(text: str, value: Any) -> bool:
    lowered = text.lower()
    return any(r.lower() in lowered for r in value_renderings(value) if r)


__all__ = [
    "FieldFacts",
    "data_summary",
    "excerpt",
    "field_facts",
    "field_kind",
    "formats_from_facts",
    "leaf_values",
    "printed",
    "suggest_formats",
    "value_renderings",
    "values_at",
]
