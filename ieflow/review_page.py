"""The review page: one self-contained HTML file per run, for a person checking extracted values.

Each document's text is shown with its values highlighted at their evidence spans, the records of
the review queue first, with a table of every value (how it was found, its page, the model's
confidence). Two filters: by field (documents with a value of that field, other fields' values
dimmed) and by reason (documents in review for that reason). The filters are also read from the
address (`review.html#field=total&reason=not_found`), so a filtered view can be shared as a link.

Documents are untrusted input: every piece of text, value and name is HTML-escaped here, and the
page's only script is the constant one below (no CDN, no data in code). This module renders plain
data; `ieflow.batch.page` gathers it from a run's datasets.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from html import escape

from ieflow.grounding import schema_path

MAX_TEXT_CHARS = 200_000  # per document: past this the text is cut (the values table stays whole)


@dataclass(frozen=True)
class ShownValue:
    """One value of a document as the page shows it (an evidence row)."""

    field: str
    path: str
    value: str
    method: str
    score: float | None = None
    char_start: int | None = None
    char_end: int | None = None
    page: int | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class ShownDocument:
    """One document: its text, its values, and why it is in review (empty: it is not)."""

    doc_id: str
    text: str
    file_name: str | None = None
    values: list[ShownValue] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    issues: list[tuple[str, str]] = field(default_factory=list)  # (reason, field path)
    details: list[str] = field(default_factory=list)


def render_review_page(documents: list[ShownDocument], title: str, total_documents: int) -> str:
    """The whole page; `documents` in the order shown (review queue first)."""
    fields = sorted({v.field for d in documents for v in d.values})
    reasons = sorted({r for d in documents for r in d.reasons})
    in_review = sum(1 for d in documents if d.reasons)
    cut = f" (the first {len(documents)} of {total_documents})" if total_documents > len(documents) else ""
    options = "".join(f'<option value="{escape(f)}">{escape(f)}</option>' for f in fields)
    reason_options = "".join(f'<option value="{escape(r)}">{escape(r)}</option>' for r in reasons)
    body = "\n".join(_document_html(d) for d in documents)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; \
script-src '{_script_hash()}'">
<title>{escape(title)}</title><style>{_STYLE}</style></head>
<body>
<header><h1>{escape(title)}</h1>
<p>{len(documents)} documents shown{escape(cut)}, {in_review} in the review queue (shown first).
Highlights: <mark class="m-exact">exact</mark> <mark class="m-normalized">normalized</mark>
<mark class="m-fuzzy">fuzzy</mark>; values found nowhere are listed in red.</p>
<label>Field <select id="field-filter"><option value="">all fields</option>{options}</select></label>
<label>Reason <select id="reason-filter"><option value="">any (all documents)</option>{reason_options}
<option value="none">not in review</option></select></label>
<span id="shown-count"></span></header>
<main>
{body}
</main>
<script>{_SCRIPT}</script>
</body></html>
"""


def _document_html(doc: ShownDocument) -> str:
    attributes = {
        "data-doc": doc.doc_id,
        "data-fields": json.dumps(sorted({v.field for v in doc.values})),
        "data-reasons": json.dumps(doc.reasons),
        "data-issues": json.dumps([[reason, schema_path(path)] for reason, path in doc.issues]),
    }
    attrs = " ".join(f'{name}="{escape(value, quote=True)}"' for name, value in attributes.items())
    badge = "".join(f'<span class="reason">{escape(r)}</span>' for r in doc.reasons)
    details = "".join(f"<li>{escape(d)}</li>" for d in doc.details)
    name = f" <small>{escape(doc.file_name)}</small>" if doc.file_name else ""
    return (
        f'<section class="doc{" in-review" if doc.reasons else ""}" {attrs}>'
        f"<h2>{escape(doc.doc_id)}{name} {badge}</h2>"
        + (f'<ul class="details">{details}</ul>' if details else "")
        + f'<div class="cols"><pre class="text">{highlighted_text(doc.text, doc.values)}</pre>'
        + f"{_values_table(doc.values)}</div></section>"
    )


def highlighted_text(text: str, values: list[ShownValue]) -> str:
    """The text, escaped, with each located value in a <mark>; a span that overlaps an earlier
    one is not marked (its row in the values table still gives its offsets)."""
    shown = text[:MAX_TEXT_CHARS]
    located = sorted(
        (v for v in values if v.char_start is not None and v.char_end is not None),
        key=lambda v: (v.char_start, -(v.char_end or 0)),
    )
    parts: list[str] = []
    position = 0
    for v in located:
        start, end = v.char_start or 0, v.char_end or 0
        if start < position or end > len(shown) or end <= start:
            continue
        parts.append(escape(shown[position:start]))
        tip = f"{v.path} ({v.method}{'' if v.score is None else f' {v.score:.2f}'})"
        parts.append(
            f'<mark class="m-{escape(v.method)}" data-field="{escape(v.field, quote=True)}" '
            f'title="{escape(tip, quote=True)}">{escape(shown[start:end])}</mark>'
        )
        position = end
    parts.append(escape(shown[position:]))
    if len(text) > len(shown):
        parts.append(escape(f"\n[... {len(text) - len(shown):,} more characters not shown]"))
    return "".join(parts)


