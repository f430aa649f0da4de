"""One process-wide pool of LM clients, shared by batch extraction, the evaluator and `extract-file`.

A client carries the per-model concurrency limit and the usage meter, so everything that asks for
the same model with the same settings must get the same client: the limit then bounds all of their
calls together, and the usage totals add up in one place. A `ClientSpec` lists what makes two
clients different; the pool builds a client the first time a spec is asked for and hands the same
one back afterwards.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ieflow.lm.client import LMClient

# Resolves the API key when a client is built (never stored in a spec, a key or a log).
ApiKeyResolver = Callable[[], str | None]


@dataclass(frozen=True)
class ClientSpec:
    """What distinguishes one client from another. The defaults are `LMClient`'s own, so
    `ClientSpec(model, params)` is the plain client a program uses when no client is given.

    `api_key_source` names where the key comes from (an environment variable, a secret's name),
    never the key itself: two specs with the same source share a client, whose key is resolved
    once, when it is built."""

    model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    api_base: str | None = None
    api_key_source: str | None = None
    use_cache: bool = True
    max_concurrency: int | None = None  # None: LMClient's default (1 for a local model, else 8)
    timeout_s: float = 300.0
    max_retries: int = 4

    @property
    def key(self) -> tuple[Any, ...]:
        """The pool's key: every field, with the request parameters as canonical JSON text."""
        return (
            self.model,
            json.dumps(dict(self.params), sort_keys=True),
            self.api_base,
            self.api_key_source,
            self.use_cache,
            self.max_concurrency,
            self.timeout_s,
            self.max_retries,
        )

    def build(self, api_key: str | None = None) -> LMClient:
        return LMClient(
            self.model,
            params=dict(self.params),
            api_base=self.api_base,
            api_key=api_key,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            max_concurrency=self.max_concurrency,
            cache=self.use_cache,  # True: the shared on-disk response cache, False: none
        )


class ClientPool:
    """Clients by `ClientSpec.key`, built on first use; thread-safe."""

    def __init__(self) -> None:
        self._clients: dict[tuple[Any, ...], LMClient] = {}
        self._lock = threading.Lock()

    def client(self, spec: ClientSpec, api_key: ApiKeyResolver | None = None) -> LMClient:
        """The pool's client for `spec`; `api_key` is called only when the client is built."""
        with self._lock:
            found = self._clients.get(spec.key)
            if found is None:
                found = self._clients[spec.key] = spec.build(api_key() if api_key else None)
            return found

    def __len__(self) -> int:
        return len(self._clients)

    def clear(self) -> None:
        with self._lock:
            self._clients.clear()


SHARED_POOL = ClientPool()


def shared_client(spec: ClientSpec, api_key: ApiKeyResolver | None = None) -> LMClient:
    """The process-wide client for `spec` (see `ClientPool.client`)."""
    return SHARED_POOL.client(spec, api_key)
