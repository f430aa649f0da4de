"""LongDocStrategy: how a program reads a document that does not fit, and how it groups fields.

Part of the program (saved in program.json, covered by its hash) and one component an optimizer can
change: the component named `strategy` (`STRATEGY`) is this dataclass as JSON, e.g.
`{"kind": "retrieve_merge", "chunk_tokens": 400, "top_k": 3, "fields_per_call": 10}`; a partial
object changes only the keys it names (`with_json`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["KINDS", "MERGE_RULES", "RETRIEVERS", "STRATEGY", "LongDocStrategy"]

STRATEGY = "strategy"  # the component name optimizers, diffs and `ExtractionProgram.replace` use
KINDS = ("truncate", "map_merge", "select", "retrieve_merge")
# "typed" merges by the field's type: majority for scalars (first on ties), union for lists, any
# for booleans; "any"/"all" are for boolean fields.
MERGE_RULES = ("first", "majority", "union", "typed", "any", "all")
# Fields added after programs were saved: left out of the JSON (and so of the hash) at their
# default, so an unchanged program keeps its hash and its prompts.
_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "fields_per_call": 0,
    "field_groups": [],
    "retriever": "bm25",
    "embedding_model": "",
    "embedding_api_base": "",
}
RETRIEVERS = ("bm25", "embedding")


@dataclass(frozen=True)
class LongDocStrategy:
    """What to do when a document does not fit `max_input_tokens`, the prompt's budget for document
    text: the demos shown before the document are counted against it too, so adding demos shortens
    what the program reads of a long document instead of overflowing the model's context.

    - `truncate`: keep the head of the document.
    - `map_merge`: extract from every chunk, then merge per field (`merge` is the default rule,
      see `MERGE_RULES`; `merge_rules` overrides per top-level field).
    - `select`: rank chunks per field with BM25 and extract once from the best ones, in order.
    - `retrieve_merge`: per field group, extract from each of its fields' `top_k` BM25 chunks
      separately and merge them by type (a clause flag is true if any passage says so).

    Retrieval (`select`, `retrieve_merge`): `retriever` "bm25" (the offline default) ranks chunks
    by BM25 against each field's name and description; "embedding" by cosine similarity of
    `embedding_model`'s vectors (any litellm embedding model, at `embedding_api_base` if given).

    Field grouping (any kind, any document length): `field_groups` lists groups of top-level field
    names, each read in its own call; fields in no group are grouped `fields_per_call` at a time in
    schema order (0: all of them in one call). The partial records are merged into one record.
    """

    kind: str = "select"
    max_input_tokens: int = 2000
    chunk_tokens: int = 500
    overlap_tokens: int = 50
    top_k: int = 2
    merge: str = "first"
    merge_rules: dict[str, str] = field(default_factory=dict)
    fields_per_call: int = 0
    field_groups: list[list[str]] = field(default_factory=list)
    retriever: str = "bm25"
    embedding_model: str = ""
    embedding_api_base: str = ""

    def __post_init__(self) -> None:
        if self.retriever not in RETRIEVERS:
            raise ValueError(f"unknown retriever {self.retriever!r} ({'|'.join(RETRIEVERS)})")
        if self.retriever == "embedding" and not self.embedding_model:
            raise ValueError("retriever 'embedding' needs embedding_model (a litellm embedding model name)")
        if self.kind not in KINDS:
            raise ValueError(f"unknown long-document strategy {self.kind!r} ({'|'.join(KINDS)})")
        for rule in [self.merge, *self.merge_rules.values()]:
            if rule not in MERGE_RULES:
                raise ValueError(f"unknown merge rule {rule!r} ({'|'.join(MERGE_RULES)})")
        if self.fields_per_call < 0:
            raise ValueError("fields_per_call must be 0 (all fields in one call) or more")
        named = [name for group in self.field_groups for name in group]
        if any(not group for group in self.field_groups) or len(named) != len(set(named)):
            raise ValueError("field_groups must be non-empty groups, each field in one group only")

    @property
    def groups_fields(self) -> bool:
        """Whether the program reads its fields in more than one call."""
        return bool(self.fields_per_call or self.field_groups)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (and the hashed content): optional fields only when set."""
        data = asdict(self)
        for name, default in _OPTIONAL_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return data

    def to_json(self) -> str:
        """The `strategy` component's text."""
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LongDocStrategy:
        """ValueError (one line) for unknown keys or bad values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown strategy keys {unknown} (known: {sorted(known)})")
        groups = [list(group) for group in data.get("field_groups", [])]
        return cls(**{**data, "field_groups": groups})

    def with_json(self, text: str) -> LongDocStrategy:
        """This strategy with the keys of the JSON object `text` changed; ValueError if it is not one."""
        try:
            changes = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"the strategy component is not JSON: {exc}") from None
        if not isinstance(changes, dict):
            raise ValueError("the strategy component must be a JSON object")
        return self.from_dict({**asdict(self), **changes})

    def check_fields(self, top_level: list[str]) -> None:
        """ValueError when a group names a field the schema does not have."""
        unknown = sorted({n for group in self.field_groups for n in group} - set(top_level))
        if unknown:
            raise ValueError(f"field_groups name unknown top-level fields {unknown}")
