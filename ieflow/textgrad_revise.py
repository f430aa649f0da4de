"""TextGrad's instance-level use: critique one document's extracted record, then revise it.

TextGrad (Yuksekgonul et al., 2024) also optimizes a single answer at test time: the answer is the
variable, a critique of it is the textual gradient, and the update rewrites the answer. Here the
answer is one extracted record: a first call asks the model to check the record against the
document text and say what is wrong (the critique); when it names a problem, a second call shows
the extraction prompt, the model's own answer and the critique, and asks for the corrected record.

The revision is kept only when it is valid for the schema and every value it adds or changes is
found in the document (`ieflow.grounding`), so a critique cannot talk the model into an invented
value. The extra calls and tokens are counted on the `Revision`, so the cost is shown beside the
record. Meant for the records the model was unsure of (`needs_revision`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from dataclasses import dataclass
from typing import Any

from ieflow.formats import convert_record, render_record
from ieflow.grounding import DocumentIndex, ground_record, leaf_values
from ieflow.lm import LMClient, LMError, StructuredOutputError
from ieflow.lm.client import LMResponse
from ieflow.longdoc import document_view
from ieflow.program import ExtractionProgram
from ieflow.schema import validate_record
from ieflow.trace import Trace

CRITIC_SYSTEM = "You check a JSON record extracted from a document. Reply with the problems only."
NOTHING_TO_FIX = "no problem found"
KEPT = "kept"


@dataclass(frozen=True)
class Revision:
    """The record after the critique-and-revise pass, and what the pass cost.

    `record` is the revision when `revised` is true, else the original; `reason` says why
    ("kept", "no problem found", "not schema-valid: ...", "ungrounded: ...", "no change", a model
    error); `proposed` is the revision the model wrote, kept or not."""

    record: dict[str, Any] | None
    revised: bool
    reason: str
    critique: str
    proposed: dict[str, Any] | None
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class _Spent:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, response: LMResponse) -> None:
        self.calls += 1
        self.prompt_tokens += response.prompt_tokens
        self.completion_tokens += response.completion_tokens
        self.cost_usd += response.cost_usd


def needs_revision(trace: Trace, below: float) -> bool:
    """Whether a record's least confident value is under `below`. A record whose values have no
    confidence at all (the model returned no log-probabilities) is not revised: nothing says it
    is weak."""
    known = [c for c in trace.field_confidence.values() if c is not None]
    return bool(known) and min(known) < below


def critique_messages(program: ExtractionProgram, document: str, shown: Any) -> list[dict[str, str]]:
    fields = [f"- {path}: {text.strip()}".rstrip(": ") for path, text in program.field_descriptions().items()]
    prompt = [
        f"Document:\n{document}",
        "",
        "Fields:",
        *fields,
        "",
        f"Extracted record: {json.dumps(shown, ensure_ascii=False)}",
        "",
        "For each field whose value is wrong or missing, write one line: the field, what is wrong, and "
        "what the document prints. If every value is right, reply OK.",
    ]
    return [{"role": "system", "content": CRITIC_SYSTEM}, {"role": "user", "content": "\n".join(prompt)}]


def revise_messages(
    program: ExtractionProgram, document: str, shown: Any, critique: str
) -> list[dict[str, str]]:
    """The extraction prompt, the model's own answer, and the critique as the next turn."""
    request = (
        f"A reviewer found these problems in your answer:\n{critique}\n\n"
        "Answer again with the corrected JSON object. Copy each value as the document prints it; "
        "keep a value where the reviewer is wrong."
    )
    answer = {"role": "assistant", "content": json.dumps(shown, ensure_ascii=False)}
    return [*program.messages(document), answer, {"role": "user", "content": request}]


def says_nothing_is_wrong(critique: str) -> bool:
    words = critique.strip().strip(".!").lower().split()
    return not words or (words[0] in ("ok", "okay", "correct") and len(words) <= 3)


def revise_record(
    program: ExtractionProgram,
    text: str,
    record: dict[str, Any],
    client: LMClient,
    *,
    page_offsets: list[int] | None = None,
    max_tokens: int = 1500,
) -> Revision:
    """Critique `record` against the document `text`, revise it, keep the revision only when it is
    schema-valid and grounded. Never raises for model failures: they are the `reason`.

    Sync entry point of `arevise_record`; safe to call from inside a running event loop."""
    coroutine = arevise_record(
        program, text, record, client, page_offsets=page_offsets, max_tokens=max_tokens
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def arevise_record(
    program: ExtractionProgram,
    text: str,
    record: dict[str, Any],
    client: LMClient,
    *,
    page_offsets: list[int] | None = None,
    max_tokens: int = 1500,
) -> Revision:
    """Async twin of `revise_record` (the batch run's model calls share one event loop)."""
    spent = _Spent()
    document, _ = document_view(program, text, max_tokens)
    shown = render_record(record, program.formats, document)

    def unchanged(reason: str, critique: str = "", proposed: Any = None) -> Revision:
        return Revision(record, False, reason, critique, proposed, **vars(spent))

    try:
        response = await client.acomplete(critique_messages(program, document, shown), **program.model_params)
    except LMError as exc:
        return unchanged(f"critique failed: {exc.reason}")
    spent.add(response)
    critique = " ".join(response.text.split())
    if says_nothing_is_wrong(critique):
        return unchanged(NOTHING_TO_FIX, critique)
    messages = revise_messages(program, document, shown, critique)
    try:
        answer = await client.acomplete_json(
            messages, program.response_schema(document), **program.model_params
        )
    except StructuredOutputError as exc:
        for extra in exc.responses:
            spent.add(extra)
        return unchanged(f"not schema-valid: {exc.reason}", critique)
    except LMError as exc:
        return unchanged(f"revision failed: {exc.reason}", critique)
    spent.add(answer)
    proposed = convert_record(answer.parsed, program.formats)
    reason = check_revision(program, record, proposed, DocumentIndex(text, page_offsets or []))
    if reason != KEPT:
        return unchanged(reason, critique, proposed)
    return Revision(proposed, True, KEPT, critique, proposed, **vars(spent))


def check_revision(
    program: ExtractionProgram, original: dict[str, Any], proposed: Any, index: DocumentIndex
) -> str:
    """KEPT, or why the revision must not replace the original."""
    if not isinstance(proposed, dict):
        return "not schema-valid: the answer is not a JSON object"
    problems = validate_record(program.schema, proposed)
    if problems:
        return f"not schema-valid: {problems[0]}"
    before = {path: value for path, _, value in leaf_values(original, program.schema)}
    changed = {path for path, _, value in leaf_values(proposed, program.schema) if before.get(path) != value}
    if not changed and proposed == original:
        return "no change"
    evidence = [
        e for e in ground_record(proposed, index, program.schema, program.formats) if e.path in changed
    ]
    missing = [e for e in evidence if not (e.grounded or e.method == "derived")]
    if missing:
        shown = ", ".join(f"{e.path}={e.value!r}" for e in missing[:3])
        return f"ungrounded: {shown} not found in the document"
    return KEPT


__all__ = ["Revision", "arevise_record", "check_revision", "needs_revision", "revise_record"]
