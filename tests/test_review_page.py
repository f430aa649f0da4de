"""The review page: escaped untrusted text, highlights at evidence spans, and filters that work in
a real headless browser (Debian chromium)."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ieflow.review_page import ShownDocument, ShownValue, highlighted_text, render_review_page
from tests.support.browser import CHROMIUM, rendered_dom

HOSTILE = '<script>document.title="PWNED"</script><img src=x onerror="document.title=\'PWNED\'">'
TEXT = f"INVOICE 42\nTotal: 9.30\nNote: {HOSTILE}\nVendor: ACME"


def documents() -> list[ShownDocument]:
    hostile_value = ShownValue("note", "note", HOSTILE, "exact", 1.0, 30, 30 + len(HOSTILE), 1, None)
    total = ShownValue("total", "total", "9.3", "normalized", 1.0, 18, 22, 1, 0.97)
    vendor = ShownValue("vendor", "vendor", "ACME Corp", "not_found", 0.0)
    return [
        ShownDocument(
            "doc-b",
            TEXT,
            '"><script>document.title="PWNED"</script>.pdf',
            [total, hostile_value, vendor],
            ["not_found"],
            [("not_found", "vendor")],
            ["vendor: 'ACME Corp' appears nowhere in the document"],
        ),
        ShownDocument(
            "doc-a", "Total: 5.00", "a.pdf", [ShownValue("total", "total", "5.0", "normalized", 1.0, 7, 11)]
        ),
    ]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_everything_from_the_documents_is_escaped_and_only_the_pages_own_script_may_run() -> None:
    page = render_review_page(documents(), "Review <run>", 2)
    parser = _Tags()
    parser.feed(page)
    assert [t for t, _ in parser.tags].count("script") == 1 and not any(t == "img" for t, _ in parser.tags)
    assert "&lt;script&gt;document.title=&quot;PWNED&quot;&lt;/script&gt;" in page
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page  # the policy allows exactly that script


def test_values_are_highlighted_at_their_spans_and_overlaps_are_left_to_the_table() -> None:
    values = [
        ShownValue("total", "total", "9.3", "normalized", 1.0, 18, 22),
        ShownValue("t2", "t2", "9", "exact", 1.0, 18, 19),  # inside the first: not marked again
    ]
    html = highlighted_text(TEXT, values)
    assert html.count("<mark") == 1 and '<mark class="m-normalized" data-field="total"' in html
    assert ">9.30</mark>" in html


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make system-deps)")


def _sections(dom: str) -> dict[str, bool]:
    """doc id -> shown, from the DOM the browser serialized."""
    parser = _Tags()
    parser.feed(dom)
    return {a["data-doc"]: "hidden" not in a for t, a in parser.tags if t == "section" and "data-doc" in a}


@needs_chromium
def test_in_a_browser_the_filters_hide_documents_and_no_document_script_runs(tmp_path: Path) -> None:
    page = tmp_path / "review.html"
    page.write_text(render_review_page(documents(), "Review", 2), encoding="utf-8")
    url = page.as_uri()
    everything = rendered_dom(url)
    assert _sections(everything) == {"doc-b": True, "doc-a": True}
    assert "<title>Review</title>" in everything and "PWNED</title>" not in everything
    assert "2 shown" in everything  # the page's own script ran
    assert _sections(rendered_dom(url + "#reason=not_found")) == {"doc-b": True, "doc-a": False}
    assert _sections(rendered_dom(url + "#reason=none")) == {"doc-b": False, "doc-a": True}
    assert _sections(rendered_dom(url + "#field=vendor")) == {"doc-b": True, "doc-a": False}
    by_field = rendered_dom(url + "#field=total&reason=not_found")  # vendor is the reason, not total
    assert _sections(by_field) == {"doc-b": False, "doc-a": False}
    dimmed = rendered_dom(url + "#field=vendor")
    assert re.search(r'<mark class="m-normalized dim" data-field="total"', dimmed)
