"""Typed errors of the LM client. Callers record them (with their reason) instead of crashing a run."""

from __future__ import annotations

from typing import Any


class LMError(Exception):
    """A model call failed for good. `model` names the model, `reason` says why in one line."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"{model}: {reason}")
        self.model = model
        self.reason = reason


class LMUnavailableError(LMError):
    """Transient failures (429, 5xx, timeouts, connection errors) outlasted every retry."""


class LMRequestError(LMError):
    """The provider refused the request (a 4xx other than 429): retrying would not help."""


class StructuredOutputError(LMError):
    """The answer was not valid JSON for the schema, even after one repair attempt.

    `raw` is the last raw answer and `problems` the validation errors, so the caller can quarantine
    the record with its reason. `responses` holds every response spent, for token accounting.
    """

    def __init__(self, model: str, raw: str, problems: list[str], responses: list[Any]) -> None:
        summary = "; ".join(problems[:3]) or "invalid output"
        super().__init__(model, f"invalid structured output: {summary}")
        self.raw = raw
        self.problems = problems
        self.responses = responses