def _values_table(values: list[ShownValue]) -> str:
    rows = []
    for v in values:
        confidence = "" if v.confidence is None else f"{v.confidence:.2f}"
        score = "" if v.score is None else f"{v.score:.2f}"
        rows.append(
            f'<tr class="v-{escape(v.method)}" data-field="{escape(v.field, quote=True)}">'
            f"<td>{escape(v.path)}</td><td>{escape(v.value)}</td><td>{escape(v.method)}</td>"
            f"<td>{score}</td><td>{'' if v.page is None else v.page}</td><td>{confidence}</td></tr>"
        )
    head = "<tr><th>field</th><th>value</th><th>found</th><th>score</th><th>page</th><th>conf.</th></tr>"
    return f'<table class="values">{head}{"".join(rows)}</table>'


def _script_hash() -> str:
    # The policy lets only this exact script run: markup that slipped past escaping could not.
    return "sha256-" + base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode()


_STYLE = """
body{font:14px system-ui,sans-serif;margin:0;background:#f6f6f4;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:8px 16px;z-index:1}
h1{font-size:18px;margin:4px 0}h2{font-size:15px;margin:0 0 6px}
label{margin-right:16px}main{padding:8px 16px}
section.doc{background:#fff;border:1px solid #ddd;border-radius:4px;margin:10px 0;padding:10px}
section.in-review{border-left:5px solid #d9822b}
.reason{background:#d9822b;color:#fff;border-radius:3px;padding:1px 6px;margin-left:6px;font-size:12px}
.cols{display:flex;gap:12px;align-items:flex-start}
pre.text{flex:1;white-space:pre-wrap;max-height:420px;overflow:auto;background:#fafafa;
border:1px solid #eee;padding:8px;margin:0;font-size:12px}
table.values{border-collapse:collapse;font-size:12px;flex:0 0 46%}
table.values th{white-space:nowrap}
table.values td,table.values th{border-bottom:1px solid #eee;padding:2px 6px;text-align:left;
vertical-align:top;word-break:break-word}
mark.m-exact{background:#b7e4a8}mark.m-normalized{background:#c9def7}mark.m-fuzzy{background:#f7e3a1}
tr.v-not_found td{color:#b00020}tr.v-skipped td{color:#888}
.dim{opacity:.25}ul.details{margin:4px 0 8px;color:#8a4b00}
"""

# The page's only code: reads the filters (from the selects, or the address), hides documents.
_SCRIPT = """
(function(){
  var fieldSel=document.getElementById('field-filter'),reasonSel=document.getElementById('reason-filter');
  function apply(){
    var f=fieldSel.value,r=reasonSel.value,shown=0;
    document.querySelectorAll('section.doc').forEach(function(doc){
      var fields=JSON.parse(doc.dataset.fields),reasons=JSON.parse(doc.dataset.reasons);
      var issues=JSON.parse(doc.dataset.issues),ok;
      if(r==='none'){ok=reasons.length===0&&(!f||fields.indexOf(f)>=0);}
      else if(r){ok=issues.some(function(i){return i[0]===r&&(!f||i[1]===f||i[1]==='');});}
      else{ok=!f||fields.indexOf(f)>=0;}
      doc.hidden=!ok;if(ok){shown++;}
      doc.querySelectorAll('[data-field]').forEach(function(el){
        el.classList.toggle('dim',!!f&&el.dataset.field!==f);});
    });
    document.getElementById('shown-count').textContent=shown+' shown';
    var h=[];if(f){h.push('field='+encodeURIComponent(f));}if(r){h.push('reason='+encodeURIComponent(r));}
    history.replaceState(null,'',h.length?'#'+h.join('&'):location.pathname+location.search);
  }
  function fromAddress(){
    location.hash.slice(1).split('&').forEach(function(kv){
      var p=kv.split('='),v=decodeURIComponent(p[1]||'');
      if(p[0]==='field'){fieldSel.value=v;}if(p[0]==='reason'){reasonSel.value=v;}
    });
  }
  fieldSel.addEventListener('change',apply);reasonSel.addEventListener('change',apply);
  fromAddress();apply();
})();
"""
