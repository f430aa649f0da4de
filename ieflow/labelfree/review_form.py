"""The review form: a few drafts as one typed form a person fills in, and its answers read back.

Plain Pydantic, no Prefect: the label flow builds the form's model on Prefect's `RunInput`
(`review_model(form, base=RunInput)`), so the UI renders it when the run pauses. Per document the
form has an `accept` box and one input per top-level field, prefilled with the draft's value: typed
(text, number, checkbox) for a field of one scalar type, JSON text for arrays, objects and mixed
types. Fields are named by position (`d0_total`) because doc ids and field names need not be
identifiers; each input's title says which document and field it is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, create_model

from ieflow.labelfree.drafts import DraftRecord, LabelRow, human_row
from ieflow.labelfree.review_queue import problems_text
from ieflow.labels import check_label_row
from ieflow.schema import resolve, top_level_fields, types_of

_SCALARS: dict[str, type] = {"string": str, "number": float, "integer": int, "boolean": bool}


@dataclass(frozen=True)
class FormInput:
    """One input of the form: the accept box of a document, or one field of its record."""

    name: str  # the model's field name, e.g. d0_total
    doc_index: int
    field: str | None  # None: the accept box
    annotation: Any
    default: Any
    title: str
    as_json: bool = False  # the value is JSON text the person edits
    description: str | None = None  # why a person must look (the draft's problem), shown under the title


@dataclass(frozen=True)
class ReviewOutcome:
    labels: list[LabelRow]  # accepted and schema-valid: `human` rows
    kept: list[DraftRecord]  # not accepted, or not valid (the person's values kept, with the reason)


@dataclass(frozen=True)
class ReviewForm:
    drafts: list[DraftRecord]
    inputs: list[FormInput]
    description: str

    def outcome(self, answers: dict[str, Any], schema: dict[str, Any]) -> ReviewOutcome:
        """The answers (the submitted form as a dict) as human label rows and drafts left to review."""
        labels: list[LabelRow] = []
        kept: list[DraftRecord] = []
        for index, draft in enumerate(self.drafts):
            if not answers.get(f"d{index}_accept"):
                kept.append(draft)
                continue
            record, reason = self._record(index, draft, answers)
            if reason is None:
                row = {"doc_id": draft.doc_id, "record": record, "file": draft.file}
                _, checked, reason = check_label_row(row, schema, {})  # what the labels loader would refuse
            if reason is None:
                labels.append(human_row(draft, checked))
            else:
                reason = reason.replace("gold record", "reviewed record")
                kept.append(DraftRecord(draft.doc_id, record, draft.agreement, {"": reason}, draft.file))
        return ReviewOutcome(labels, kept)

    def _record(
        self, index: int, draft: DraftRecord, answers: dict[str, Any]
    ) -> tuple[dict[str, Any], str | None]:
        record = dict(draft.record)
        for item in self.inputs:
            if item.doc_index != index or item.field is None or item.name not in answers:
                continue
            value = answers[item.name]
            if item.as_json:
                try:
                    value = json.loads(value) if isinstance(value, str) and value.strip() else None
                except json.JSONDecodeError as exc:
                    return record, f"{item.field}: the value given is not JSON ({exc.msg})"
            record[item.field] = value
        return record, None


def _scalar_type(node: dict[str, Any]) -> tuple[type | None, bool]:
    """The Python type of a field of one scalar JSON type (None otherwise), and whether it is nullable."""
    kinds = types_of(node)
    nullable = "null" in kinds
    rest = [k for k in kinds if k != "null"]
    if len(rest) == 1 and rest[0] in _SCALARS and "enum" not in node:
        return _SCALARS[rest[0]], nullable
    return None, nullable


def _fits(value: Any, kind: type, nullable: bool) -> bool:
    if value is None:
        return nullable
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    return isinstance(value, int | float) if kind is float else isinstance(value, kind)


def _field_input(index: int, position: int, draft: DraftRecord, name: str, node: dict[str, Any]) -> FormInput:
    input_name, title = f"d{index}_f{position}_{_slug(name)}", f"{draft.doc_id} · {name}"
    value = draft.record.get(name)
    kind, nullable = _scalar_type(node)
    problem = draft.problems.get(name)
    if kind is not None and _fits(value, kind, nullable):
        annotation = kind | None if nullable else kind
        return FormInput(input_name, index, name, annotation, value, title, description=problem)
    text = json.dumps(value, ensure_ascii=False)  # a value of the wrong type shows as it is, to fix
    return FormInput(input_name, index, name, str, text, f"{title} (JSON)", True, problem)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:40]


def review_form(drafts: Sequence[DraftRecord], schema: dict[str, Any], heading: str = "") -> ReviewForm:
    """The form for a few drafts, with a markdown description naming each document and its problems."""
    props = resolve(schema, schema).get("properties", {})
    inputs: list[FormInput] = []
    lines = [f"### {heading or 'Review teacher drafts'}", "", _HOW_TO, ""]
    for index, draft in enumerate(drafts):
        where = f" (`{draft.file}`)" if draft.file else ""
        # One paragraph per document: the UI's markdown renderer did not show list items in a form.
        lines += [f"**{draft.doc_id}**{where}: {problems_text(draft.problems) or 'no problems found'}", ""]
        inputs += [
            _field_input(index, position, draft, name, resolve(schema, props[name]))
            for position, name in enumerate(top_level_fields(schema))
        ]
        title, problem = f"{draft.doc_id} · accept", draft.problems.get("")
        inputs.append(FormInput(f"d{index}_accept", index, None, bool, False, title, description=problem))
    return ReviewForm(list(drafts), inputs, "\n".join(lines).rstrip())


_HOW_TO = (
    "Correct the values below; tick **accept** for each document whose values are now right. "
    "Accepted documents become `human` labels; the others stay in review.jsonl."
)


def review_model(form: ReviewForm, base: type[BaseModel], name: str = "ReviewInput") -> type[BaseModel]:
    """A Pydantic model of the form, on `base` (the label flow passes Prefect's RunInput)."""
    fields: dict[str, Any] = {
        item.name: (item.annotation, Field(item.default, title=item.title, description=item.description))
        for item in form.inputs
    }
    return create_model(name, __base__=base, **fields)
