"""A schema from a stranger: refuse what would fetch, loop or hang, and validate in linear time.

Three rules, checked once when a schema is loaded (`check_untrusted`):
- every `$ref`/`$dynamicRef` is local (`#...`): jsonschema would otherwise fetch the URL on each
  validation (once per model answer), and a batch must not reach the network for its schema;
- no `$ref` cycle: a record has a finite shape, and every walker over the schema (prompts, null
  records, Parquet types) would recurse without end;
- every `pattern` (and `patternProperties` key) compiles in RE2, whose matching time is linear in
  the input: `^(a+)+$` against a 40-character answer takes seconds to hours in Python's `re`.

`make_validator` builds the validator every part of ieflow uses: `pattern` matched with RE2, and a
reference registry that refuses to retrieve anything, so even a schema that skipped the check
cannot make a validation fetch.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import jsonschema
import re2
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.exceptions import NoSuchResource

_REF_KEYS = ("$ref", "$dynamicRef")


class UnsafeSchemaError(ValueError):
    """The schema would fetch, loop or hang; `ieflow.schema.load_schema` raises it as SchemaError."""


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print its own line on stderr besides our error


def check_untrusted(schema: dict[str, Any]) -> None:
    """Raise `UnsafeSchemaError` (one line) if `schema` has a non-local or cyclic `$ref` or a pattern
    RE2 cannot run."""
    references: dict[str, set[str]] = {}  # where a $ref stands -> the pointers it refers to
    for where, node in _nodes(schema, ""):
        for key in _REF_KEYS:
            ref = node.get(key)
            if not isinstance(ref, str):
                continue
            if not ref.startswith("#"):
                raise UnsafeSchemaError(
                    f"{key} {ref!r} at {where or '<root>'} is not local: ieflow fetches nothing "
                    "for a schema; put the definition under $defs and refer to it as '#/$defs/...'"
                )
            references.setdefault(_pointer(where), set()).add(ref[1:])
        for pattern, at in _patterns(node, where):
            compile_pattern(pattern, at)
    _check_cycles(references)


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


def compile_pattern(pattern: str, where: str = "") -> Any:
    """The RE2 form of a schema `pattern`; `UnsafeSchemaError` naming the place if RE2 cannot run it."""
    try:
        return _compiled(pattern)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise UnsafeSchemaError(
            f"pattern {pattern!r} at {where or '<root>'} is not supported ({reason}): ieflow matches "
            "patterns with RE2, which has no lookaround or backreferences but never hangs"
        ) from None


def make_validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    """A validator for `schema` (its declared draft, 2020-12 by default) with RE2 patterns, formats
    checked, and no retrieval of remote references."""
    base = jsonschema.validators.validator_for(schema, default=Draft202012Validator)
    cls = _linear_time(base)
    return cls(schema, format_checker=base.FORMAT_CHECKER, registry=_NO_FETCH)


def _refuse(uri: str) -> Any:
    raise NoSuchResource(ref=uri)  # surfaces as a resolution error, never a network call


_NO_FETCH: Registry = Registry(retrieve=_refuse)


def _re2_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not compile_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@lru_cache(maxsize=8)
def _linear_time(base: type) -> type:
    return jsonschema.validators.extend(base, {"pattern": _re2_pattern})


def _nodes(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every sub-schema (every dict, in fact: a stray dict under `enum` is checked too, harmlessly)."""
    stack = [(where, node)]
    while stack:
        at, current = stack.pop()
        if isinstance(current, dict):
            yield at, current
            stack.extend((f"{at}/{k}" if at else str(k), v) for k, v in current.items())
        elif isinstance(current, list):
            stack.extend((f"{at}/{i}", v) for i, v in enumerate(current))


def _patterns(node: dict[str, Any], where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node.get("pattern"), str):
        yield node["pattern"], f"{where}/pattern" if where else "pattern"
    keyed = node.get("patternProperties")
    if isinstance(keyed, dict):
        yield from ((key, f"{where}/patternProperties") for key in keyed if isinstance(key, str))


def _check_cycles(edges: dict[str, set[str]]) -> None:
    """Depth-first over what each sub-schema refers to (any `$ref` inside its subtree), from the
    root: a reference back to a sub-schema on the current path, or to an ancestor, is a cycle."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(pointer: str) -> None:
        state[pointer] = 1
        for source, targets in edges.items():
            if not _within(source, pointer):
                continue
            for target in sorted(targets):
                if state.get(target) == 1 or _within(pointer, target):
                    raise UnsafeSchemaError(
                        f"$ref '#{target}' is recursive: a record must have a finite shape, so "
                        "ieflow does not support recursive schemas"
                    )
                if target not in state:
                    visit(target)
        state[pointer] = 2

    visit("")


def _pointer(where: str) -> str:
    return "/" + where if where else ""


def _within(inner: str, outer: str) -> bool:
    """Whether JSON pointer `inner` lies at or below `outer` ('' is the root)."""
    return inner == outer or inner.startswith(outer + "/") or outer == ""
