"""A readable diff of two extraction programs: which components changed, and how."""

from __future__ import annotations

import difflib
import json

from ieflow.program import STRATEGY, ExtractionProgram


def changed_components(a: ExtractionProgram, b: ExtractionProgram) -> list[str]:
    """Names of components whose text differs (or exists in only one program); `strategy` when the
    long-document strategy (chunk size, top-k, field grouping...) differs."""
    names = list(dict.fromkeys([*a.components, *b.components]))
    changed = [n for n in names if a.components.get(n) != b.components.get(n)]
    return changed + ([STRATEGY] if a.strategy != b.strategy else [])


def diff_programs(a: ExtractionProgram, b: ExtractionProgram) -> str:
    lines = [f"--- {a.name} {a.hash}", f"+++ {b.name} {b.hash}"]
    if a.hash == b.hash:
        return "\n".join([*lines, "programs are identical"])
    for name in [n for n in changed_components(a, b) if n != STRATEGY]:
        lines.append(f"component {name}:")
        old = (a.components.get(name) or "").splitlines() or [""]
        new = (b.components.get(name) or "").splitlines() or [""]
        lines.extend(
            "  " + d
            for d in difflib.unified_diff(old, new, lineterm="", n=1)
            if not d.startswith(("---", "+++"))
        )
    if a.model != b.model or a.model_params != b.model_params:
        lines.append(f"model: {a.model} {a.model_params} -> {b.model} {b.model_params}")
    if [d.doc_id for d in a.demos] != [d.doc_id for d in b.demos]:
        lines.append(f"demos: {[d.doc_id for d in a.demos]} -> {[d.doc_id for d in b.demos]}")
    if a.formats != b.formats:
        lines.append(f"formats: {json.dumps(a.formats)} -> {json.dumps(b.formats)}")
    if a.strategy != b.strategy:
        lines.append(f"strategy: {a.strategy.to_json()} -> {b.strategy.to_json()}")
    if a.schema != b.schema:
        lines.append("schema: changed")
    return "\n".join(lines)
