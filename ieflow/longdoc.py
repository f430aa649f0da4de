"""What a program reads of a document: the whole text when it fits, else what its long-document
strategy picks (see `LongDocStrategy`): the head, BM25-selected chunks, or every chunk.

Plain functions of a program's data and a text, no model calls: `plan_reading` is the one
decision `ieflow.extraction` asks for; the helpers are public for demos and unit tests.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ieflow.formats import render_record
from ieflow.program import ExtractionProgram
from ieflow.schema import kind_of, top_level_fields

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class Reading:
    """The parts of one document a program sends to the model, one extraction each.

    `strategy` is "single" (the whole text fits) or the strategy's kind; "map_merge" merges the
    records of its parts, the others have exactly one part. `chunks_used` lists the windows read."""

    strategy: str
    parts: list[str]
    chunks_used: list[int]


def plan_reading(program: ExtractionProgram, text: str) -> Reading:
    """How `program` reads `text` within its budget (`document_budget`)."""
    strategy = program.strategy
    budget = document_budget(program)
    if count_tokens(text) <= budget:
        return Reading("single", [text], [])
    if strategy.kind == "map_merge":
        chunks = split_windows(text, min(strategy.chunk_tokens, budget), strategy.overlap_tokens)
        return Reading("map_merge", chunks, list(range(len(chunks))))
    view, chosen = _part_within(program, text, budget)
    return Reading(strategy.kind, [view], chosen)


def count_tokens(text: str) -> int:
    """A fast token-count estimate (words and punctuation marks), close to BPE counts for prose."""
    return sum(1 for _ in _TOKEN.finditer(text))


def document_budget(program: ExtractionProgram) -> int:
    """Tokens left for the document: `max_input_tokens` covers the demos shown before it too, so a
    program with demos never sends a longer prompt than the same program without them. At least one
    overlap-sized window is kept, so a program always sees some of the document."""
    strategy = program.strategy
    return max(strategy.max_input_tokens - demo_tokens(program), strategy.overlap_tokens + 1)


def demo_tokens(program: ExtractionProgram) -> int:
    """Estimated prompt tokens of the demos: each one's text and its answer as the model is shown it."""
    total = 0
    for demo in program.demos:
        answer = json.dumps(render_record(demo.record, program.formats, demo.text), ensure_ascii=False)
        total += count_tokens(demo.text) + count_tokens(answer)
    return total


def document_view(program: ExtractionProgram, text: str, budget: int) -> tuple[str, list[int]]:
    """The part of `text` the program reads within `budget` tokens, and the chunks it took: the whole
    text when it fits; else the head (`truncate`, also for `map_merge`, which reads every chunk only at
    extraction time) or the BM25-selected chunks (`select`), windows shrunk to fit a small budget."""
    if count_tokens(text) <= budget:
        return text, []
    return _part_within(program, text, budget)


def _part_within(program: ExtractionProgram, text: str, budget: int) -> tuple[str, list[int]]:
    # `text` is known not to fit `budget` (the caller counted it once).
    strategy = program.strategy
    if strategy.kind != "select":
        return head(text, budget), []
    size = max(min(strategy.chunk_tokens, budget // 2), 1)  # room for the head and one more chunk
    chunks = split_windows(text, size, min(strategy.overlap_tokens, size // 5))
    chosen = select_chunks(program, chunks, budget)
    return "\n...\n".join(chunks[i] for i in chosen), chosen


def head(text: str, max_tokens: int) -> str:
    pieces = list(_TOKEN.finditer(text))
    if len(pieces) <= max_tokens:
        return text
    return text[: pieces[max_tokens - 1].end()]


def split_windows(text: str, chunk_tokens: int, overlap_tokens: int) -> list[str]:
    """Overlapping windows of about `chunk_tokens` tokens, cut at line breaks where possible."""
    if chunk_tokens <= overlap_tokens:
        raise ValueError("chunk_tokens must be larger than overlap_tokens")
    pieces = list(_TOKEN.finditer(text))
    if not pieces:
        return [text]
    windows = []
    start = 0
    while start < len(pieces):
        end = min(start + chunk_tokens, len(pieces))
        char_start = pieces[start].start()
        char_end = len(text) if end == len(pieces) else pieces[end].start()
        # Prefer ending at a line break in the last fifth of the window.
        if end < len(pieces):
            cut = text.rfind("\n", char_start + (char_end - char_start) * 4 // 5, char_end)
            if cut > char_start:
                char_end = cut
                end = next((i for i in range(start, end) if pieces[i].start() >= cut), end)
        windows.append(text[char_start:char_end])
        if end >= len(pieces):
            break
        start = max(end - overlap_tokens, start + 1)
    return windows


def select_chunks(program: ExtractionProgram, chunks: list[str], budget: int | None = None) -> list[int]:
    """BM25 per field (query: field name and description); the union of each field's top-k, in order,
    trimmed to `budget` tokens (default: `max_input_tokens`). The first chunk is always kept: titles and
    parties live there."""
    import bm25s  # imported only when a long document needs it
    import Stemmer

    strategy = program.strategy
    # Stemming lets "Governing law" find "governed by the laws of".
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    corpus_tokens = bm25s.tokenize(chunks, stopwords="en", stemmer=stemmer, show_progress=False)
    retriever.index(corpus_tokens, show_progress=False)
    k = min(strategy.top_k, len(chunks))
    ranked: list[int] = [0]
    for path, description in program.field_descriptions().items():
        query = f"{path.replace('_', ' ').replace('.', ' ').replace('[]', '')} {description}"
        tokens = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, show_progress=False)
        if not tokens.vocab:
            continue
        ids, scores = retriever.retrieve(tokens, k=k, show_progress=False)
        # A query that matches nothing still gets k chunks back, with score 0: skip those.
        ranked.extend(int(i) for i, score in zip(ids[0], scores[0], strict=True) if score > 0)
    chosen: list[int] = []
    budget = strategy.max_input_tokens if budget is None else budget
    for index in dict.fromkeys(ranked):  # keeps first-seen order: field priority
        cost = count_tokens(chunks[index])
        if cost <= budget:
            chosen.append(index)
            budget -= cost
    return sorted(chosen)


def merge_records(program: ExtractionProgram, records: list[dict]) -> dict:
    """Merge per-chunk records field by field (first non-null | majority | union for lists)."""
    merged: dict[str, Any] = {}
    for name in top_level_fields(program.schema):
        kind = kind_of(program.schema, program.schema["properties"][name])
        is_list = kind in ("scalar_array", "object_array")
        default = "union" if is_list else program.strategy.merge
        rule = program.strategy.merge_rules.get(name, default)
        values = [r.get(name) for r in records if r.get(name) not in (None, [], "")]
        merged[name] = _merge_values(values, rule, is_list)
    return merged


def _merge_values(values: list[Any], rule: str, is_list: bool) -> Any:
    if not values:
        return [] if is_list else None
    if rule == "union" and is_list:
        seen: dict[str, Any] = {}
        for value in values:
            for item in value:
                seen.setdefault(json.dumps(item, sort_keys=True), item)
        return list(seen.values())
    if rule == "majority":
        counts = Counter(json.dumps(v, sort_keys=True) for v in values)
        best = max(counts.values())
        return next(v for v in values if counts[json.dumps(v, sort_keys=True)] == best)
    return values[0]
