"""Token counts that match the model a prompt is for.

`count_tokens(text, model)` is the one count every budget check uses (what a program reads of a
document, its demos, the windows it cuts). It asks, in order:

- a counter registered for the model's name prefix (`register_token_counter`);
- for `local/<alias>`, the GGUF's own tokenizer, loaded vocabulary-only (no weights: fast, small),
  once per model file;
- litellm's `token_counter` for a model litellm knows (its cost map names it);
- else the word-and-punctuation estimate times `ESTIMATE_MARGIN`, measured as the 95th percentile
  of Qwen BPE / estimate over the shared datasets (benchmarks/longdoc.py, docs/longdoc.md), so an
  unknown tokenizer is more likely to be overestimated than overflowed.

`model=None` is the bare estimate, as every count was before counts knew the model. Counts are
cached per (model, text), so a long document is tokenized once however many checks ask.
"""

from __future__ import annotations

import atexit
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "ESTIMATE_MARGIN",
    "TokenCounter",
    "count_tokens",
    "counter_for",
    "estimate_tokens",
    "register_token_counter",
]

_ESTIMATE = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# 95th percentile (2.28) of Qwen2.5 BPE tokens / estimate per document over deepform, sroie, kleister_nda
# and cuad (benchmarks/longdoc.py tokens; docs/longdoc.md has the table).
ESTIMATE_MARGIN = 2.3


@dataclass(frozen=True)
class TokenCounter:
    """How one model's tokens are counted: `source` says which tokenizer (for reports)."""

    source: str
    count: Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """Words and punctuation marks: fast, and close to BPE counts for plain English prose only."""
    return sum(1 for _ in _ESTIMATE.finditer(text))


_REGISTERED: dict[str, TokenCounter] = {}


def register_token_counter(prefix: str, count: Callable[[str], int], source: str = "registered") -> None:
    """Count the tokens of every model whose name starts with `prefix` with `count`."""
    _REGISTERED[prefix] = TokenCounter(source, count)
    counter_for.cache_clear()
    _cached_count.cache_clear()


def count_tokens(text: str, model: str | None = None) -> int:
    """Tokens of `text` for `model` (see the module docstring for which tokenizer is used)."""
    if model is None:
        return estimate_tokens(text)
    return _cached_count(model, text)


@lru_cache(maxsize=256)
def _cached_count(model: str, text: str) -> int:
    return counter_for(model).count(text)


@lru_cache(maxsize=64)
def counter_for(model: str) -> TokenCounter:
    """The counter `count_tokens` uses for `model`."""
    for prefix, counter in _REGISTERED.items():
        if model.startswith(prefix):
            return counter
    if model.startswith("local/"):
        local = _local_counter(model.removeprefix("local/"))
        if local is not None:
            return local
    elif _litellm_knows(model):
        return TokenCounter("litellm", lambda text: _litellm_count(model, text))
    return TokenCounter("estimate", _margin_estimate)


def _margin_estimate(text: str) -> int:
    return math.ceil(estimate_tokens(text) * ESTIMATE_MARGIN)


def _local_counter(alias: str) -> TokenCounter | None:
    """The GGUF's tokenizer, or None when the model or llama-cpp-python is not installed."""
    from ieflow.lm.local import LocalModelError, gguf_path

    try:
        vocab = _vocab(str(gguf_path(alias)))
    except (LocalModelError, ImportError, OSError, ValueError, RuntimeError):
        return None
    return TokenCounter("gguf", vocab.count)


class _Vocab:
    """A GGUF loaded with its vocabulary only; tokenize calls are serialized (llama.cpp objects
    are not thread-safe)."""

    def __init__(self, path: str) -> None:
        from llama_cpp import Llama

        self.llama = Llama(model_path=path, vocab_only=True, verbose=False)
        self.lock = threading.Lock()

    def count(self, text: str) -> int:
        with self.lock:
            return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))


_VOCABS: dict[str, _Vocab] = {}
_VOCABS_LOCK = threading.Lock()


def _vocab(path: str) -> _Vocab:
    with _VOCABS_LOCK:
        if path not in _VOCABS:
            _VOCABS[path] = _Vocab(path)
        return _VOCABS[path]


@atexit.register
def _close_vocabs() -> None:
    # Freed while the interpreter is intact (see ieflow.lm.local._close_models).
    with _VOCABS_LOCK:
        for vocab in _VOCABS.values():
            vocab.llama.close()
        _VOCABS.clear()


def _litellm_knows(model: str) -> bool:
    """Whether litellm's cost map names the model (with or without its provider prefix); asked
    without `get_model_info`, which prints a banner for every name it does not know."""
    import litellm

    return model in litellm.model_cost or model.split("/", 1)[-1] in litellm.model_cost


def _litellm_count(model: str, text: str) -> int:
    import litellm

    return int(litellm.token_counter(model=model, text=text))
