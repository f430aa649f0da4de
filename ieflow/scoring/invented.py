"""Wrong answers the document does not contain: the model invented them, or copied them from a demo.

A wrong value that is printed somewhere in the document is a reading error (the wrong date of
two, a total without tax); one printed nowhere is a different failure, and the fix differs too
("copy from the document", "drop the demo"), so the feedback an optimizer reads says which.
"""

from __future__ import annotations

from typing import Any

from ieflow.grounding.ground import ground_value
from ieflow.grounding.index import DocumentIndex
from ieflow.schema import field_schema
from ieflow.scoring.scorer import RecordScore

NOWHERE = "The answer appears nowhere in the document: invented, or copied from a demo."


def invented_fields(
    scored: RecordScore, text: str, schema: dict[str, Any], formats: dict[str, str] | None = None
) -> set[str]:
    """The wrong top-level scalar fields whose predicted value grounding finds nowhere in `text`.

    Lists and objects are left out: their feedback already counts the items that match nothing."""
    index: DocumentIndex | None = None
    found = set()
    for path in scored.top_level:
        fs = scored.fields[path]
        value = fs.predicted
        if fs.score >= 1.0 or value is None or isinstance(value, dict | list | bool):
            continue
        if isinstance(value, str) and not value.strip():
            continue
        index = index or DocumentIndex(text)
        if ground_value(path, field_schema(schema, path), value, index, formats or {}).method == "not_found":
            found.add(path)
    return found


def with_nowhere(sentence: str) -> str:
    """A field's feedback sentence, followed by what `NOWHERE` says."""
    return f"{sentence} {NOWHERE}"


__all__ = ["NOWHERE", "invented_fields", "with_nowhere"]
