"""ExtractionProgram: the JSON artifact that says how to extract a record from a document.

A program is the schema, the student model and its parameters, named text components (the
`instruction`, one `field:<path>` description per schema field), few-shot `demos`, and the
long-document strategy. Optimizers change the text components and demos; everything that changes
what the model sees changes the program's hash, so evaluation caches never serve a stale answer.
The lesson log and metadata ride along with the program but are not part of its hash.

A program is data and the prompt assembled from it (`messages`, `response_schema`); running it on
a document is `ieflow.extraction.extract(program, text)`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ieflow import config, storage
from ieflow.errors import ProgramError, UserError
from ieflow.formats import get_format, render_record
from ieflow.schema import (
    field_paths,
    field_schema,
    load_schema,
    resolve,
    top_level_fields,
    type_label,
    types_of,
)
from ieflow.strategy import STRATEGY, LongDocStrategy  # re-exported: its home was this module
from ieflow.trace import Trace  # re-exported: its home was this module

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEMOS",
    "FIELD_PREFIX",
    "INSTRUCTION",
    "OUTPUT_FORMATS",
    "STRATEGY",
    "Demo",
    "ExtractionProgram",
    "LongDocStrategy",
    "Trace",
    "grammar_schema",
]

# Component names, as optimizers, lessons and run logs name what an edit changed.
INSTRUCTION = "instruction"
FIELD_PREFIX = "field:"  # + a field path: that field's description
DEMOS = "demos"  # the worked demos, as one component
OUTPUT_FORMATS = "formats"  # the per-field output formats, as one component
DEFAULT_INSTRUCTION = "Extract the fields below from the document as one JSON object."
DEFAULT_MAX_ITEMS = 25  # grammar-constrained arrays need a bound or tiny models loop inside them


@dataclass(frozen=True)
class Demo:
    """A worked example shown to the model: document text (trimmed) and its correct record."""

    doc_id: str
    text: str
    record: dict[str, Any]


@dataclass
class ExtractionProgram:
    schema: dict[str, Any]
    model: str = config.DEFAULT_STUDENT_MODEL
    model_params: dict[str, Any] = field(default_factory=lambda: {"temperature": 0.0, "max_tokens": 400})
    components: dict[str, str] = field(default_factory=dict)
    demos: list[Demo] = field(default_factory=list)
    strategy: LongDocStrategy = field(default_factory=LongDocStrategy)
    name: str = "program"
    lessons: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # field path -> output format name (see ieflow/formats.py): copy as printed, convert in code
    formats: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        paths = set(field_paths(self.schema))
        for path, name in self.formats.items():
            get_format(name)
            if path not in paths:
                raise ValueError(f"output format {name!r} names unknown field {path!r}")
        self.strategy.check_fields(top_level_fields(self.schema))

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_schema(
        cls,
        schema: dict[str, Any] | str | Path,
        *,
        model: str | None = None,
        instruction: str = DEFAULT_INSTRUCTION,
        name: str | None = None,
        strategy: LongDocStrategy | None = None,
    ) -> ExtractionProgram:
        """The default program: the schema's own descriptions as field components."""
        loaded = load_schema(schema)
        components = {INSTRUCTION: instruction}
        for path in field_paths(loaded):
            components[FIELD_PREFIX + path] = str(field_schema(loaded, path).get("description", ""))
        return cls(
            schema=loaded,
            model=model or config.student_model(),
            components=components,
            strategy=strategy or LongDocStrategy(),
            name=name or str(loaded.get("title", "program")).lower(),
        )

    def replace(self, **changes: Any) -> ExtractionProgram:
        """A copy with some attributes changed (components are merged, not replaced). The
        `strategy` component (`STRATEGY`) is JSON that changes the named strategy keys."""
        new = copy.deepcopy(self)
        components = dict(changes.pop("components", None) or {})
        if STRATEGY in components:
            new.strategy = new.strategy.with_json(components.pop(STRATEGY))
        if components:
            unknown = set(components) - set(self.components)
            if unknown:
                raise KeyError(f"unknown components: {sorted(unknown)}")
            new.components.update(components)
        for key, value in changes.items():
            setattr(new, key, value)
        new.__post_init__()
        return new

    # -- identity --------------------------------------------------------------------------------

    def content(self) -> dict[str, Any]:
        """Everything that determines the model's input: the part the hash covers."""
        return {
            "schema": self.schema,
            "model": self.model,
            "model_params": self.model_params,
            "components": self.components,
            "demos": [asdict(d) for d in self.demos],
            "strategy": self.strategy.to_dict(),
        } | ({"formats": dict(sorted(self.formats.items()))} if self.formats else {})

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    # -- persistence -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "ieflow_program": 1,
            "name": self.name,
            "hash": self.hash,
            **self.content(),
            "lessons": self.lessons,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractionProgram:
        """The program a `to_dict` wrote; `ProgramError` (one line) for anything else, or for a
        file whose hash no longer matches its content."""
        if not isinstance(data, dict) or data.get("ieflow_program") != 1:
            raise ProgramError("not an ieflow program file (missing 'ieflow_program': 1)")
        missing = [key for key in ("schema", "model", "components") if key not in data]
        if missing:
            raise ProgramError(f"the program file lacks {', '.join(map(repr, missing))}")
        try:
            program = cls(
                schema=load_schema(data["schema"]),
                model=data["model"],
                model_params=dict(data.get("model_params", {})),
                components=dict(data["components"]),
                demos=[_demo(item, i) for i, item in enumerate(data.get("demos", []))],
                strategy=LongDocStrategy.from_dict(data.get("strategy", {})),
                name=data.get("name", "program"),
                lessons=list(data.get("lessons", [])),
                metadata=dict(data.get("metadata", {})),
                formats=dict(data.get("formats", {})),
            )
        except UserError:
            raise
        except (KeyError, TypeError, ValueError) as exc:  # a field of the wrong shape, an unknown strategy
            raise ProgramError(f"the program file is malformed: {exc}") from None
        if "hash" in data and data["hash"] != program.hash:
            raise ProgramError(
                f"program file hash {data['hash']} does not match its content ({program.hash}): "
                "the file was edited by hand; delete the 'hash' line to accept the edit"
            )
        return program

    def save(self, path: str | Path) -> None:
        storage.write_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> ExtractionProgram:
        """The program saved at `path`; `ProgramError` naming the file if it is not one."""
        try:
            return cls.from_dict(storage.read_json(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProgramError(f"program {path} is not valid JSON: {exc}") from None
        except ProgramError as exc:
            raise ProgramError(f"program {path}: {exc}") from None

    # -- prompt assembly -------------------------------------------------------------------------

    def component(self, name: str) -> str:
        """A component's text by name, the `strategy` component included (its JSON)."""
        return self.strategy.to_json() if name == STRATEGY else self.components[name]

    def field_groups(self) -> list[list[str]]:
        """The top-level fields read together in one call, per call (see `LongDocStrategy`)."""
        names = top_level_fields(self.schema)
        groups = [list(group) for group in self.strategy.field_groups]
        grouped = {name for group in groups for name in group}
        rest = [name for name in names if name not in grouped]
        size = self.strategy.fields_per_call or len(rest) or 1
        groups.extend(rest[i : i + size] for i in range(0, len(rest), size))
        return groups

    def for_fields(self, names: list[str]) -> ExtractionProgram:
        """The program narrowed to some top-level fields: their schema, descriptions, formats and
        the demos' values for them, so its prompt and grammar ask for those fields only."""
        keep = set(names)
        schema = copy.deepcopy(self.schema)
        schema["properties"] = {k: v for k, v in schema["properties"].items() if k in keep}
        if "required" in schema:
            schema["required"] = [k for k in schema["required"] if k in keep]

        def kept(path: str) -> bool:
            return path.split(".")[0].removesuffix("[]") in keep

        components = {
            key: text
            for key, text in self.components.items()
            if not key.startswith(FIELD_PREFIX) or kept(key[len(FIELD_PREFIX) :])
        }
        demos = [Demo(d.doc_id, d.text, {k: v for k, v in d.record.items() if k in keep}) for d in self.demos]
        formats = {path: name for path, name in self.formats.items() if kept(path)}
        return ExtractionProgram(
            schema, self.model, self.model_params, components, demos, name=self.name, formats=formats
        )

    def field_descriptions(self) -> dict[str, str]:
        return {
            key[len(FIELD_PREFIX) :]: text
            for key, text in self.components.items()
            if key.startswith(FIELD_PREFIX)
        }

    def system_prompt(self) -> str:
        lines = [self.components.get(INSTRUCTION, DEFAULT_INSTRUCTION).strip(), "", "Fields:"]
        for path, description in self.field_descriptions().items():
            node = field_schema(self.schema, path)
            kind = (
                get_format(self.formats[path]).label
                if path in self.formats
                else type_label(node, empty="any", detail=True)
            )
            text = f"- {path} ({kind})"
            lines.append(f"{text}: {description.strip()}" if description.strip() else text)
        lines.append("")
        lines.append("Answer with one JSON object with exactly these keys. Use null when a value is absent.")
        return "\n".join(lines)

    def response_schema(self, document_text: str | None = None) -> dict[str, Any]:
        """The schema sent for constrained decoding (see `grammar_schema`); output formats may
        narrow a field to the values `document_text` prints."""
        return grammar_schema(self.schema, formats=self.formats, text=document_text)

    def messages(self, document_text: str) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.system_prompt()}]
        for demo in self.demos:
            messages.append({"role": "user", "content": f"Document:\n{demo.text}"})
            record = render_record(demo.record, self.formats, demo.text)
            messages.append({"role": "assistant", "content": json.dumps(record, ensure_ascii=False)})
        messages.append({"role": "user", "content": f"Document:\n{document_text}"})
        return messages


