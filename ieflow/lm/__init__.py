"""Model calls: one litellm-based client, the embedded local models, and a fake server for tests."""

from ieflow.lm.cache import ResponseCache
from ieflow.lm.client import LMClient, LMResponse, UsageMeter
from ieflow.lm.errors import LMError, LMRequestError, LMUnavailableError, StructuredOutputError
from ieflow.lm.pricing import ModelPrice, set_price

__all__ = [
    "LMClient",
    "LMError",
    "LMRequestError",
    "LMResponse",
    "LMUnavailableError",
    "ModelPrice",
    "ResponseCache",
    "StructuredOutputError",
    "UsageMeter",
    "set_price",
]
