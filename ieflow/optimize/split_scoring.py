"""Plain functions behind the optimize and nightly flows and the benchmarks: load a labelled folder's
train/val/test examples, and score a program on examples outside any optimization budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ieflow import storage
from ieflow.datasets import Example, holdout_split, load_corpus
from ieflow.lm import LMClient
from ieflow.optimize.evaluator import Budget, BudgetTracker, Evaluator, Ledger
from ieflow.program import ExtractionProgram
from ieflow.scoring import Scorer, aggregate

SPLITS = ("train", "val", "test")


def load_split_examples(
    dataset_dir: str | Path,
    *,
    splits_path: str | None = None,
    seed: int = 0,
    limits: dict[str, int | None] | None = None,
) -> tuple[dict[str, Any], dict[str, list[Example]]]:
    """(schema, {train, val, test}) from a labelled folder.

    With `splits_path` (the split flow's splits.parquet) its assignment is used; otherwise labels
    marked train/dev are cut into train/val/test by `holdout_split`, and unmarked ones are split by
    a hash of their content.
    """
    corpus = load_corpus(dataset_dir)
    if splits_path:
        table = storage.read_parquet(splits_path)
        assigned = dict(zip(table["doc_id"].to_list(), table["split"].to_list(), strict=True))
        by_split = {
            name: [ex for ex in corpus.examples if assigned.get(ex.doc_id) == name] for name in SPLITS
        }
    else:
        held = holdout_split(corpus, seed=seed)
        by_split = {name: held.by_split(name) for name in SPLITS}
    limits = limits or {}
    by_split = {name: examples[: limits.get(name) or None] for name, examples in by_split.items()}
    missing = [name for name in SPLITS if not by_split[name]]
    if missing:
        raise ValueError(
            f"{dataset_dir}: no labelled documents in split(s) {', '.join(missing)} "
            f"(sizes: { {k: len(v) for k, v in by_split.items()} }); add labels or change the split ratios"
        )
    return corpus.schema, by_split


def score_outside_budget(
    program: ExtractionProgram,
    examples: list[Example],
    ledger_path: str | Path | None = None,
    client: LMClient | None = None,
) -> dict[str, Any]:
    """Score `program` on `examples` outside any budget (results kept in `ledger_path`, if given)."""
    scorer = Scorer(program.schema)
    tracker = BudgetTracker(Budget(max_metric_calls=None))
    evaluator = Evaluator(scorer, tracker, ledger=Ledger(ledger_path), client=client)
    results = evaluator.evaluate(program, examples)
    agg = aggregate(scorer.score(r.record, ex.gold) for r, ex in zip(results, examples, strict=True))
    n = len(results)
    return {
        "program": program.hash,
        "n": n,
        "score": agg.mean_record_score,
        "macro_f1": agg.macro,
        "micro_f1": agg.micro,
        "per_field": dict(agg.per_field),
        "prompt_tokens": sum(r.prompt_tokens for r in results) / n,
        "completion_tokens": sum(r.completion_tokens for r in results) / n,
        "cost_usd": sum(r.cost_usd for r in results) / n,
        "seconds": sum(r.latency_s for r in results) / n,
        "errors": sum(1 for r in results if r.error),
        "doc_scores": {r.doc_id: r.score for r in results},  # for paired comparisons (uncertainty.py)
    }
