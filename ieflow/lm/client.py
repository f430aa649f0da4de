"""The one LM client every ieflow component uses: litellm underneath, so any provider works by name.

What it adds to a bare `litellm.completion`:
- a persistent response cache (a re-run makes no model call),
- retries with exponential backoff and jitter on 429, 5xx, timeouts and connection errors (tenacity),
  none on other 4xx, and a clear error naming the model when they run out,
- a per-model concurrency limit shared by every client of that model in the process,
- token and cost accounting for every call,
- structured output: JSON Schema in, validated JSON out, one repair attempt, then a typed error.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import tenacity

from ieflow import config
from ieflow.lm.cache import ResponseCache, request_key
from ieflow.lm.errors import LMError, LMRequestError, LMUnavailableError, StructuredOutputError
from ieflow.lm.logprobs import AnswerLogprobs, asks_logprobs, from_cache, read_logprobs, to_cache
from ieflow.lm.pricing import call_cost, call_seconds, is_local, register_prices
from ieflow.lm.structured import parse_and_validate, repair_message, response_format

log = logging.getLogger("ieflow.lm")

_TRANSIENT_STATUS = {408, 409, 425, 429}


@dataclass
class LMResponse:
    """One answer, fresh or from the cache, with what it cost."""

    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    cached: bool
    finish_reason: str | None = None
    parsed: Any = None
    # the answer's token log-probabilities, or why there are none
    logprobs: AnswerLogprobs = field(default_factory=AnswerLogprobs.not_returned)


@dataclass
class UsageMeter:
    """Running totals of a client's calls (thread-safe)."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, response: LMResponse) -> None:
        with self._lock:
            if response.cached:
                self.cached_calls += 1
                return
            self.calls += 1
            self.prompt_tokens += response.prompt_tokens
            self.completion_tokens += response.completion_tokens
            self.cost_usd += response.cost_usd

    def to_dict(self) -> dict[str, float]:
        return {
            "calls": self.calls,
            "cached_calls": self.cached_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
        }


def is_transient(exc: BaseException) -> bool:
    """429, 5xx, timeouts and connection errors are worth retrying; other 4xx are not."""
    import litellm

    if isinstance(exc, litellm.Timeout | litellm.APIConnectionError | litellm.RateLimitError):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status >= 500 or status in _TRANSIENT_STATUS
    return False


