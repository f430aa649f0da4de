"""What a program reads of a document: the whole text when it fits, else what its long-document
strategy picks (see `LongDocStrategy`): the head, BM25-selected chunks, or every chunk; and, for a
program that groups its fields, what each group of fields reads (`GroupReading`).

Plain functions of a program's data and a text, no model calls: `plan_reading` is the one
decision `ieflow.extraction` asks for; the helpers are public for demos and unit tests. Every
budget is counted with the program model's tokenizer (`ieflow.lm.tokens.count_tokens`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy

from ieflow.formats import render_record
from ieflow.lm.tokens import count_tokens, estimate_tokens
from ieflow.merge import merge_records, merge_with_sources
from ieflow.program import ExtractionProgram
from ieflow.schema import top_level_fields

__all__ = [
    "GroupReading",
    "Reading",
    "count_tokens",
    "demo_tokens",
    "document_budget",
    "document_view",
    "group_by_region",
    "head",
    "merge_records",
    "merge_with_sources",
    "plan_reading",
    "select_chunks",
    "split_windows",
]

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)  # the pieces windows are cut on


@dataclass(frozen=True)
class GroupReading:
    """What one group of top-level fields reads: one part, or (`merged`) parts read one by one
    whose records are merged by type; `chunks_used[i]` is part i's window when parts are windows."""

    fields: list[str]
    parts: list[str]
    chunks_used: list[int]
    merged: bool = False


@dataclass(frozen=True)
class Reading:
    """The parts of one document a program sends to the model, one extraction each.

    `strategy` is "single" (the whole text fits) or the strategy's kind; "map_merge" merges the
    records of its parts, the others have exactly one part. `chunks_used` lists the windows read.
    A program that groups its fields (or reads by `retrieve_merge`) has `groups` instead of parts."""

    strategy: str
    parts: list[str]
    chunks_used: list[int]
    groups: list[GroupReading] = field(default_factory=list)


def plan_reading(program: ExtractionProgram, text: str, embed: Embed | None = None) -> Reading:
    """How `program` reads `text` within its budget (`document_budget`). `embed` is needed only
    by the embedding retriever (`LongDocStrategy.retriever`); it is the one model call here."""
    strategy = program.strategy
    budget = document_budget(program)
    if strategy.groups_fields or strategy.kind == "retrieve_merge":
        return _plan_groups(program, text, budget, embed)
    if count_tokens(text, program.model) <= budget:
        return Reading("single", [text], [])
    if strategy.kind == "map_merge":
        size = min(strategy.chunk_tokens, budget)
        chunks = split_windows(text, size, strategy.overlap_tokens, program.model)
        return Reading("map_merge", chunks, list(range(len(chunks))))
    view, chosen = _part_within(program, text, budget, embed)
    return Reading(strategy.kind, [view], chosen)


