"""The label-free path: from unlabelled documents to labels an optimizer can use.

- `drafts`: the typed records passed between the steps (a teacher's draft of one document, the
  label row written for it), and the label-row format with its `source` and per-field `agreement`.
- `documents`: a sample of unlabelled documents (ingest's documents.parquet or a folder).
- `fields` and `suggest`: a model proposes fields per document; merged and built into a JSON Schema.
- `teacher`: self-consistency drafts of a teacher model, checked (schema, grounding, agreement).
- `labelling`: drafts written as teacher label rows or review rows, resumably.
- `judge`: a judge model scores a record without gold (per-field verdicts), usable wherever the
  gold scorer is; `pairwise`: a judge compares two records of one document (SPO's judge).
- `sources`: which labels an optimization scores with (gold, silver, a judge) and a report scores on.
- `unlabelled`: the documents a label run drafts (ingest's table, minus labelled or queued ones).
- `review_queue`, `review_form`: the review step (file round trip; the Prefect form).
"""
