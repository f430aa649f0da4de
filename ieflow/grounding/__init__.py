"""Source grounding: for every extracted value, where in the document it came from.

```python
index = DocumentIndex(text, page_offsets)        # one pass over the text
evidence = ground_record(record, index, schema, program.formats)
# [Evidence(path="total", value="9.3", method="normalized", score=1.0,
#           char_start=812, char_end=816, page=1, matched_text="9.30"), ...]
```

`evidence` (the record), `index` (the document), `match` (finding one value) and `ground` (a whole
record, by the leaf's type, within a per-document budget) follow the work. Offsets index the text
ingest stored, so a reviewer's page can highlight `text[char_start:char_end]`.
"""

from ieflow.grounding.evidence import EVIDENCE_COLUMNS, GROUNDED, METHODS, Evidence, Method, Span
from ieflow.grounding.ground import GroundingLimits, ground_record, leaf_values, schema_path
from ieflow.grounding.index import DocumentIndex

__all__ = [
    "EVIDENCE_COLUMNS",
    "GROUNDED",
    "METHODS",
    "DocumentIndex",
    "Evidence",
    "GroundingLimits",
    "Method",
    "Span",
    "ground_record",
    "leaf_values",
    "schema_path",
]
