"""A persistent response cache, keyed by everything that determines a model's answer.

diskcache (SQLite underneath) is safe across threads and processes; values are stored as JSON,
never pickled. A re-run with the same model, messages, parameters and schema makes no model call.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import diskcache

_OPEN: dict[str, diskcache.Cache] = {}
_OPEN_LOCK = threading.Lock()


def request_key(model: str, messages: list[dict], params: dict, response_schema: dict | None) -> str:
    """A stable hash of the request. Secrets (api keys) are never part of `params`."""
    canonical = json.dumps(
        {"model": model, "messages": messages, "params": params, "schema": response_schema},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """On-disk cache of raw model answers (text and usage)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = str(Path(directory).expanduser())
        with _OPEN_LOCK:
            store = _OPEN.get(self.directory)
            if store is None:
                Path(self.directory).mkdir(parents=True, exist_ok=True)
                store = diskcache.Cache(self.directory, disk=diskcache.JSONDisk, disk_compress_level=1)
                _OPEN[self.directory] = store
        self._store = store

    def get(self, key: str) -> dict[str, Any] | None:
        return self._store.get(key)

    def set(self, key: str, value: dict[str, Any]) -> None:
        self._store.set(key, value)

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()
