"""Running an ExtractionProgram on one document: one way down, nothing calls back up.

    aextract(program, text)
      -> longdoc.plan_reading      which part(s) of the document the program reads
      -> program.messages / .response_schema   the prompt and the grammar (plain data)
      -> LMClient.acomplete_json   the model call, parsed and checked against the schema
      -> formats.convert_record    values copied as printed, converted to the schema's form
      -> Trace                     what happened, for batch outcomes and reflective optimizers

`map_merge` runs the same step on every chunk and merges the records (`longdoc.merge_records`).
The async path is the one implementation; the sync entry point drives it, so both behave alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from typing import Any

from ieflow.confidence import confidence_by_leaf, merged_confidence
from ieflow.formats import convert_record
from ieflow.lm import LMClient, LMError, LMUnavailableError, StructuredOutputError
from ieflow.lm.embeddings import shared_embedder
from ieflow.lm.pool import ClientSpec, shared_client
from ieflow.longdoc import (  # re-exported: their home was this module
    Reading,
    count_tokens,
    demo_tokens,
    document_budget,
    document_view,
    head,
    merge_records,
    merge_with_sources,
    plan_reading,
    select_chunks,
    split_windows,
)
from ieflow.program import ExtractionProgram
from ieflow.schema import validate_record
from ieflow.trace import Trace

__all__ = [
    "aextract",
    "count_tokens",
    "default_client",
    "demo_tokens",
    "document_budget",
    "document_view",
    "extract",
    "head",
    "leaked_prompt",
    "merge_records",
    "select_chunks",
    "split_windows",
]


def default_client(program: ExtractionProgram) -> LMClient:
    """The pool's plain client of the program's model and parameters (shared by every caller in
    the process, so usage totals and limits are per model)."""
    return shared_client(ClientSpec(program.model, program.model_params))


def extract(
    program: ExtractionProgram, text: str, client: LMClient | None = None
) -> tuple[dict | None, Trace]:
    """Extract one record. Never raises for model failures: they land in `trace.error`.

    Sync entry point; safe to call from inside a running event loop (runs in a worker thread)."""
    coroutine = aextract(program, text, client)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def aextract(
    program: ExtractionProgram, text: str, client: LMClient | None = None
) -> tuple[dict | None, Trace]:
    """Async twin of `extract`; `client` defaults to the pool's client of the program's model."""
    client = client or default_client(program)
    reading, retrieval_note = await _plan(program, text)
    if reading.groups:
        record, trace = await _read_groups(program, reading, client)
    elif reading.strategy == "map_merge":
        record, trace = await _map_merge(program, reading.parts, client)
    else:
        trace = Trace(strategy=reading.strategy, chunks_used=reading.chunks_used)
        record, trace = await _extract_once(program, reading.parts[0], client, trace)
    trace.retrieval_note = retrieval_note
    return record, trace


async def _plan(program: ExtractionProgram, text: str) -> tuple[Reading, str | None]:
    """The reading, and a note when the embedding retriever failed and BM25 read instead (the
    document is still read: a retrieval outage must not lose it)."""
    strategy = program.strategy
    if strategy.retriever != "embedding":
        return plan_reading(program, text), None
    embedder = shared_embedder(strategy.embedding_model, strategy.embedding_api_base or None)
    try:
        return await asyncio.to_thread(plan_reading, program, text, embedder.embed), None
    except LMError as exc:
        bm25 = program.replace(strategy=dataclasses.replace(strategy, retriever="bm25"))
        return plan_reading(bm25, text), f"embedding retrieval failed, BM25 used instead: {exc.reason}"


async def _extract_once(
    program: ExtractionProgram, text: str, client: LMClient, trace: Trace
) -> tuple[dict | None, Trace]:
    messages = program.messages(text)
    trace.messages = messages
    try:
        schema = program.response_schema(text)
        response = await client.acomplete_json(messages, schema, **program.model_params)
    except StructuredOutputError as exc:
        trace.raw = exc.raw
        trace.error, trace.error_kind = exc.reason, "output"
        for spent in exc.responses:
            _add_usage(trace, spent)
        return None, trace
    except LMError as exc:
        trace.error = exc.reason
        trace.error_kind = "unavailable" if isinstance(exc, LMUnavailableError) else "request"
        return None, trace
    trace.raw = response.text
    trace.cached = response.cached
    _add_usage(trace, response)
    logprobs = response.logprobs
    trace.field_confidence, trace.confidence_note = confidence_by_leaf(
        response.text, logprobs.tokens, logprobs.note
    )
    return convert_record(response.parsed, program.formats), trace


def _add_usage(trace: Trace, response: Any) -> None:
    trace.prompt_tokens += response.prompt_tokens
    trace.completion_tokens += response.completion_tokens
    trace.cost_usd += response.cost_usd
    trace.latency_s += response.latency_s
    trace.calls += 1


async def _map_merge(
    program: ExtractionProgram, chunks: list[str], client: LMClient
) -> tuple[dict | None, Trace]:
    results = await asyncio.gather(
        *(_extract_once(program, chunk, client, Trace(strategy="map_merge")) for chunk in chunks)
    )
    trace = Trace(strategy="map_merge", chunks_used=list(range(len(chunks))))
    records, confidences, notes, errors = [], [], [], []
    for record, part in results:
        _add_part(trace, part)
        if record is None:
            errors.append(part.error or "no record")
        else:
            records.append(record)
            confidences.append(part.field_confidence)
            notes.append(part.confidence_note)
    trace.messages = results[0][1].messages if results else []
    unavailable = [part for _, part in results if part.error_kind == "unavailable"]
    if unavailable:
        # A record merged without some chunks would silently miss values: try the document again.
        trace.error, trace.error_kind = f"a chunk failed: {unavailable[0].error}", "unavailable"
        return None, trace
    if not records:
        trace.error = f"every chunk failed: {errors[0] if errors else 'no chunks'}"
        trace.error_kind = next((part.error_kind for _, part in results if part.error_kind), None)
        return None, trace
    merged = merge_records(program, records)
    trace.field_confidence = merged_confidence(merged, records, confidences)
    trace.confidence_note = next((note for note in notes if note), None)
    return merged, trace


async def _read_groups(
    program: ExtractionProgram, reading: Reading, client: LMClient
) -> tuple[dict | None, Trace]:
    """One call per field group and part (see `longdoc.GroupReading`); the partial records are
    merged into one record, checked against the full schema."""
    narrowed = [program.for_fields(group.fields) for group in reading.groups]
    calls = [
        _extract_once(sub, part, client, Trace(strategy=reading.strategy))
        for sub, group in zip(narrowed, reading.groups, strict=True)
        for part in group.parts
    ]
    results = iter(await asyncio.gather(*calls))
    trace = Trace(strategy=reading.strategy, chunks_used=reading.chunks_used)
    record: dict[str, Any] = {}
    for sub, group in zip(narrowed, reading.groups, strict=True):
        parts = [next(results) for _ in group.parts]
        for _, part in parts:
            _add_part(trace, part)
        trace.messages = trace.messages or parts[0][1].messages
        failed = [part for done, part in parts if done is None]
        unavailable = [part for part in failed if part.error_kind == "unavailable"]
        if unavailable or len(failed) == len(parts):
            # A record without this group's fields would silently miss values.
            first = (unavailable or failed)[0]
            trace.error = f"fields {', '.join(group.fields)}: {first.error or 'no record'}"
            trace.error_kind = first.error_kind
            return None, trace
        if group.merged:
            ok = [(done, part, c) for (done, part), c in zip(parts, group.chunks_used, strict=True) if done]
            records = [r for r, _, _ in ok]
            merged, decided = merge_with_sources(sub, records, [c for _, _, c in ok])
            trace.decided_by.update(decided)
            confidence = merged_confidence(merged, records, [p.field_confidence for _, p, _ in ok])
        else:
            ok = [(done, part, None) for done, part in parts if done]
            merged, confidence = ok[0][0], ok[0][1].field_confidence
        record.update(merged)
        trace.field_confidence.update(confidence)  # groups hold disjoint fields: no path twice
        notes = [p.confidence_note for _, p, _ in ok if p.confidence_note]
        trace.confidence_note = trace.confidence_note or (notes[0] if notes else None)
    problems = validate_record(program.schema, record)
    if problems:
        trace.error = f"the merged record does not match the schema: {problems[0]}"
        trace.error_kind = "output"
        return None, trace
    return record, trace


def _add_part(trace: Trace, part: Trace) -> None:
    trace.prompt_tokens += part.prompt_tokens
    trace.completion_tokens += part.completion_tokens
    trace.cost_usd += part.cost_usd
    trace.latency_s += part.latency_s
    trace.calls += part.calls
    trace.raw += part.raw + "\n"


def leaked_prompt(record: Any, program: ExtractionProgram, window: int = 40) -> str | None:
    """A piece of the program's own prompt found inside an extracted value (a document that told the
    model to print its instructions), or None. Such a record must not reach the output."""
    prompt = " ".join(program.system_prompt().split())
    stack = [record]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and len(value) >= window:
            text = " ".join(value.split())
            for start in range(0, len(text) - window + 1, window // 2):
                if text[start : start + window] in prompt:
                    return text[start : start + window]
    return None
