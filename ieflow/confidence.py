"""Per-field confidence from the model's own token log-probabilities.

A value's confidence is the probability of its least likely token in the answer the model wrote
(`exp(min logprob)` over the tokens that overlap the value's characters in the JSON text): a value
is only as sure as its weakest token. Leaves are named like evidence rows (`lines[0].amount`).

Where the model returned no log-probabilities (a provider without them, an answer merged from
several chunk calls, a cache entry written without them) there is no number: `Confidence.values`
is empty and `Confidence.note` says why. Nothing here makes a number up.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

_DECODER = json.JSONDecoder()
_WS = " \t\n\r"


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its text, its log-probability and its length in UTF-8 bytes."""

    token: str
    logprob: float
    n_bytes: int


@dataclass
class Confidence:
    """Confidence per leaf path (0-1), or why there is none."""

    values: dict[str, float] = field(default_factory=dict)
    note: str | None = None


def field_confidence(answer: str, logprobs: list[TokenLogprob] | None) -> Confidence:
    """The confidence of each non-null leaf of the JSON object in `answer`."""
    if logprobs is None:
        return Confidence(note="the model returned no token log-probabilities")
    encoded = answer.encode("utf-8")
    if sum(t.n_bytes for t in logprobs) != len(encoded):
        return Confidence(note="the log-probabilities do not cover the answer's text")
    spans = value_spans(answer)
    if spans is None:
        return Confidence(note="the answer is not a JSON object")
    token_chars = _token_char_ranges(encoded, logprobs)
    values = {}
    for path, (start, end) in spans.items():
        overlapping = [lp for (a, b), lp in token_chars if a < end and b > start]
        if overlapping:
            values[path] = round(math.exp(min(overlapping)), 4)
    return Confidence(values=values)


def confidence_by_leaf(
    answer: str, logprobs: list[TokenLogprob] | None, missing_note: str | None = None
) -> tuple[dict[str, float | None], str | None]:
    """Every non-null leaf of `answer` with its confidence (None where there is none), and why some
    or all have none: `missing_note` (the client's reason) when there are no log-probabilities."""
    found = field_confidence(answer, logprobs)
    values = {path: found.values.get(path) for path in value_spans(answer) or {}}
    note = missing_note if logprobs is None and missing_note else found.note
    if note is None and None in values.values():
        note = "a value without a character of its own (an empty string) has no confidence"
    return values, note


def merged_confidence(
    merged: dict[str, Any], records: list[dict[str, Any]], confidences: list[dict[str, float | None]]
) -> dict[str, float | None]:
    """The confidence of each leaf of a record merged from chunk records (`longdoc.merge_records`):
    a value keeps the confidence of the chunk reading it came from, the first chunk (in document
    order) whose record holds that exact value; a list built as a union takes each item's from the
    first chunk that holds the item. No averaging: one number is one reading's. Leaves no chunk
    holds get None."""
    out: dict[str, float | None] = {}
    for name, value in merged.items():
        key = _canonical(value)
        source = next((i for i, r in enumerate(records) if _canonical(r.get(name)) == key), None)
        if source is not None:
            out.update(_subtree(confidences[source], name, name))
        elif isinstance(value, list):
            for k, item in enumerate(value):
                found = _holder(records, name, _canonical(item))
                if found is not None:
                    out.update(_subtree(confidences[found[0]], f"{name}[{found[1]}]", f"{name}[{k}]"))
    leaves = value_spans(json.dumps(merged, ensure_ascii=False)) or {}
    return {path: out.get(path) for path in leaves}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _holder(records: list[dict[str, Any]], name: str, item: str) -> tuple[int, int] | None:
    for i, record in enumerate(records):
        for j, candidate in enumerate(record.get(name) or []):
            if _canonical(candidate) == item:
                return i, j
    return None


def _subtree(confidence: dict[str, float | None], old: str, new: str) -> dict[str, float | None]:
    """The entries at path `old` and below it, renamed to sit at `new`."""
    return {
        new + path[len(old) :]: value
        for path, value in confidence.items()
        if path == old or path.startswith((old + ".", old + "["))
    }


def _token_char_ranges(encoded: bytes, logprobs: list[TokenLogprob]) -> list[tuple[tuple[int, int], float]]:
    # Byte offsets -> character offsets (a token may end inside a multi-byte character).
    char_at = [0] * (len(encoded) + 1)
    chars = 0
    for i, byte in enumerate(encoded):
        char_at[i] = chars
        if byte & 0xC0 != 0x80:
            chars += 1
    char_at[len(encoded)] = chars
    out, position = [], 0
    for token in logprobs:
        start, position = position, position + token.n_bytes
        out.append(((char_at[start], max(char_at[position], char_at[start] + 1)), token.logprob))
    return out


def value_spans(answer: str) -> dict[str, tuple[int, int]] | None:
    """Character span of each non-null leaf value in the JSON object `answer` holds."""
    start = answer.find("{")
    if start < 0:
        return None
    spans: dict[str, tuple[int, int]] = {}
    try:
        _walk(answer, start, "", spans)
    except (ValueError, IndexError):
        return None
    return spans


def _walk(text: str, i: int, path: str, spans: dict[str, tuple[int, int]]) -> int:
    """Parse the JSON value at `i`, recording leaf spans; returns the index after it."""
    i = _skip(text, i)
    if text[i] == "{":
        i = _skip(text, i + 1)
        while text[i] != "}":
            key, i = json.decoder.scanstring(text, i + 1)
            i = _skip(text, _skip(text, i) + 1)  # past ':'
            i = _skip(text, _walk(text, i, f"{path}.{key}" if path else key, spans))
            i = _skip(text, i + 1) if text[i] == "," else i
        return i + 1
    if text[i] == "[":
        i, n = _skip(text, i + 1), 0
        while text[i] != "]":
            i = _skip(text, _walk(text, i, f"{path}[{n}]", spans))
            i, n = (_skip(text, i + 1) if text[i] == "," else i), n + 1
        return i + 1
    value, end = _DECODER.raw_decode(text, i)
    if value is not None:
        spans[path] = (i + 1, end - 1) if isinstance(value, str) else (i, end)
    return end


def _skip(text: str, i: int) -> int:
    while text[i] in _WS:
        i += 1
    return i


def logprobs_from_openai(content: list[Any] | None) -> list[TokenLogprob] | None:
    """OpenAI's `choices[0].logprobs.content` (objects or dicts) as TokenLogprobs; None if absent."""
    if not content:
        return None
    out = []
    for item in content:
        get = item.get if isinstance(item, dict) else lambda k, item=item: getattr(item, k, None)
        token, logprob, raw = get("token"), get("logprob"), get("bytes")
        if token is None or logprob is None:
            return None
        n_bytes = len(raw) if isinstance(raw, list) else len(str(token).encode("utf-8"))
        out.append(TokenLogprob(str(token), float(logprob), n_bytes))
    return out
