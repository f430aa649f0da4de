"""Schema suggestion: a model reads a sample of documents and proposes the record's fields.

    suggestion = suggest_schema(documents, SuggestConfig(hints=("total", "date")))
    suggestion.schema     # a record JSON Schema, checked as a user's schema is (ieflow.schema)

Per document the model answers a plain field list (`ANSWER_SCHEMA`, enforced as the answer's
grammar where the provider supports it); an answer that is not usable is asked once more (a fresh
call at another seed), then recorded as a `ProposalFailure` with its reason. The lists are merged
and the JSON Schema is built in code (`ieflow.labelfree.fields`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ieflow import config
from ieflow.datasets import Example
from ieflow.labelfree._sync import run_sync
from ieflow.labelfree.fields import (
    PROPOSAL_TYPES,
    FieldProposal,
    MergedField,
    build_schema,
    merge_proposals,
    snake_case,
)
from ieflow.lm import LMClient, LMError
from ieflow.longdoc import head
from ieflow.program import ExtractionProgram
from ieflow.schema import load_schema

# Bounds on every list and text of the answer: the grammar then ends the answer in a few hundred
# tokens, where an unbounded one let a small model run on until max_tokens cut it (and a cut answer
# is asked again, twice the cost).
_NAME = {"type": "string", "maxLength": 40}
_TEXT = {"type": "string", "maxLength": 100}
_ITEM_FIELD = {
    "type": "object",
    "properties": {
        "name": _NAME,
        "type": {"type": "string", "enum": ["string", "number", "date"]},
        "description": _TEXT,
    },
    "required": ["name", "type", "description"],
}
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "fields": {
            "type": "array",
            "maxItems": 12,
            "items": {
                "type": "object",
                "properties": {
                    "name": _NAME,
                    "type": {"type": "string", "enum": list(PROPOSAL_TYPES)},
                    "description": _TEXT,
                    # anyOf, not a type list: llama.cpp's grammar drops maxLength from a type list
                    "example": {"anyOf": [{"type": "string", "maxLength": 60}, {"type": "null"}]},
                    "options": {"type": "array", "items": _NAME, "maxItems": 8},
                    "item_fields": {"type": "array", "items": _ITEM_FIELD, "maxItems": 8},
                },
                "required": ["name", "type", "description", "example"],
            },
        }
    },
    "required": ["fields"],
}
SYSTEM_PROMPT = (
    "You design data extraction schemas. Read the document and list the fields a data engineer "
    "would extract from every document of this kind (not values unique to this one). For each "
    "field give: name (snake_case), type (string, number, date, boolean, enum, or items for a "
    "table of line items), a one-sentence description of what the field holds, and the example "
    "value as printed in this document (null if absent). For enum, list the possible values in "
    "options. For items, list the columns of one line item in item_fields. Answer with JSON only."
)


@dataclass(frozen=True)
class SuggestConfig:
    model: str = config.DEFAULT_REFLECTION_MODEL
    hints: tuple[str, ...] = ()  # fields the user expects: the model is told to include them
    min_support: int | None = None  # documents that must propose a field; default: 2 (1 for one doc)
    max_document_tokens: int = 1200  # the start of each document the model reads
    max_answer_tokens: int = 1000  # above what the bounded answer grammar allows
    title: str = "Record"


@dataclass(frozen=True)
class ProposalFailure:
    doc_id: str
    reason: str


@dataclass
class SchemaSuggestion:
    schema: dict[str, Any]
    fields: list[MergedField]
    dropped: dict[str, int]  # fields proposed by too few documents, with their support
    failures: list[ProposalFailure] = field(default_factory=list)
    documents: int = 0  # documents whose proposals were merged


class SuggestionError(ValueError):
    """No usable schema came out of the documents (every answer failed, or no field is left)."""


def messages_for(text: str, hints: Sequence[str], model: str, max_tokens: int) -> list[dict[str, str]]:
    hint = ""
    if hints:
        hint = "The user expects at least these fields: " + ", ".join(hints) + ".\n\n"
    document = head(text, max_tokens, model)
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{hint}Document:\n{document}"},
    ]


def parse_answer(parsed: Any) -> tuple[list[FieldProposal], str | None]:
    """The usable proposals of one answer, or why there are none."""
    raw = parsed.get("fields") if isinstance(parsed, dict) else None
    if not isinstance(raw, list):
        return [], "the answer has no field list"
    proposals: dict[str, FieldProposal] = {}
    for item in raw:
        proposal = _proposal(item)
        if proposal is not None:
            proposals.setdefault(proposal.name, proposal)  # a name twice: the first wins
    if not proposals:
        return [], "the answer lists no usable field"
    return list(proposals.values()), None


def _proposal(item: Any, nested: bool = False) -> FieldProposal | None:
    if not isinstance(item, dict):
        return None
    name = snake_case(str(item.get("name") or ""))
    kind = item.get("type")
    if not name or kind not in PROPOSAL_TYPES or (nested and kind in ("enum", "items", "boolean")):
        return None
    example = item.get("example")
    options = tuple(str(o) for o in item.get("options") or () if isinstance(o, str | int | float))
    children = (
        ()
        if nested
        else tuple(p for p in (_proposal(sub, nested=True) for sub in item.get("item_fields") or ()) if p)
    )
    description = " ".join(str(item.get("description") or "").split())
    shown = None if example is None else str(example)
    return FieldProposal(name, kind, description, shown, options, children)


async def _ask(client: LMClient, doc: Example, cfg: SuggestConfig) -> list[FieldProposal] | ProposalFailure:
    """One document's proposals; a failed answer is asked once more (a fresh call at another
    seed, so the retry is not the cached failure), then recorded."""
    messages = messages_for(doc.text, cfg.hints, cfg.model, cfg.max_document_tokens)
    reason = ""
    for attempt in range(2):
        temperature = 0.0 if attempt == 0 else 0.3
        params = {"temperature": temperature, "seed": attempt, "max_tokens": cfg.max_answer_tokens}
        try:
            response = await client.acomplete_json(messages, ANSWER_SCHEMA, **params)
        except LMError as exc:
            reason = exc.reason
            continue
        proposals, problem = parse_answer(response.parsed)
        if problem is None:
            return proposals
        reason = problem
    return ProposalFailure(doc.doc_id, f"no usable answer after 2 tries: {reason}")


def suggest_schema(
    documents: Sequence[Example], cfg: SuggestConfig | None = None, lm: LMClient | None = None
) -> SchemaSuggestion:
    """A record JSON Schema proposed from `documents`, checked as a user's schema is.

    Raises SuggestionError when no document gave a usable answer or no field has enough support."""
    cfg = cfg or SuggestConfig()
    client = lm or LMClient(cfg.model)
    answers = run_sync(_ask_all(client, list(documents), cfg))
    per_doc = [a for a in answers if not isinstance(a, ProposalFailure)]
    failures = [a for a in answers if isinstance(a, ProposalFailure)]
    if not per_doc:
        shown = failures[0].reason if failures else "no documents"
        raise SuggestionError(f"no document gave a usable field list ({shown})")
    min_support = cfg.min_support or (2 if len(per_doc) > 1 else 1)
    fields, dropped = merge_proposals(per_doc, min(min_support, len(per_doc)))
    if not fields:
        raise SuggestionError(f"no field was proposed by {min_support} documents or more: {dropped}")
    suggested = {
        "model": cfg.model,
        "documents": len(per_doc),
        "support": {f.name: f.support for f in fields},
        "aliases": {f.name: list(f.aliases) for f in fields if f.aliases},
        "dropped": dropped,
        "failed": [{"doc_id": f.doc_id, "reason": f.reason} for f in failures],
    }
    schema = build_schema(fields, cfg.title, suggested)
    load_schema(schema)  # the checks a user's schema gets (metaschema, safety, object root)
    ExtractionProgram.from_schema(schema, model=cfg.model)  # and that a program can be built on it
    return SchemaSuggestion(schema, fields, dropped, failures, len(per_doc))


async def _ask_all(
    client: LMClient, documents: list[Example], cfg: SuggestConfig
) -> list[list[FieldProposal] | ProposalFailure]:
    return list(await asyncio.gather(*(_ask(client, doc, cfg) for doc in documents)))


def write_suggestion(suggestion: SchemaSuggestion, path: str | Path) -> None:
    """The schema as readable JSON (two-space indent, non-ASCII kept)."""
    text = json.dumps(suggestion.schema, indent=2, ensure_ascii=False) + "\n"
    Path(path).write_text(text, encoding="utf-8")
