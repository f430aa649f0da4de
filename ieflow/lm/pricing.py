"""Cost per call: litellm's cost map, user-set prices for models it does not know, $0 for local models.

A model with no known price costs $0 *with one warning*, never silently.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("ieflow.lm")


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


_USER_PRICES: dict[str, ModelPrice] = {}
_WARNED: set[str] = set()
_LOCK = threading.Lock()


def set_price(model: str, price: ModelPrice) -> None:
    """Set the price of a model litellm does not know (or override its price)."""
    with _LOCK:
        _USER_PRICES[model] = price
    _register_with_litellm(model, price)


def _register_with_litellm(model: str, price: ModelPrice) -> None:
    # litellm prices every response itself; for a model missing from its cost map that lookup
    # fails slowly (about 2.5 ms of CPU per call, measured). Registered, it is a quick hit.
    import litellm

    provider = model.split("/", 1)[0] if "/" in model else "openai"
    litellm.register_model(
        {
            model: {
                "input_cost_per_token": price.input_per_mtok / 1e6,
                "output_cost_per_token": price.output_per_mtok / 1e6,
                "cache_creation_input_token_cost": 0.0,
                "cache_read_input_token_cost": 0.0,
                "litellm_provider": provider,
                "mode": "chat",
            }
        }
    )


_ENV_PRICES: dict[str, dict[str, ModelPrice]] = {}


def _env_prices() -> dict[str, ModelPrice]:
    # IEFLOW_MODEL_PRICES='{"openai/my-vllm": {"input_per_mtok": 0.1, "output_per_mtok": 0.3}}'
    raw = os.environ.get("IEFLOW_MODEL_PRICES")
    if not raw:
        return {}
    if raw not in _ENV_PRICES:  # parsed (and registered with litellm) once per value
        try:
            table = {name: ModelPrice(**spec) for name, spec in json.loads(raw).items()}
        except (ValueError, TypeError) as exc:
            raise ValueError(f"IEFLOW_MODEL_PRICES is not valid JSON of model -> prices: {exc}") from exc
        for name, price in table.items():
            _register_with_litellm(name, price)
        _ENV_PRICES[raw] = table
    return _ENV_PRICES[raw]


def register_prices() -> None:
    """Make user prices known to litellm before the first call (LMClient does this)."""
    _env_prices()


def is_local(model: str) -> bool:
    return model.startswith("local/")


def call_cost(
    model: str, prompt_tokens: int, completion_tokens: int, response: object | None = None
) -> float:
    """Dollar cost of one call."""
    if is_local(model):
        return 0.0
    price = _USER_PRICES.get(model) or _env_prices().get(model)
    if price is not None:
        return price.cost(prompt_tokens, completion_tokens)
    import litellm

    try:
        if response is not None:
            computed = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
            if computed is not None:  # litellm priced this response already
                return float(computed)
            return float(litellm.completion_cost(completion_response=response))
        return float(
            litellm.completion_cost(
                model=model,
                prompt="",
                completion="",
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        )
    except Exception:  # litellm raises a bare Exception for unmapped models
        with _LOCK:
            if model not in _WARNED:
                _WARNED.add(model)
                log.warning(
                    "No price known for model %r: its calls are counted as $0. Set one with "
                    "ieflow.lm.set_price() or IEFLOW_MODEL_PRICES.",
                    model,
                )
        return 0.0


def call_seconds(raw: object, started: float) -> float:
    """The model's own time: measured inside an in-process model's lock (the wait behind other
    documents left out), else since the last attempt got its concurrency slot."""
    measured = (getattr(raw, "_hidden_params", None) or {}).get("ieflow_model_s")
    return float(measured) if measured is not None else time.perf_counter() - started
