"""A scripted LM for unit tests of optimizer logic: answers come from a Python function, no model."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ieflow.lm import LMClient, LMResponse
from ieflow.lm.tokens import estimate_tokens, register_token_counter


class ScriptedLM(LMClient):
    """An LMClient whose answers come from `script(messages, params) -> str`; `params` carries the
    request's `response_schema` too, so a script can act as a constrained decoder.

    It keeps the real client's structured-output path (parse, validate, one repair), usage meter and
    token accounting, so the code under test cannot tell it from a model.
    """

    def __init__(self, script: Callable[[list[dict], dict], str], model: str = "scripted/lm") -> None:
        super().__init__(model, cache=False)
        self.script = script
        self.calls: list[list[dict]] = []

    def complete(
        self, messages: list[dict], *, response_schema: dict | None = None, **params: Any
    ) -> LMResponse:
        params.pop("use_cache", None)
        self.calls.append(messages)
        started = time.perf_counter()
        text = self.script(messages, {**params, "response_schema": response_schema})
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        response = LMResponse(
            model=self.model,
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(text.split()),
            cost_usd=0.0,
            latency_s=time.perf_counter() - started,
            cached=False,
            finish_reason="stop",
        )
        self.usage.add(response)
        return response

    async def acomplete(
        self, messages: list[dict], *, response_schema: dict | None = None, **params: Any
    ) -> LMResponse:
        return self.complete(messages, response_schema=response_schema, **params)


# A scripted model has no tokenizer: its tokens are the word-and-punctuation estimate, as every
# count was before counts followed the model (the extraction snapshot pins views cut that way).
register_token_counter("scripted/", estimate_tokens, source="estimate")
