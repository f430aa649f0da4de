"""Checks a run's configuration before any work starts: one clear line per problem, no traceback.

`preflight(model, api_base, api_key_env, schema_path, labels_path)` raises `ConfigError` whose message
is a single line naming what is wrong and how to fix it:

- an unknown provider or model (litellm cannot route it),
- a missing API key: `api_key_env` names an unset variable, or the provider's own variable is unset,
- an unreachable endpoint (a quick HTTP request to `api_base`; any HTTP answer, even 404, counts as
  reachable),
- a schema that is not a valid JSON Schema of a record,
- labels that do not parse or do not match the schema (the first few bad rows, with line numbers).

The API key's *value* never appears in a message: only the name of its variable.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ieflow.errors import ConfigError, SchemaError
from ieflow.labels import load_labels
from ieflow.schema import load_schema

__all__ = ["ConfigError", "preflight"]

# Resolves a key the caller holds by name (a Prefect Secret block, say); raises ConfigError when it
# cannot. Called at the key check, so the cheaper checks before it still fail first.
KeyLoader = Callable[[], object]


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_model(model: str) -> str:
    """The litellm provider of `model`, or ConfigError."""
    if not model or not isinstance(model, str):
        raise ConfigError("no model given: pass a litellm model name such as 'openai/gpt-4o-mini'")
    if model.startswith("local/"):
        return "local"
    import litellm

    try:
        _, provider, _, _ = litellm.get_llm_provider(model)
    except Exception:  # litellm raises BadRequestError with a multi-line banner
        raise ConfigError(
            f"unknown model {model!r}: litellm cannot tell its provider; "
            "prefix it with one, e.g. 'openai/<name>' or 'ollama/<name>'"
        ) from None
    return provider


def check_api_key(
    model: str,
    provider: str,
    api_base: str | None,
    api_key_env: str | None,
    load_key: KeyLoader | None = None,
) -> None:
    if provider == "local":
        return
    if load_key is not None:
        load_key()  # a key named elsewhere: loading it is the check (a missing one fails here)
        return
    if api_key_env:
        if not os.environ.get(api_key_env):
            raise ConfigError(
                f"missing API key: environment variable {api_key_env} is not set (model {model})"
            )
        return
    import litellm

    try:
        found = litellm.validate_environment(model)
    except Exception as exc:
        raise ConfigError(f"cannot check the environment of model {model!r}: {_one_line(exc)}") from None
    missing = list(found.get("missing_keys") or [])
    if api_base:  # a given endpoint satisfies the *_API_BASE variables
        missing = [k for k in missing if not k.endswith(("_API_BASE", "_BASE_URL"))]
    if missing:
        raise ConfigError(
            f"missing API key for model {model!r}: set {', '.join(missing)} "
            "(or name another variable with api_key_env)"
        )


def check_endpoint(api_base: str, timeout_s: float = 3.0) -> None:
    if not api_base.startswith(("http://", "https://")):
        raise ConfigError(f"endpoint {api_base!r} is not an http(s) URL")
    try:
        with urllib.request.urlopen(urllib.request.Request(api_base, method="GET"), timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # the server answered: reachable
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"endpoint {api_base} is unreachable: {_one_line(reason, 160)}") from None


def check_schema(schema_path: str | Path) -> dict:
    """A JSON Schema file, or a program file (its `schema` is checked)."""
    source: str | Path | dict = schema_path
    try:
        data = json.loads(Path(schema_path).read_text(encoding="utf-8"))
        if isinstance(data, dict) and "ieflow_program" in data and isinstance(data.get("schema"), dict):
            source = data["schema"]
    except (OSError, ValueError):
        pass  # load_schema reports a missing or broken file in its own words
    try:
        return load_schema(source)
    except SchemaError as exc:
        raise ConfigError(f"bad schema {schema_path}: {_one_line(exc)}") from None


def check_labels(labels_path: str | Path, schema: dict) -> None:
    path = Path(labels_path)
    if not path.is_file():
        raise ConfigError(f"labels file not found: {path}")
    try:
        records, errors = load_labels(path, schema)
    except Exception as exc:
        raise ConfigError(f"cannot read labels {path}: {_one_line(exc)}") from None
    if errors:
        shown = "; ".join(_one_line(str(e), 160) for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ConfigError(f"{len(errors)} label row(s) in {path} do not match the schema: {shown}{more}")
    if not records:
        raise ConfigError(f"labels file {path} holds no usable rows")


def preflight(
    model: str,
    api_base: str | None = None,
    api_key_env: str | None = None,
    schema_path: str | Path | None = None,
    labels_path: str | Path | None = None,
    *,
    load_key: KeyLoader | None = None,
    endpoint_timeout_s: float = 3.0,
) -> None:
    """Raise ConfigError (one line) on the first problem found; cheap checks first.

    `load_key` stands in for the key check when the key is held elsewhere than in an environment
    variable (the Prefect layer passes the loading of a Secret block: `ieflow_tasks.secrets`)."""
    schema = check_schema(schema_path) if schema_path is not None else None
    if labels_path is not None:
        if schema is None:
            raise ConfigError("labels given without a schema to check them against")
        check_labels(labels_path, schema)
    provider = check_model(model)
    check_api_key(model, provider, api_base, api_key_env, load_key)
    if api_base:
        check_endpoint(api_base, endpoint_timeout_s)
