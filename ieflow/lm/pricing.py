"""Cost per call: litellm's cost map, user-set prices for models it does not know, $0 for local models.

A model with no known price costs $0 *with one warning*, never silently.
"""

from __future__ import annotations

import json
import logging
import os
import threading
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


def _env_prices() -> dict[str, ModelPrice]:
    # IEFLOW_MODEL_PRICES='{"openai/my-vllm": {"input_per_mtok": 0.1, "output_per_mtok": 0.3}}'
    raw = os.environ.get("IEFLOW_MODEL_PRICES")
    if not raw:
        return {}
    try:
        table = json.loads(raw)
        return {name: ModelPrice(**spec) for name, spec in table.items()}
    except (ValueError, TypeError) as exc:
        raise ValueError(f"IEFLOW_MODEL_PRICES is not valid JSON of model -> prices: {exc}") from exc


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