_DEMO_KEYS = ("doc_id", "text", "record")


def _demo(item: Any, index: int) -> Demo:
    if not isinstance(item, dict) or set(item) != set(_DEMO_KEYS):
        keys = sorted(item) if isinstance(item, dict) else type(item).__name__
        raise ProgramError(f"demos[{index}] must have exactly the keys doc_id, text and record, not {keys}")
    if not (isinstance(item["doc_id"], str) and isinstance(item["text"], str)):
        raise ProgramError(f"demos[{index}]: doc_id and text must be strings")
    if not isinstance(item["record"], dict):
        raise ProgramError(f"demos[{index}]: record must be a JSON object")
    return Demo(**item)


def grammar_schema(
    schema: dict[str, Any],
    max_items: int = DEFAULT_MAX_ITEMS,
    formats: dict[str, str] | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """The record schema rewritten for constrained decoding.

    llama.cpp's grammar conversion drops `format` and `pattern` from a field typed
    `["string", "null"]` but keeps them under `anyOf: [{"type": "string", ...}, {"type": "null"}]`
    (measured here), so nullable fields are rewritten that way and ISO dates are enforced by the
    grammar. Arrays get a `maxItems` bound. Descriptions are dropped: the prompt carries them.
    Fields with an output format are asked as printed: the format's grammar loosens them.
    """
    formats = formats or {}

    def rewrite(node: Any, path: str = "") -> Any:
        if not isinstance(node, dict):
            return node
        node = resolve(schema, node)
        out = {k: v for k, v in node.items() if k not in ("description", "title", "$defs", "definitions")}
        if path in formats:
            out = get_format(formats[path]).grammar(out, text)
        if "properties" in out:
            prefix = f"{path}." if path else ""
            out["properties"] = {k: rewrite(v, prefix + k) for k, v in out["properties"].items()}
        if isinstance(out.get("items"), dict):
            out["items"] = rewrite(out["items"], f"{path}[]")
        if "array" in types_of(out) and "maxItems" not in out:
            out["maxItems"] = max_items
        kinds = types_of(out)
        if isinstance(out.get("type"), list) and "null" in kinds and len(kinds) == 2:
            (main,) = [k for k in kinds if k != "null"]
            constrained = {k: v for k, v in out.items() if k != "type"}
            return {"anyOf": [{"type": main, **constrained}, {"type": "null"}]}
        return out

    result = rewrite(schema)
    result.pop("$schema", None)
    return result
