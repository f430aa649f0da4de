"""What gets shown (issue 16): every HTML page ieflow writes escapes the untrusted text it shows.

The Data Docs site is the only HTML ieflow writes. Its text comes from strangers: doc_ids and
model values (the corpus and the model), field names, enum values, patterns and the title (the
schema). Each carries markup here; every written page is parsed and must hold no element, attribute
or script that came from it, while the text itself is still shown (so the check is not vacuous).
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import ieflow  # noqa: F401  (offline env defaults first)
from ieflow.validation import RecordValidator, build_data_docs

SCRIPT = "<script>alert(1)</script>"
IMAGE = "<img src=x onerror=alert(2)>"
FIELD = "name<svg onload=alert(3)>"  # a field name: becomes a column in every table and page


class _Page(HTMLParser):
    """The elements, attributes, script bodies and shown text of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.scripts if self._in_script else self.text).append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def _hostile_schema() -> dict:
    return {
        "title": f"Orders {SCRIPT}/../x",
        "type": "object",
        "required": [FIELD],
        "properties": {
            FIELD: {"type": "string", "enum": ["ok", IMAGE]},
            "code": {"type": "string", "pattern": "^[0-9]+$|<b onmouseover=alert(4)>"},
            "count": {"type": "integer", "maximum": 3},
        },
    }


def test_data_docs_escape_doc_ids_model_values_and_schema_text(tmp_path: Path) -> None:
    validator = RecordValidator(_hostile_schema())
    records = {
        SCRIPT: {FIELD: IMAGE + "!", "code": SCRIPT, "count": IMAGE},
        IMAGE: {FIELD: None, "code": "12", "count": 9},
    }
    report = validator.validate(records)
    assert set(report.row_failures) == {SCRIPT, IMAGE} and not report.errors

    index = Path(build_data_docs(validator, [("shard-1", r) for r in report.results], tmp_path / "docs"))

    pages = sorted(tmp_path.glob("docs/**/*.html"))
    assert index in pages and len(pages) >= 3  # index, the suite, the validation result
    assert all(p.resolve().is_relative_to((tmp_path / "docs").resolve()) for p in pages)
    shown = ""
    for path in pages:
        page = _parse(path)
        for tag, attrs in page.tags:
            assert tag not in ("svg", "b") or not attrs, (path, tag, attrs)
            assert (tag, attrs.get("src")) != ("img", "x"), path
            assert not any("alert(" in (value or "") for value in attrs.values()), (path, tag, attrs)
        assert not any("alert(" in body for body in page.scripts), path
        shown += "".join(page.text)
    # The untrusted text is shown as text, escaped once: the doc_id, a model value, the schema's
    # field name and enum value. (The pattern is matched by RE2 outside GE, so no page shows it.)
    for text in (SCRIPT, IMAGE + "!", FIELD, IMAGE):
        assert text in shown, text
    assert "&lt;" not in shown and "&amp;" not in shown
