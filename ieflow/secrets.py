"""API keys and passwords from the environment or from Prefect Secret blocks.

Flows take the *name* of an environment variable (`api_key_env`) or of a Prefect Secret block
(`api_key_secret`), never the key itself: names are safe in flow parameters, deployment files,
logs and checkpoints; the value is read where the client is built and lives only in memory.
"""

from __future__ import annotations

import os

from ieflow.preflight import ConfigError


def secret_value(block_name: str) -> str:
    """The value of the Prefect Secret block `block_name`, or a one-line ConfigError."""
    try:
        from prefect.blocks.system import Secret

        value = Secret.load(block_name).get()
    except Exception as exc:  # Prefect raises ValueError, ObjectNotFound, HTTP errors...
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ConfigError(f"cannot load Prefect Secret block {block_name!r}: {reason}") from None
    if not value:
        raise ConfigError(f"Prefect Secret block {block_name!r} is empty")
    return str(value)


def resolve_api_key(api_key_env: str | None = None, api_key_secret: str | None = None) -> str | None:
    """The API key named by an environment variable or a Secret block; None leaves the choice to
    litellm (the provider's usual variable, e.g. OPENAI_API_KEY)."""
    if api_key_env and api_key_secret:
        raise ConfigError("give api_key_env or api_key_secret, not both")
    if api_key_secret:
        return secret_value(api_key_secret)
    if api_key_env:
        return os.environ.get(api_key_env) or None
    return None


__all__ = ["resolve_api_key", "secret_value"]
