"""From a command's options to its flow's typed parameters, with one source of defaults.

Every option of a flow command defaults to None ("not given"); only the given ones reach the flow's
Pydantic params model, so the others take the model's own defaults: the CLI, the Prefect UI form and
`prefect.yaml` never disagree. The params model is passed in by the command, which imports its flow
only when it runs, so `ieflow --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from ieflow.errors import ConfigError

ParamsT = TypeVar("ParamsT")


def given_options(options: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The options that were given (not None) and name a field of the params model."""
    names = set(fields)
    return {name: value for name, value in options.items() if value is not None and name in names}


def flow_params(model: type[ParamsT], options: Mapping[str, Any]) -> ParamsT:
    """`model` built from the given options; the rest keep the model's defaults."""
    return model(**given_options(options, model.model_fields))  # type: ignore[attr-defined]


def named_paths(option: str, values: list[str] | None) -> dict[str, str] | None:
    """`NAME=PATH` option values as {name: path}; None when the option was not given."""
    if not values:
        return None
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"{option} wants NAME=PATH (e.g. receipts=data/receipts), got {value!r}")
        pairs[name.strip()] = path.strip()
    return pairs