class _ModelLimits:
    """One concurrency cap per model, shared by all clients in the process (sync and async)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: dict[str, threading.BoundedSemaphore] = {}
        self._loops: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def thread_semaphore(self, model: str, limit: int) -> threading.BoundedSemaphore:
        with self._lock:
            return self._threads.setdefault(model, threading.BoundedSemaphore(limit))

    def async_semaphore(self, model: str, limit: int) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            per_loop = self._loops.setdefault(loop, {})
            return per_loop.setdefault(model, asyncio.Semaphore(limit))


_LIMITS = _ModelLimits()


class LMClient:
    """A model by litellm name (`openai/gpt-4o-mini`, `ollama/qwen2.5`, `local/qwen2.5-coder-0.5b`...).

    `params` are default request parameters (temperature 0 by default, for determinism). The API key
    is passed to litellm but never enters the cache key, logs or errors.
    """

    def __init__(
        self,
        model: str,
        *,
        params: dict[str, Any] | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        max_retries: int = 4,
        max_concurrency: int | None = None,
        cache: ResponseCache | bool = True,
        retry_wait_s: tuple[float, float] = (0.5, 20.0),
    ) -> None:
        self.model = model
        self.params = {"temperature": 0.0, **(params or {})}
        self.api_base = api_base
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        # llama.cpp serializes calls per model anyway; remote providers take more in flight.
        self.max_concurrency = max_concurrency or (1 if is_local(model) else 8)
        if cache is True:
            self.cache: ResponseCache | None = ResponseCache(config.lm_cache_dir())
        else:
            self.cache = cache if isinstance(cache, ResponseCache) else None
        self.retry_wait_s = retry_wait_s
        self.usage = UsageMeter()
        register_prices()
        self.asks_logprobs = asks_logprobs(model)
        if is_local(model):
            from ieflow.lm.local import register_local_provider

            register_local_provider()

    def uncached(self) -> LMClient:
        """The same client (model, key, limits, usage meter) answering without the response cache:
        for asking again after an answer that may have been a passing fault."""
        twin = copy.copy(self)
        twin.cache = None
        return twin

    def __repr__(self) -> str:  # never show the key
        return f"LMClient(model={self.model!r}, api_base={self.api_base!r})"

    def _prepare(
        self, messages: list[dict], response_schema: dict | None, params: dict[str, Any], use_cache: bool
    ) -> tuple[dict[str, Any], str, LMResponse | None]:
        """The request, its cache key and the cached response if there is one."""
        request = self._request(messages, response_schema, params)
        key = request_key(self.model, messages, request["params"], response_schema)
        return request, key, self._cached(key, use_cache)

    # -- plain text -------------------------------------------------------------------------------

    def complete(
        self,
        messages: list[dict],
        *,
        response_schema: dict | None = None,
        use_cache: bool = True,
        **params: Any,
    ) -> LMResponse:
        """One call (or a cache hit). Raises LMUnavailableError / LMRequestError when it fails for good."""
        request, key, hit = self._prepare(messages, response_schema, params, use_cache)
        if hit is not None:
            return hit
        semaphore = _LIMITS.thread_semaphore(self.model, self.max_concurrency)
        try:
            for attempt in self._retrying(tenacity.Retrying):
                with attempt, semaphore:
                    started = time.perf_counter()  # after the slot: the call's time, not the queue's
                    raw = self._litellm().completion(**request["kwargs"])
        except tenacity.RetryError as exc:
            raise self._give_up(exc.last_attempt.exception()) from None
        except Exception as exc:
            raise self._classify(exc) from exc
        return self._record(key, raw, call_seconds(raw, started), use_cache)

    async def acomplete(
        self,
        messages: list[dict],
        *,
        response_schema: dict | None = None,
        use_cache: bool = True,
        **params: Any,
    ) -> LMResponse:
        """Async twin of `complete`, bounded by the same per-model limit."""
        request, key, hit = self._prepare(messages, response_schema, params, use_cache)
        if hit is not None:
            return hit
        semaphore = _LIMITS.async_semaphore(self.model, self.max_concurrency)
        try:
            async for attempt in self._retrying(tenacity.AsyncRetrying):
                with attempt:
                    async with semaphore:
                        started = time.perf_counter()
                        raw = await self._litellm().acompletion(**request["kwargs"])
        except tenacity.RetryError as exc:
            raise self._give_up(exc.last_attempt.exception()) from None
        except Exception as exc:
            raise self._classify(exc) from exc
        return self._record(key, raw, call_seconds(raw, started), use_cache)

    # -- structured output ------------------------------------------------------------------------

    def complete_json(self, messages: list[dict], schema: dict, **params: Any) -> LMResponse:
        """A schema-valid JSON answer in `.parsed`, after at most one repair attempt.

        Raises StructuredOutputError (with the raw answer) when the repair fails too.
        """
        first = self.complete(messages, response_schema=schema, **params)
        value, problems = parse_and_validate(first.text, schema)
        if problems and _garbled(first, value):
            first = self.complete(messages, response_schema=schema, use_cache=False, **params)
            value, problems = parse_and_validate(first.text, schema)
        if not problems:
            first.parsed = value
            return first
        retry = [*messages, {"role": "assistant", "content": first.text}, repair_message(problems)]
        second = self.complete(retry, response_schema=schema, **params)
        return self._finish_repair(schema, first, second)

    async def acomplete_json(self, messages: list[dict], schema: dict, **params: Any) -> LMResponse:
        first = await self.acomplete(messages, response_schema=schema, **params)
        value, problems = parse_and_validate(first.text, schema)
        if problems and _garbled(first, value):
            first = await self.acomplete(messages, response_schema=schema, use_cache=False, **params)
            value, problems = parse_and_validate(first.text, schema)
        if not problems:
            first.parsed = value
            return first
        retry = [*messages, {"role": "assistant", "content": first.text}, repair_message(problems)]
        second = await self.acomplete(retry, response_schema=schema, **params)
        return self._finish_repair(schema, first, second)

    def _finish_repair(self, schema: dict, first: LMResponse, second: LMResponse) -> LMResponse:
        value, problems = parse_and_validate(second.text, schema)
        if problems:
            raise StructuredOutputError(self.model, second.text, problems, [first, second])
        # Report both attempts' tokens on the answer the caller keeps.
        second.parsed = value
        second.prompt_tokens += first.prompt_tokens
        second.completion_tokens += first.completion_tokens
        second.cost_usd += first.cost_usd
        second.latency_s += first.latency_s
        return second

    # -- internals --------------------------------------------------------------------------------

    @staticmethod
    def _litellm() -> Any:
        import litellm

        # No "Give Feedback / Provider List" banner on every exception: errors are ours to report.
        litellm.suppress_debug_info = True
        return litellm

    def _request(self, messages: list[dict], schema: dict | None, params: dict) -> dict:
        merged = {**self.params, **params}
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "timeout": self.timeout_s,
            "num_retries": 0,  # retries are ours, so they are counted and bounded in one place
            **merged,
        }
        if schema is not None:
            kwargs["response_format"] = response_format(schema)
        if self.asks_logprobs:
            # Not in the cache key's params: asking for them does not change the answer.
            kwargs["logprobs"] = True
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        return {"kwargs": kwargs, "params": {**merged, "api_base": self.api_base}}

    def _cached(self, key: str, use_cache: bool) -> LMResponse | None:
        if not use_cache or self.cache is None:
            return None
        stored = self.cache.get(key)
        if stored is None:
            return None
        response = LMResponse(
            model=self.model,
            text=stored["text"],
            prompt_tokens=stored["prompt_tokens"],
            completion_tokens=stored["completion_tokens"],
            cost_usd=stored["cost_usd"],
            latency_s=0.0,
            cached=True,
            finish_reason=stored.get("finish_reason"),
            logprobs=from_cache(stored),
        )
        self.usage.add(response)
        return response

    def _retrying(self, kind: type) -> Any:
        low, high = self.retry_wait_s
        return kind(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=tenacity.wait_random_exponential(multiplier=low, max=high),
            retry=tenacity.retry_if_exception(is_transient),
            before_sleep=self._log_retry,
            reraise=False,
        )

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: attempt %d failed (%s); retrying", self.model, state.attempt_number, _describe(exc))

    def _give_up(self, exc: BaseException | None) -> LMError:
        return LMUnavailableError(
            self.model, f"gave up after {self.max_retries + 1} attempts: {_describe(exc)}"
        )

    def _classify(self, exc: Exception) -> LMError:
        if isinstance(exc, LMError):
            return exc
        if is_transient(exc):
            return self._give_up(exc)
        return LMRequestError(self.model, _describe(exc))

    def _record(self, key: str, raw: Any, latency_s: float, use_cache: bool) -> LMResponse:
        choice = raw.choices[0]
        text = choice.message.content or ""
        usage = getattr(raw, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        response = LMResponse(
            model=self.model,
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=call_cost(self.model, prompt_tokens, completion_tokens, raw),
            latency_s=latency_s,
            cached=False,
            finish_reason=getattr(choice, "finish_reason", None),
            logprobs=read_logprobs(self.model, choice, self.asks_logprobs),
        )
        self.usage.add(response)
        # A truncated answer is not worth replaying from the cache.
        if use_cache and self.cache is not None and response.finish_reason != "length":
            self.cache.set(
                key,
                {
                    "text": text,
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "cost_usd": response.cost_usd,
                    "finish_reason": response.finish_reason,
                    **to_cache(response.logprobs),
                },
            )
        return response


def _garbled(response: LMResponse, value: Any) -> bool:
    """Not JSON at all, or cut off: a transport-level fault worth one fresh try before a repair
    turn (a repair asks the model to fix content; it cannot fix an answer that never arrived)."""
    return value is None or response.finish_reason == "length"


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    status = getattr(exc, "status_code", None)
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    prefix = f"{type(exc).__name__}" + (f" {status}" if status else "")
    return f"{prefix}: {message[:300]}"
