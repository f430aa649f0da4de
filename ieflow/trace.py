"""Trace: what happened while one program read one document.

Filled in by `ieflow.extraction` as it runs a program, and read by batch extraction (usage, errors,
quarantine reasons) and by reflective optimizers (the messages and the raw answer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Trace"]


@dataclass
class Trace:
    """What happened during one extraction, kept for debugging and for reflective optimizers."""

    messages: list[dict[str, str]] = field(default_factory=list)
    raw: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    calls: int = 0
    cached: bool = False
    error: str | None = None
    # "unavailable": transient failures outlasted every retry (worth trying again later);
    # "request": the provider refused the request; "output": the answer was not a valid record
    error_kind: str | None = None
    strategy: str = "single"
    chunks_used: list[int] = field(default_factory=list)
    # field -> the chunk whose value a merge kept (see ieflow.merge); only for merged readings
    decided_by: dict[str, int] = field(default_factory=dict)
    # Each non-null leaf of the record (paths as ieflow.confidence names them) -> the model's
    # confidence in [0, 1], or None; `confidence_note` says why some or all have none.
    field_confidence: dict[str, float | None] = field(default_factory=dict)
    confidence_note: str | None = None
    # Set when the embedding retriever failed and BM25 chose the chunks instead (ieflow.extraction).
    retrieval_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not data["decided_by"]:
            del data["decided_by"]  # as traces were written before merges were traced
        if data["retrieval_note"] is None:
            del data["retrieval_note"]  # as traces were written before embedding retrieval
        return data