def _plan_groups(program: ExtractionProgram, text: str, budget: int, embed: Embed | None) -> Reading:
    strategy = program.strategy
    groups = program.field_groups()
    if count_tokens(text, program.model) <= budget:
        return Reading("single", [], [], [GroupReading(g, [text], []) for g in groups])
    if strategy.kind == "truncate":
        part = head(text, budget, program.model)
        return Reading("truncate", [], [], [GroupReading(g, [part], []) for g in groups])
    if strategy.kind == "select":
        size = max(min(strategy.chunk_tokens, budget // 2), 1)
        chunks = split_windows(text, size, min(strategy.overlap_tokens, size // 5), program.model)
        ranker = make_ranker(program, chunks, embed)
        readings = []
        for group in groups:
            chosen = ranker.select(program, budget, group)
            readings.append(GroupReading(group, ["\n...\n".join(chunks[i] for i in chosen)], chosen))
    else:
        size = min(strategy.chunk_tokens, budget)
        chunks = split_windows(text, size, strategy.overlap_tokens, program.model)
        everything = list(range(len(chunks)))
        ranker = make_ranker(program, chunks, embed) if strategy.kind == "retrieve_merge" else None
        readings = []
        for group in groups:
            chosen = ranker.retrieve(program, group) if ranker else everything
            readings.append(GroupReading(group, [chunks[i] for i in chosen], chosen, merged=True))
    used = sorted({i for reading in readings for i in reading.chunks_used})
    return Reading(strategy.kind, [], used, readings)


def document_budget(program: ExtractionProgram) -> int:
    """Tokens left for the document: `max_input_tokens` covers the demos shown before it too, so a
    program with demos never sends a longer prompt than the same program without them. At least one
    overlap-sized window is kept, so a program always sees some of the document."""
    strategy = program.strategy
    return max(strategy.max_input_tokens - demo_tokens(program), strategy.overlap_tokens + 1)


def demo_tokens(program: ExtractionProgram) -> int:
    """Prompt tokens of the demos: each one's text and its answer as the model is shown it."""
    total = 0
    for demo in program.demos:
        answer = json.dumps(render_record(demo.record, program.formats, demo.text), ensure_ascii=False)
        total += count_tokens(demo.text, program.model) + count_tokens(answer, program.model)
    return total


def document_view(program: ExtractionProgram, text: str, budget: int) -> tuple[str, list[int]]:
    """The part of `text` the program reads within `budget` tokens, and the chunks it took: the whole
    text when it fits; else the head (`truncate`, also for `map_merge`, which reads every chunk only at
    extraction time) or the BM25-selected chunks (`select`, `retrieve_merge`), windows shrunk to fit
    a small budget."""
    if count_tokens(text, program.model) <= budget:
        return text, []
    if program.strategy.retriever != "bm25":  # a view for a prompt, not a read: no embedding calls
        program = program.replace(strategy=dataclasses.replace(program.strategy, retriever="bm25"))
    return _part_within(program, text, budget)


def _part_within(
    program: ExtractionProgram, text: str, budget: int, embed: Embed | None = None
) -> tuple[str, list[int]]:
    # `text` is known not to fit `budget` (the caller counted it once).
    strategy = program.strategy
    if strategy.kind not in ("select", "retrieve_merge"):
        return head(text, budget, program.model), []
    size = max(min(strategy.chunk_tokens, budget // 2), 1)  # room for the head and one more chunk
    chunks = split_windows(text, size, min(strategy.overlap_tokens, size // 5), program.model)
    chosen = make_ranker(program, chunks, embed).select(program, budget)
    return "\n...\n".join(chunks[i] for i in chosen), chosen


def head(text: str, max_tokens: int, model: str | None = None) -> str:
    """The longest start of `text` (cut after a word or mark) of at most `max_tokens` tokens."""
    pieces = list(_TOKEN.finditer(text))
    if len(pieces) <= max_tokens and (model is None or count_tokens(text, model) <= max_tokens):
        return text
    keep = min(max_tokens, len(pieces))
    if model is not None:
        # Scale by the text's own tokens per piece, then shrink until the model's count fits.
        keep = max(int(keep * len(pieces) / max(count_tokens(text, model), 1)), 1)
        while keep > 1 and count_tokens(text[: pieces[keep - 1].end()], model) > max_tokens:
            keep = max(int(keep * 0.9), 1)
    return text[: pieces[keep - 1].end()]


def split_windows(text: str, chunk_tokens: int, overlap_tokens: int, model: str | None = None) -> list[str]:
    """Overlapping windows of at most `chunk_tokens` tokens of `model` (the estimate without one),
    cut at line breaks where possible."""
    if chunk_tokens <= overlap_tokens:
        raise ValueError("chunk_tokens must be larger than overlap_tokens")
    if model is None:
        return _windows(text, chunk_tokens, overlap_tokens)
    exact = count_tokens(text, model)
    estimate = estimate_tokens(text)
    if exact == estimate:  # the model counts as the estimate does: the same windows
        return _windows(text, chunk_tokens, overlap_tokens)
    # Cut in estimate pieces scaled by this text's tokens per piece; re-cut a window that is denser.
    per_piece = exact / max(estimate, 1)
    size = max(int(chunk_tokens / per_piece), 1)
    windows = []
    for window in _windows(text, size, min(int(overlap_tokens / per_piece), size - 1)):
        tokens = count_tokens(window, model)
        if tokens <= chunk_tokens:
            windows.append(window)
        elif window != text and estimate_tokens(window) > 1:
            windows.extend(split_windows(window, chunk_tokens, overlap_tokens, model))
        else:  # one giant word: cut it by characters
            step = max(len(window) * chunk_tokens // tokens, 1)
            windows.extend(window[i : i + step] for i in range(0, len(window), step))
    return windows


def _windows(text: str, chunk_tokens: int, overlap_tokens: int) -> list[str]:
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


def select_chunks(
    program: ExtractionProgram, chunks: list[str], budget: int | None = None, fields: list[str] | None = None
) -> list[int]:
    """BM25 per field (query: field name and description); the union of each field's top-k, in order,
    trimmed to `budget` tokens (default: `max_input_tokens`). The first chunk is always kept: titles and
    parties live there. `fields` limits the queries to some top-level fields."""
    return ChunkRanker(chunks).select(program, budget, fields)


Embed = Callable[[list[str]], list[list[float]]]  # texts -> one vector each (ieflow.lm.embeddings)


def field_queries(program: ExtractionProgram, fields: list[str] | None) -> list[str]:
    """One retrieval query per field path (name and description), for the top-level `fields`."""
    queries = []
    for path, description in program.field_descriptions().items():
        if fields is not None and path.split(".")[0].removesuffix("[]") not in fields:
            continue
        queries.append(f"{path.replace('_', ' ').replace('.', ' ').replace('[]', '')} {description}")
    return queries


class _Ranking:
    """Chunk choice from a ranking; subclasses say how each field's query ranks the chunks."""

    chunks: list[str]

    def ranked(self, program: ExtractionProgram, fields: list[str] | None, k: int) -> list[int]:
        raise NotImplementedError

    def select(
        self, program: ExtractionProgram, budget: int | None, fields: list[str] | None = None
    ) -> list[int]:
        """The first chunk and each field's top-k, in field order, while they fit `budget`."""
        chosen: list[int] = []
        budget = program.strategy.max_input_tokens if budget is None else budget
        ranked = [0, *self.ranked(program, fields, program.strategy.top_k)]
        for index in dict.fromkeys(ranked):  # keeps first-seen order: field priority
            cost = count_tokens(self.chunks[index], program.model)
            if cost <= budget:
                chosen.append(index)
                budget -= cost
        return sorted(chosen)

    def retrieve(self, program: ExtractionProgram, fields: list[str]) -> list[int]:
        """Each field's top-k chunks, in text order (a field no query matches reads the first)."""
        return sorted(set(self.ranked(program, fields, program.strategy.top_k))) or [0]


class EmbeddingRanker(_Ranking):
    """Chunks ranked by cosine similarity to each field's query, vectors from `embed`."""

    def __init__(self, chunks: list[str], embed: Embed) -> None:
        self.chunks = chunks
        self.embed = embed
        self.vectors = _unit_rows(embed(chunks))

    def ranked(self, program: ExtractionProgram, fields: list[str] | None, k: int) -> list[int]:
        queries = field_queries(program, fields)
        if not queries:
            return []
        similarity = _unit_rows(self.embed(queries)) @ self.vectors.T
        k = min(k, len(self.chunks))
        return [int(i) for row in similarity for i in numpy.argsort(-row, kind="stable")[:k]]


def _unit_rows(vectors: list[list[float]]) -> numpy.ndarray:
    matrix = numpy.asarray(vectors, dtype=float)
    norms = numpy.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / numpy.where(norms == 0, 1.0, norms)


def make_ranker(program: ExtractionProgram, chunks: list[str], embed: Embed | None = None) -> _Ranking:
    """The ranker `program.strategy.retriever` names; ValueError when embeddings are asked for
    without an `embed` function."""
    if program.strategy.retriever == "embedding":
        if embed is None:
            raise ValueError("the embedding retriever needs an embed function (ieflow.lm.embeddings)")
        return EmbeddingRanker(chunks, embed)
    return ChunkRanker(chunks)


class ChunkRanker(_Ranking):
    """A BM25 index of one document's chunks, built once and asked per field group."""

    def __init__(self, chunks: list[str]) -> None:
        import bm25s  # imported only when a long document needs it
        import Stemmer

        self.chunks = chunks
        # Stemming lets "Governing law" find "governed by the laws of".
        self.stemmer = Stemmer.Stemmer("english")
        self.retriever = bm25s.BM25()
        tokens = bm25s.tokenize(chunks, stopwords="en", stemmer=self.stemmer, show_progress=False)
        self.retriever.index(tokens, show_progress=False)

    def ranked(self, program: ExtractionProgram, fields: list[str] | None, k: int) -> list[int]:
        """Each field's top-k chunks that match its query at all (none: the first chunk), field by
        field, repeats kept."""
        import bm25s

        k = min(k, len(self.chunks))
        ranked: list[int] = []
        for query in field_queries(program, fields):
            tokens = bm25s.tokenize([query], stopwords="en", stemmer=self.stemmer, show_progress=False)
            hits: list[int] = []
            if tokens.vocab:
                ids, scores = self.retriever.retrieve(tokens, k=k, show_progress=False)
                # A query that matches nothing still gets k chunks back, with score 0: skip those.
                hits = [int(i) for i, score in zip(ids[0], scores[0], strict=True) if score > 0]
            # A field no word of the document matches reads the head, where titles and parties are.
            ranked.extend(hits or [0])
        return ranked


def group_by_region(program: ExtractionProgram, texts: list[str], group_size: int) -> ExtractionProgram:
    """The program with `field_groups` of at most `group_size` fields that live in the same part of
    a document: each field's best BM25 window, as a position from 0 (start) to 1 (end) averaged over
    `texts`, orders the fields (fields no query matched count as the head), and runs of `group_size`
    become the groups. Grouped that way, a group's retrieved windows serve all of its fields."""
    if group_size < 1:
        raise ValueError("group_size must be at least 1")
    names = top_level_fields(program.schema)
    positions: dict[str, list[float]] = {name: [] for name in names}
    for text in texts:
        chunks = split_windows(text, program.strategy.chunk_tokens, 0, program.model)
        if len(chunks) < 2:
            continue
        ranker = ChunkRanker(chunks)
        for name in names:
            best = ranker.ranked(program, [name], 1)
            if best:
                positions[name].append(best[0] / (len(chunks) - 1))
    order = sorted(names, key=lambda name: statistics.fmean(positions[name]) if positions[name] else 0.0)
    groups = [order[i : i + group_size] for i in range(0, len(order), group_size)]
    return program.replace(strategy=dataclasses.replace(program.strategy, field_groups=groups))
