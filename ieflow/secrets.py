"""API keys: named by an environment variable, or resolved by the caller and handed in.

Flows take the *name* of an environment variable (`api_key_env`) or of a secret store entry (a
Prefect Secret block, resolved in the Prefect layer: `ieflow_tasks.secrets`), never the key itself:
names are safe in flow parameters, deployment files, logs and checkpoints. The core reads an
environment variable itself; a key from anywhere else comes in as an `ApiKey`, whose value lives
only in memory and never shows in a repr.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["ApiKey", "env_api_key"]


@dataclass(frozen=True)
class ApiKey:
    """A resolved API key and where it came from.

    `source` names the key (where it was read from, never the key): it tells clients with different
    keys apart and is safe to log; `value` is the key itself, kept out of reprs."""

    source: str
    value: str = field(repr=False)


def env_api_key(variable: str | None) -> str | None:
    """The key in the environment variable `variable`; None when unnamed or unset, which leaves the
    choice to litellm (the provider's usual variable, e.g. OPENAI_API_KEY)."""
    return (os.environ.get(variable) or None) if variable else None
