"""The label-free path: from unlabelled documents to labels an optimizer can use.

- `drafts`: the typed records passed between the steps (a teacher's draft of one document, the
  label row written for it), and the label-row format with its `source` and per-field `agreement`.
- `judge`: a judge model scores a record without gold (per-field verdicts), usable wherever the
  gold scorer is; `pairwise`: a judge compares two records of one document (SPO's judge).
- `sources`: which labels an optimization scores with (gold, silver, a judge) and a report scores on.
Schema suggestion, teacher drafting, review and judges build on these types.
"""
