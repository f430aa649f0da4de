"""Which labels an optimization scores with, and which a report scores on.

- Gold and human labels are gold; teacher labels are silver (the evaluator weights each field by
  the teacher's agreement, `ieflow.scoring.silver`).
- A folder with documents and no labels at all can still be optimized with a judge model
  (`unlabelled_splits`: every document an example with an empty record, hash-split).
- A report scores on gold wherever the split has any (`report_examples`), else says what it used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ieflow.datasets import Example, document_text, read_document
from ieflow.labels import read_jsonl_rows
from ieflow.optimize.evaluator import Budget, BudgetTracker, Evaluator, Ledger, mean
from ieflow.program import ExtractionProgram
from ieflow.schema import load_schema
from ieflow.scoring.silver import ExampleScorer, label_source_name
from ieflow.splits.assign import assign_splits

SPLITS = ("train", "val", "test")
UNLABELLED = "none"  # the label_source of a document with no label (its gold is {})


@dataclass(frozen=True)
class ScoringChoice:
    """What an optimization scored with and what its report scored on, in words for the report."""

    optimized_with: str  # "gold", "silver (teacher, weighted by agreement)", "judge <model>"
    reported_on: str  # "gold (n test documents)", or the judge / silver when there is no gold

    def line(self) -> str:
        return f"**Labels** optimized with {self.optimized_with}; reported on {self.reported_on}."


def has_labels(dataset_dir: str | Path) -> bool:
    """Whether the folder has a labels.jsonl with at least one row."""
    path = Path(dataset_dir) / "labels.jsonl"
    return path.is_file() and any(True for _ in read_jsonl_rows(path))


def gold_examples(examples: list[Example]) -> list[Example]:
    """The examples whose labels a person wrote (gold or human), not a teacher or nobody."""
    return [ex for ex in examples if ex.label_source in ("gold", "human")]


def report_examples(examples: list[Example], judge: str | None = None) -> tuple[list[Example], str]:
    """What a report scores on: the gold examples when there are any, else all of them (silver,
    or the judge's view when nothing is labelled), with the words saying which."""
    gold = gold_examples(examples)
    if gold:
        return gold, f"gold ({len(gold)} documents)"
    if judge and all(ex.label_source == UNLABELLED for ex in examples):
        return examples, f"judge {judge} (no gold: {len(examples)} documents)"
    return examples, f"{label_source_name(examples)} (no gold: {len(examples)} documents)"


def unlabelled_splits(
    dataset_dir: str | Path, *, seed: int = 0, limits: dict[str, int | None] | None = None
) -> tuple[dict[str, Any], dict[str, list[Example]]]:
    """(schema, {train, val, test}) of a folder's documents/ with no labels: each document an
    example with an empty record, assigned by a hash of its content. Raises ValueError naming
    the problem when there are no readable documents or a split is empty."""
    root = Path(dataset_dir)
    schema = load_schema(root / "schema.json")
    folder = root / "documents"
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    examples: list[Example] = []
    for path in files:
        name = str(path.relative_to(root))
        data = read_document(root, name)
        sha = hashlib.sha256(data).hexdigest()
        examples.append(
            Example(path.stem, document_text(path, sha, data), {}, None, str(path), sha, UNLABELLED)
        )
    if not examples:
        raise ValueError(f"{root}: no documents in {folder}")
    assigned = assign_splits(
        [ex.doc_id for ex in examples],
        seed=seed,
        content_hashes={ex.doc_id: ex.content_hash for ex in examples},
    )
    limits = limits or {}
    splits = {
        name: [ex for ex in examples if assigned[ex.doc_id] == name][: limits.get(name) or None]
        for name in SPLITS
    }
    if missing := [name for name in SPLITS if not splits[name]]:
        raise ValueError(
            f"{root}: too few documents for split(s) {', '.join(missing)} ({len(examples)} documents)"
        )
    return schema, splits


def judge_outside_budget(
    program: ExtractionProgram,
    examples: list[Example],
    scorer: ExampleScorer,
    ledger_path: str | Path | None = None,
    client: Any = None,
) -> dict[str, Any]:
    """`program` on `examples` scored by `scorer` (a judge) outside any budget, in the shape of
    `split_scoring.score_outside_budget` (no F1: a judge gives no counts)."""
    tracker = BudgetTracker(Budget(max_metric_calls=None))
    results = Evaluator(scorer, tracker, ledger=Ledger(ledger_path), client=client).evaluate(
        program, examples
    )
    n = max(len(results), 1)
    fields = sorted({path for r in results for path in r.fields})
    return {
        "program": program.hash,
        "n": len(results),
        "score": mean([r.score for r in results]),
        "macro_f1": None,
        "micro_f1": None,
        "per_field": {path: mean([r.fields.get(path, 0.0) for r in results]) for path in fields},
        "prompt_tokens": sum(r.prompt_tokens for r in results) / n,
        "completion_tokens": sum(r.completion_tokens for r in results) / n,
        "cost_usd": sum(r.cost_usd for r in results) / n,
        "seconds": sum(r.latency_s for r in results) / n,
        "errors": sum(1 for r in results if r.error),
    }
