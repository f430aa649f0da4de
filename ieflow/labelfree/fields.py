"""Field proposals merged across documents, and the JSON Schema built from them in code.

Small models cannot write a full JSON Schema, so each document yields a plain list of proposals
(`FieldProposal`: name, type, description, example); `merge_proposals` counts in how many documents
each field was proposed (names unified with rapidfuzz, so `invoice_no` and `invoice_number` are one
field), drops fields seen in fewer than `min_support` documents, and `build_schema` writes the JSON
Schema with its `x-ieflow-suggested` record of the support.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz

# The types a proposal may name; `items` is an array of objects (line items).
PROPOSAL_TYPES = ("string", "number", "date", "boolean", "enum", "items")
SUGGESTED_KEY = "x-ieflow-suggested"
_NAME_SIMILARITY = 85.0  # rapidfuzz ratio (0-100) at which two field names are the same field
_MAX_DESCRIPTION = 200
_MAX_OPTIONS = 12


@dataclass(frozen=True)
class FieldProposal:
    """One field a model proposed for one document."""

    name: str
    type: str
    description: str = ""
    example: str | None = None
    options: tuple[str, ...] = ()  # enum values
    item_fields: tuple[FieldProposal, ...] = ()  # the properties of each item of an `items` field


@dataclass
class MergedField:
    """A field after merging: the proposals of every document that named it."""

    name: str
    type: str
    description: str
    support: int  # documents that proposed it
    nullable: bool
    example: str | None = None
    options: tuple[str, ...] = ()
    item_fields: list[MergedField] = field(default_factory=list)
    aliases: tuple[str, ...] = ()  # other names it was proposed under


def snake_case(name: str) -> str:
    """`Invoice No.` -> `invoice_no`; `totalAmount` -> `total_amount`; '' when nothing is left."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    words = re.findall(r"[a-z0-9]+", spaced.lower())
    text = "_".join(words)
    return f"f_{text}" if text[:1].isdigit() else text


def _same_name(a: str, b: str) -> bool:
    return a == b or fuzz.ratio(a.replace("_", " "), b.replace("_", " ")) >= _NAME_SIMILARITY


def _clusters(per_document: list[list[FieldProposal]]) -> list[list[tuple[int, FieldProposal]]]:
    """Proposals grouped by field, each kept with the index of its document."""
    clusters: list[list[tuple[int, FieldProposal]]] = []
    for doc, proposals in enumerate(per_document):
        for proposal in proposals:
            home = next((c for c in clusters if _same_name(c[0][1].name, proposal.name)), None)
            if home is None:
                clusters.append([(doc, proposal)])
            else:
                home.append((doc, proposal))
    return clusters


def merge_proposals(
    per_document: list[list[FieldProposal]], min_support: int
) -> tuple[list[MergedField], dict[str, int]]:
    """(fields proposed in at least `min_support` documents, by support then first appearance;
    the dropped fields with their support)."""
    n_docs = len(per_document)
    kept: list[MergedField] = []
    dropped: dict[str, int] = {}
    for cluster in _clusters(per_document):
        merged = _merge_cluster(cluster, n_docs)
        if merged.support >= min_support:
            kept.append(merged)
        else:
            dropped[merged.name] = merged.support
    kept.sort(key=lambda f: -f.support)  # stable: ties keep the order the documents named them
    return kept, dropped


def _merge_cluster(cluster: list[tuple[int, FieldProposal]], n_docs: int) -> MergedField:
    proposals = [p for _, p in cluster]
    support = len({doc for doc, _ in cluster})
    names = Counter(p.name for p in proposals)
    name = names.most_common(1)[0][0]
    kind = Counter(p.type for p in proposals).most_common(1)[0][0]
    typed = [p for p in proposals if p.type == kind]
    # the longest description of the winning type says most; capped, it is prompt text
    description = max((p.description for p in typed), key=len, default="")[:_MAX_DESCRIPTION]
    example = next((p.example for p in typed if p.example), None)
    options: tuple[str, ...] = ()
    items: list[MergedField] = []
    if kind == "enum":
        options = tuple(dict.fromkeys(o for p in typed for o in p.options if o))[:_MAX_OPTIONS]
    if kind == "items":
        # item fields seen in at least half of the documents that proposed the list
        per_doc = [list(p.item_fields) for p in typed]
        items, _ = merge_proposals(per_doc, max(1, (len(per_doc) + 1) // 2))
        items = [_flat(item) for item in items]
    if kind == "enum" and not options:
        kind = "string"  # an enum without values constrains nothing
    if kind == "items" and not items:
        kind = "string"
    aliases = tuple(n for n in names if n != name)
    return MergedField(name, kind, description, support, support < n_docs, example, options, items, aliases)


def _flat(item: MergedField) -> MergedField:
    """An item's own field: scalars only (an item holding a list is kept as text)."""
    if item.type == "items":
        item.type, item.item_fields = "string", []
    item.nullable = True  # an item may lack any of its fields
    return item


def _scalar_node(merged: MergedField) -> dict[str, Any]:
    nullable = ["null"] if merged.nullable else []
    if merged.type == "date":
        node: dict[str, Any] = {"type": ["string", *nullable], "format": "date"}
    elif merged.type == "enum":
        node = {"type": ["string", *nullable], "enum": [*merged.options, *([None] if nullable else [])]}
    elif merged.type in ("number", "boolean"):
        node = {"type": [merged.type, *nullable]}
    else:
        node = {"type": ["string", *nullable]}
    if merged.description:
        node["description"] = merged.description
    return node


def _node(merged: MergedField) -> dict[str, Any]:
    if merged.type != "items":
        return _scalar_node(merged)
    properties = {item.name: _scalar_node(item) for item in merged.item_fields}
    node: dict[str, Any] = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        },
    }
    if merged.description:
        node["description"] = merged.description
    return node


def build_schema(fields: list[MergedField], title: str, suggested: dict[str, Any]) -> dict[str, Any]:
    """The record JSON Schema of the merged fields; `suggested` (support counts, the model, what
    was dropped or failed) is kept under `x-ieflow-suggested` for the person who edits the file."""
    properties = {f.name: _node(f) for f in fields}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        SUGGESTED_KEY: suggested,
    }
