"""Text embeddings through `litellm.embedding`, for retrieval over a long document's chunks.

Any provider litellm knows by name (`openai/text-embedding-3-small`, `ollama/nomic-embed-text`, a
vLLM or TEI server by `api_base`...). Like `LMClient`: vectors are cached on disk per text (a
re-run embeds nothing), transient failures are retried with backoff (tenacity), and a failure that
outlasts the retries is an `LMError` naming the model. No embedding model ships with ieflow: BM25
stays the offline default (`LongDocStrategy.retriever`).
"""

from __future__ import annotations

import threading
from typing import Any

import tenacity

from ieflow import config
from ieflow.lm.cache import ResponseCache, request_key
from ieflow.lm.client import _describe, is_transient
from ieflow.lm.errors import LMError, LMRequestError, LMUnavailableError

_BUILT: dict[tuple[str, str | None], Embedder] = {}
_BUILT_LOCK = threading.Lock()


class Embedder:
    """Embeds texts with one model; `embed` returns one vector per text, in order."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        cache: ResponseCache | bool = True,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        retry_wait_s: tuple[float, float] = (0.5, 20.0),
    ) -> None:
        self.model = model
        self.api_base = api_base
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_wait_s = retry_wait_s
        self.cache = ResponseCache(config.lm_cache_dir()) if cache is True else (cache or None)
        self.calls = 0  # requests sent to the provider (cache hits are not calls)

    def __repr__(self) -> str:  # never show the key
        return f"Embedder(model={self.model!r}, api_base={self.api_base!r})"

    def _key(self, text: str) -> str:
        # "embedding" in the params keeps these keys apart from chat answers to the same text.
        return request_key(
            self.model, [{"role": "user", "content": text}], {"embedding": self.api_base}, None
        )

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text; the uncached ones are asked in one request. Raises `LMError`."""
        keys = [self._key(text) for text in texts]
        vectors: dict[int, list[float]] = {}
        for index, key in enumerate(keys):
            stored = self.cache.get(key) if self.cache is not None else None
            if stored is not None:
                vectors[index] = stored["vector"]
        missing = [i for i in range(len(texts)) if i not in vectors]
        if missing:
            fresh = self._request([texts[i] for i in missing])
            for index, vector in zip(missing, fresh, strict=True):
                vectors[index] = vector
                if self.cache is not None:
                    self.cache.set(keys[index], {"vector": vector})
        return [vectors[i] for i in range(len(texts))]

    def _request(self, inputs: list[str]) -> list[list[float]]:
        import litellm

        # num_retries 0: retries are ours (counted, bounded). litellm's OpenAI embedding path turns a
        # max_retries of 0 into its default (2, litellm 1.x `max_retries or DEFAULT_MAX_RETRIES`), so
        # for OpenAI-compatible servers the SDK's own quick retries run beneath ours.
        kwargs: dict[str, Any] = {
            "model": self.model,
            "input": inputs,
            "timeout": self.timeout_s,
            "num_retries": 0,
        }
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        low, high = self.retry_wait_s
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=tenacity.wait_random_exponential(multiplier=low, max=high),
            retry=tenacity.retry_if_exception(is_transient),
            reraise=True,
        )
        try:
            response = retrying(self._send, litellm, kwargs)
        except LMError:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise LMUnavailableError(
                    self.model, f"gave up after {self.max_retries + 1} attempts: {_describe(exc)}"
                ) from None
            raise LMRequestError(self.model, _describe(exc)) from None
        return _vectors(self.model, response, len(inputs))

    def _send(self, litellm: Any, kwargs: dict[str, Any]) -> Any:
        self.calls += 1
        return litellm.embedding(**kwargs)


def _vectors(model: str, response: Any, expected: int) -> list[list[float]]:
    """The response's vectors in input order; LMRequestError when there are not `expected` of them."""
    data = sorted(response.data, key=lambda item: _get(item, "index"))
    vectors = [[float(x) for x in _get(item, "embedding")] for item in data]
    if len(vectors) != expected or any(not v for v in vectors):
        raise LMRequestError(model, f"the embedding answer has {len(vectors)} vectors for {expected} texts")
    return vectors


def _get(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, dict) else getattr(item, name)


def shared_embedder(model: str, api_base: str | None = None) -> Embedder:
    """The process's embedder of `model` (built once, so its call count covers every caller)."""
    with _BUILT_LOCK:
        found = _BUILT.get((model, api_base))
        if found is None:
            found = _BUILT[(model, api_base)] = Embedder(model, api_base=api_base)
        return found
