"""What each test document cost and how it was read: calls, tokens, windows read, and every failure
with its reason (a context overflow, a head-only reading, an invalid answer).

The figures come from the extraction's own trace, taken while the test evaluation runs (the
Evaluator scores each document with its trace) and kept in an append-only JSONL file beside the test
ledger, so a resumed benchmark keeps them and a re-run over the ledger costs nothing.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ieflow.datasets import Example
from ieflow.lm import LMClient
from ieflow.optimize.evaluator import Budget, BudgetTracker, Evaluator, ExampleResult, Ledger
from ieflow.optimize.split_scoring import score_outside_budget
from ieflow.program import ExtractionProgram
from ieflow.scoring import Scorer
from ieflow.trace import Trace

# What llama.cpp (ieflow.lm.local) and litellm say when a prompt does not fit the model's context.
_OVERFLOW_MARKS = ("ContextWindowExceeded", "exceed context window")


@dataclass(frozen=True)
class DocTrace:
    """One program's reading of one document, as its extraction trace recorded it."""

    program: str
    doc_id: str
    strategy: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    windows_read: int
    error: str | None = None
    error_kind: str | None = None
    max_tokens: int | None = None  # the program's answer limit per call

    @classmethod
    def of(cls, program: ExtractionProgram, doc_id: str, trace: Trace) -> DocTrace:
        return cls(
            program=program.hash,
            doc_id=doc_id,
            strategy=trace.strategy,
            calls=trace.calls,
            prompt_tokens=trace.prompt_tokens,
            completion_tokens=trace.completion_tokens,
            windows_read=len(trace.chunks_used),
            error=trace.error,
            error_kind=trace.error_kind,
            max_tokens=program.model_params.get("max_tokens"),
        )

    @property
    def overflowed(self) -> bool:
        """The prompt did not fit the model's context window."""
        return any(mark in (self.error or "") for mark in _OVERFLOW_MARKS)

    @property
    def cut_off(self) -> bool:
        """A failed document whose every call used the whole answer limit: its answers were cut off
        (a document where only some calls were cut is not caught, the trace has no per-call counts)."""
        limit = self.max_tokens or 0
        return (
            bool(self.error) and limit > 0 and self.calls > 0 and self.completion_tokens >= self.calls * limit
        )

    @property
    def head_only(self) -> bool:
        """Only the head of the document was read (the `truncate` strategy cut the rest)."""
        return self.strategy == "truncate"


class TraceLog:
    """Append-only JSONL of DocTrace, one line per (program hash, doc_id); the last line wins."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._entries: dict[tuple[str, str], DocTrace] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = DocTrace(**json.loads(line))
                except (ValueError, TypeError):
                    continue  # a torn last line from a killed run
                self._entries[(entry.program, entry.doc_id)] = entry

    def get(self, program_hash: str, doc_id: str) -> DocTrace | None:
        return self._entries.get((program_hash, doc_id))

    def add(self, entry: DocTrace) -> None:
        with self._lock:
            self._entries[(entry.program, entry.doc_id)] = entry
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(asdict(entry), ensure_ascii=False) + "\n")


class TracingEvaluator(Evaluator):
    """An Evaluator that also keeps each scored document's DocTrace in `log`."""

    def __init__(self, scorer: Scorer, ledger: Ledger, log: TraceLog, client: LMClient | None = None) -> None:
        super().__init__(scorer, BudgetTracker(Budget(max_metric_calls=None)), ledger=ledger, client=client)
        self.log = log

    def score(
        self, example: Example, record: dict | None, trace: Any, program: ExtractionProgram | None = None
    ) -> ExampleResult:
        if program is not None:  # written before the ledger line: a re-run never lacks its trace
            self.log.add(DocTrace.of(program, example.doc_id, trace))
        return super().score(example, record, trace, program)


def score_test(
    program: ExtractionProgram,
    examples: list[Example],
    ledger_path: Path,
    traces_path: Path,
    client: LMClient | None = None,
) -> dict[str, Any]:
    """`score_outside_budget`'s figures for `program` on `examples`, plus `cost_summary`'s.

    Documents already in the ledger are not extracted again (and keep the trace they were
    scored with, if any)."""
    log = TraceLog(traces_path)
    evaluator = TracingEvaluator(Scorer(program.schema), Ledger(ledger_path), log, client)
    evaluator.evaluate(program, examples)
    scored = score_outside_budget(program, examples, ledger_path, client)  # all in the ledger: no calls
    return scored | cost_summary([log.get(program.hash, ex.doc_id) for ex in examples])


def cost_summary(traces: list[DocTrace | None]) -> dict[str, Any]:
    """Per-document calls and tokens and the failures, over the documents that have a trace;
    empty when none has (results measured before traces were kept)."""
    known = [t for t in traces if t is not None]
    if not known:
        return {}
    n = len(known)
    return {
        "traced_docs": n,
        "calls_per_doc": sum(t.calls for t in known) / n,
        "max_calls_per_doc": max(t.calls for t in known),
        "tokens_per_doc": sum(t.prompt_tokens + t.completion_tokens for t in known) / n,
        "windows_read_per_doc": sum(t.windows_read for t in known) / n,
        "readings": dict(Counter(t.strategy for t in known)),
        "context_overflow": sum(t.overflowed for t in known),
        "head_only": sum(t.head_only for t in known),
        "answer_cut_off": sum(t.cut_off for t in known),
        "failed": [{"doc_id": t.doc_id, "reason": t.error} for t in known if t.error],
    }
