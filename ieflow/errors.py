"""Errors in what the user gave: configuration, schema, registry, run folder.

Each message says what is wrong and how to fix it, so the command line prints it as one `error:`
line (exit status 2) instead of a traceback: catch `UserError` to treat them all alike. The classes
keep their historic bases (ValueError, RuntimeError), so existing `except ValueError` still holds.
This module imports nothing, so any module can raise these without an import cycle.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ProgramError",
    "RegistryError",
    "RunConflictError",
    "SchemaError",
    "UserError",
]


class UserError(Exception):
    """An error the user fixes by changing what they gave; the message says how."""


class ConfigError(UserError, ValueError):
    """The run cannot start as configured; the message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line


class SchemaError(UserError, ValueError):
    """The schema is not a valid JSON Schema, or not one that describes a record."""


class ProgramError(UserError, ValueError):
    """A program file that is not one ieflow wrote, or one edited so its hash no longer matches."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line


class RegistryError(UserError, ValueError):
    """A registry operation that cannot be done as asked (the message says why)."""


class RunConflictError(UserError, RuntimeError):
    """The output folder already holds a different run (other documents, program or shard size)."""
