"""What happened to one document of a batch run: an `Outcome`, one `OutcomeKind` each.

An outcome is staged as one JSON line (`to_dict`/`from_dict`) until its shard is committed, then it
becomes a records row (kind `ok`, valid) or a quarantine row (everything else, with the reason).
An ok outcome carries its record's evidence (grounded in the shard, right after extraction) and
the model's per-field confidence, so a restart never grounds a staged document again.

Two times per document: `model_s` is the model calls' time as the trace sums it; `wall_s` is the
document's time in its shard, from the moment a worker took it up to its outcome (the calls,
waiting for them, and grounding).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from ieflow.grounding import Evidence

QUARANTINE_REASONS = ("validation_failed", "parse_error", "lm_error", "document_error", "prompt_leak")
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "cost_usd", "model_s", "wall_s", "calls")
# The critique-and-revise pass (`BatchSettings.revise_below`): whether its revision was kept, why,
# and what it cost on top of the extraction's own usage (all None: not tried).
REVISION_FIELDS = ("revised", "revise_reason", "revise_calls", "revise_tokens", "revise_cost_usd")


class OutcomeKind(StrEnum):
    """How a document's extraction ended; the value is what staged files and quarantine rows say."""

    OK = "ok"  # a record that parsed against the schema (validation still to come)
    INVALID = "invalid"  # JSON that breaks the schema: quarantined as validation_failed
    PARSE_ERROR = "parse_error"  # the answer is not JSON
    LM_ERROR = "lm_error"  # the model refused the request, or extraction raised unexpectedly
    TRANSIENT = "transient"  # the model was unavailable after every retry: tried again, never staged
    DOCUMENT_ERROR = "document_error"  # no usable text (ingest failed, empty, gone from the table)
    PROMPT_LEAK = "prompt_leak"  # a value repeats the extraction prompt (an obeyed injection)

    @property
    def quarantine_reason(self) -> str:
        """The reason a quarantine row gives for this kind (ok and invalid: failed validation)."""
        return "validation_failed" if self in (OutcomeKind.OK, OutcomeKind.INVALID) else self.value


@dataclass(frozen=True)
class Outcome:
    """One document's result. Usage is None where no model call was made (a document error, an
    unexpected exception), which the Parquet rows keep as nulls."""

    doc_id: str
    kind: OutcomeKind
    value: Any = None  # the record (ok), or the JSON the model gave (invalid)
    raw: str | None = None  # the model's answer, kept when it is not a record
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    model_s: float | None = None
    calls: int | None = None
    wall_s: float | None = None
    source_uri: str | None = None
    file_name: str | None = None
    evidence: tuple[Evidence, ...] = ()
    grounding_error: str | None = None  # grounding raised: the record is kept, without evidence
    field_confidence: dict[str, float | None] = field(default_factory=dict)  # leaf path -> 0-1
    confidence_note: str | None = None  # why a confidence is missing
    revised: bool | None = None
    revise_reason: str | None = None
    revise_calls: int | None = None
    revise_tokens: int | None = None
    revise_cost_usd: float | None = None

    @classmethod
    def from_extraction(cls, doc_id: str, record: Any, trace: Any) -> Outcome:
        """The outcome of `extraction.aextract`: ok | invalid | parse_error | lm_error | transient."""
        from ieflow.lm.structured import parse_json

        usage = {
            "prompt_tokens": trace.prompt_tokens,
            "completion_tokens": trace.completion_tokens,
            "cost_usd": trace.cost_usd,
            "model_s": trace.latency_s,
            "calls": trace.calls,
        }
        if record is not None:
            confidence = dict(getattr(trace, "field_confidence", None) or {})
            note = getattr(trace, "confidence_note", None)
            return cls(
                doc_id,
                OutcomeKind.OK,
                record,
                None,
                trace.error,
                **usage,
                field_confidence=confidence,
                confidence_note=note,
            )
        raw = trace.raw or None
        if trace.error_kind == "unavailable":
            return cls(doc_id, OutcomeKind.TRANSIENT, None, raw, trace.error, **usage)
        if trace.raw:
            try:
                value = parse_json(trace.raw)
            except ValueError:
                return cls(doc_id, OutcomeKind.PARSE_ERROR, None, raw, trace.error, **usage)
            return cls(doc_id, OutcomeKind.INVALID, value, raw, trace.error, **usage)
        return cls(doc_id, OutcomeKind.LM_ERROR, None, raw, trace.error, **usage)

    @classmethod
    def unexpected(cls, doc_id: str, exc: Exception) -> Outcome:
        """Extraction raised (a bug, which a retry would repeat): quarantined, not retried."""
        return cls(doc_id, OutcomeKind.LM_ERROR, error=f"unexpected {type(exc).__name__}: {exc}")

    @classmethod
    def document_error(cls, doc_id: str, problem: str) -> Outcome:
        return cls(doc_id, OutcomeKind.DOCUMENT_ERROR, error=problem)

    @property
    def staged(self) -> bool:
        """Whether the outcome is final for this run (a transient failure is redone instead)."""
        return self.kind is not OutcomeKind.TRANSIENT

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        """An outcome from `to_dict` (fields it lacks take their defaults, as in files staged
        without usage; `latency_s`, the name of `model_s` in files staged before it, is read too)."""
        if "latency_s" in data and "model_s" not in data:
            data = {**data, "model_s": data["latency_s"]}
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        evidence = tuple(Evidence(**row) for row in known.pop("evidence", None) or ())
        return cls(**{**known, "kind": OutcomeKind(data["kind"]), "evidence": evidence})


@dataclass(frozen=True)
class Quarantined:
    """An outcome that cannot be a record, and why: its reason, the expectations it failed and the
    problems found (the model client's and the typed columns')."""

    outcome: Outcome
    reason: str
    failed_expectations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
