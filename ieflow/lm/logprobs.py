"""Token log-probabilities through the LM client: which requests ask for them, how an answer's are
read, and how the response cache keeps them.

Remote models are asked (`logprobs=True`) only where litellm lists the parameter for their
provider: others reject it or drop it. The local llama.cpp models record them unasked. Where an
answer has none, the reason travels with it (`note`), so a confidence is never made up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ieflow.confidence import TokenLogprob, logprobs_from_openai
from ieflow.lm.pricing import is_local

NOT_KEPT_IN_CACHE = "the answer came from a cache entry written before log-probabilities were kept"
NOT_RETURNED = "the provider returned no token log-probabilities"


@dataclass(frozen=True)
class AnswerLogprobs:
    """An answer's token log-probabilities, or why it has none."""

    tokens: list[TokenLogprob] | None
    note: str | None = None

    @classmethod
    def not_returned(cls) -> AnswerLogprobs:
        return cls(None, NOT_RETURNED)


def asks_logprobs(model: str) -> bool:
    """Whether a request to `model` carries `logprobs=True` (never for local models: they record
    them anyway)."""
    if is_local(model):
        return False
    import litellm

    litellm.suppress_debug_info = True  # no provider-list banner for a model it cannot route
    try:
        name, provider, _, _ = litellm.get_llm_provider(model)
        supported = litellm.get_supported_openai_params(model=name, custom_llm_provider=provider)
    except Exception:  # litellm raises for a model it cannot route; the call will say so itself
        return False
    return bool(supported) and "logprobs" in supported


def read_logprobs(model: str, choice: Any, asked: bool) -> AnswerLogprobs:
    """The log-probabilities in a litellm choice (`choice.logprobs.content`, OpenAI's shape)."""
    logprobs = getattr(choice, "logprobs", None)
    content = logprobs.get("content") if isinstance(logprobs, dict) else getattr(logprobs, "content", None)
    tokens = logprobs_from_openai(content)
    if tokens is not None:
        return AnswerLogprobs(tokens)
    if not asked and not is_local(model):
        return AnswerLogprobs(None, f"{model}: litellm lists no `logprobs` parameter for this provider")
    return AnswerLogprobs(None, NOT_RETURNED)


def to_cache(answer: AnswerLogprobs) -> dict[str, Any]:
    """The cache entry's fields: tokens as [text, logprob, n_bytes] triples, and the note."""
    tokens = None if answer.tokens is None else [[t.token, t.logprob, t.n_bytes] for t in answer.tokens]
    return {"logprobs": tokens, "logprobs_note": answer.note}


def from_cache(stored: dict[str, Any]) -> AnswerLogprobs:
    """The log-probabilities a cache entry kept; entries older than them load with a note."""
    if "logprobs" not in stored:
        return AnswerLogprobs(None, NOT_KEPT_IN_CACHE)
    if stored["logprobs"] is None:
        return AnswerLogprobs(None, stored.get("logprobs_note") or NOT_RETURNED)
    return AnswerLogprobs([TokenLogprob(str(t), float(lp), int(n)) for t, lp, n in stored["logprobs"]])
