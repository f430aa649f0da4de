"""The Prefect side of API keys and passwords: Secret blocks are loaded here, never in the core.

Flows take the *name* of a Secret block (`api_key_secret`, `pdf_password_secret`), never the value:
names are safe in flow parameters, deployment files, logs and checkpoints. The value is loaded
where it is used (inside the task that builds the model client) and handed to the core (`ieflow`)
as a plain string or an `ieflow.secrets.ApiKey`; it lives only in memory.
"""

from __future__ import annotations

from pathlib import Path

from prefect.blocks.system import Secret

from ieflow import preflight as core_preflight
from ieflow.errors import ConfigError
from ieflow.secrets import ApiKey, env_api_key

__all__ = ["preflight", "resolve_api_key", "secret_api_key", "secret_value"]


def secret_value(block_name: str) -> str:
    """The value of the Prefect Secret block `block_name`, or a one-line ConfigError."""
    try:
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
    return env_api_key(api_key_env)


def secret_api_key(api_key_secret: str | None) -> ApiKey | None:
    """The key of the Secret block `api_key_secret` for the core's batch run; None when unnamed."""
    if not api_key_secret:
        return None
    return ApiKey(f"prefect-secret:{api_key_secret}", secret_value(api_key_secret))


def preflight(
    model: str,
    api_base: str | None = None,
    api_key_env: str | None = None,
    schema_path: str | Path | None = None,
    labels_path: str | Path | None = None,
    *,
    api_key_secret: str | None = None,
    endpoint_timeout_s: float = 3.0,
) -> None:
    """`ieflow.preflight.preflight`, where a Secret block named by `api_key_secret` is the key check:
    a missing or empty block (or one given beside `api_key_env`) fails there in one line."""
    core_preflight.preflight(
        model,
        api_base,
        api_key_env,
        schema_path,
        labels_path,
        load_key=(lambda: resolve_api_key(api_key_env, api_key_secret)) if api_key_secret else None,
        endpoint_timeout_s=endpoint_timeout_s,
    )
