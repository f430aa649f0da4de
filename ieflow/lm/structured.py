"""JSON Schema structured output: the request's response format, and parsing plus validation."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import jsonschema

from ieflow.schema_safety import make_validator

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def response_format(schema: dict, name: str = "record") -> dict:
    """OpenAI-style response format; litellm translates it for other providers."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    return make_validator(json.loads(schema_json))  # RE2 patterns, nothing fetched


MAX_ANSWER_DEPTH = 64  # far beyond any record; deeper answers would exhaust the validator's stack


class AnswerTooDeepError(ValueError):
    """The answer is JSON nested deeper than MAX_ANSWER_DEPTH (no other reading of it is tried)."""


def parse_json(text: str) -> Any:
    """Parse a model answer as JSON, tolerating code fences and prose around one JSON object.

    Raises ValueError when there is no JSON object, or one nested deeper than MAX_ANSWER_DEPTH."""
    stripped = text.strip()
    try:
        return _loads(stripped)
    except AnswerTooDeepError:
        raise
    except ValueError:
        pass
    fenced = _FENCE.search(stripped)
    if fenced:
        return _loads(fenced.group(1))
    start, end = stripped.find("{"), stripped.rfind("}")
    if start != -1 and end > start:
        return _loads(stripped[start : end + 1])
    raise ValueError("no JSON object in the answer")


def _loads(text: str) -> Any:
    try:
        value = json.loads(text)
    except RecursionError:
        raise AnswerTooDeepError(f"the answer is nested more than {MAX_ANSWER_DEPTH} levels deep") from None
    if _depth(value) > MAX_ANSWER_DEPTH:
        raise AnswerTooDeepError(f"the answer is nested more than {MAX_ANSWER_DEPTH} levels deep")
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_ANSWER_DEPTH:
                break
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def validation_problems(value: Any, schema: dict) -> list[str]:
    """Human-readable schema violations, empty when valid."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    problems = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"{where}: {error.message[:200]}")
    return problems


def parse_and_validate(text: str, schema: dict) -> tuple[Any | None, list[str]]:
    """(value, problems): value is None when the text is not JSON at all."""
    try:
        value = parse_json(text)
    except ValueError as exc:
        snippet = text.strip()[:80].replace("\n", " ")
        return None, [f"not valid JSON ({exc}); answer began {snippet!r}"]
    return value, validation_problems(value, schema)


def repair_message(problems: list[str]) -> dict:
    """The one follow-up message that asks the model to fix its answer."""
    listed = "\n".join(f"- {p}" for p in problems[:8])
    return {
        "role": "user",
        "content": f"Your answer does not match the JSON schema:\n{listed}\n"
        "Reply with only the corrected JSON object.",
    }
