"""The label-free path: from unlabelled documents to labels an optimizer can use.

- `drafts`: the typed records passed between the steps (a teacher's draft of one document, the
  label row written for it), and the label-row format with its `source` and per-field `agreement`.
- `documents`: a sample of unlabelled documents (ingest's documents.parquet or a folder).
- `fields` and `suggest`: a model proposes fields per document; merged and built into a JSON Schema.
- `teacher`: self-consistency drafts of a teacher model, checked (schema, grounding, agreement).
- `labelling`: drafts written as teacher label rows or review rows, resumably.
Review and judges build on these types.
"""
