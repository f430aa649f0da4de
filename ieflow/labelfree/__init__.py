"""The label-free path: from unlabelled documents to labels an optimizer can use.

- `drafts`: the typed records passed between the steps (a teacher's draft of one document, the
  label row written for it), and the label-row format with its `source` and per-field `agreement`.
Schema suggestion, teacher drafting, review and judges build on these types.
"""
