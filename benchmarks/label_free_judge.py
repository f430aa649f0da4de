"""The label-free path's judge-agreement stage: how often a judge model's verdict on a field agrees
with the gold comparator's, per field, on documents with gold.

    python benchmarks/label_free_judge.py --dataset sroie --docs 5 [--judge local/qwen2.5-coder-1.5b]

Predictions are the seed program's (benchmarks/optimizers.py's seed program, read from the
dataset's shared test ledger when it holds them, else extracted into this stage's own ledger).
Each predicted field is "right" for gold when the comparator scores it 1, and "correct" for the
judge when its verdict says so ("wrong" and "unsure" are not correct; unsure is counted apart).
Agreement = share of (document, field) pairs where the two say the same. Resumable: the judge's
answers are in the LM response cache, the seed's extractions in a ledger.
Output: benchmarks/results/label_free/<dataset>/judge_agreement.json (lead merges it into
benchmarks/label_free.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ieflow  # noqa: E402,F401  (offline env defaults)
from benchmarks.optimizers import CODE_VERSION, DATASETS, load_examples, seed_program  # noqa: E402
from ieflow import config  # noqa: E402
from ieflow.datasets import Example  # noqa: E402
from ieflow.labelfree.judge import JudgeConfig, JudgeScorer  # noqa: E402
from ieflow.optimize.evaluator import Budget, BudgetTracker, Evaluator, ExampleResult, Ledger  # noqa: E402
from ieflow.program import ExtractionProgram  # noqa: E402
from ieflow.scoring import Scorer  # noqa: E402

OUT = Path(os.environ.get("IEFLOW_BENCH_OUT", ROOT / "benchmarks" / "results"))


def seed_predictions(
    dataset: str, program: ExtractionProgram, examples: list[Example], out: Path
) -> list[ExampleResult]:
    """The seed program's results on `examples`: from the shared test ledger where present (read
    only), the rest extracted into this stage's ledger."""
    shared = Ledger(OUT / dataset / "test_evaluations.jsonl")
    own = Ledger(out / "seed_evaluations.jsonl")
    for example in examples:
        found = shared.get(program.hash, example.doc_id)
        if found is not None and own.get(program.hash, example.doc_id) is None:
            own.add(program.hash, found)
    evaluator = Evaluator(Scorer(program.schema), BudgetTracker(Budget(max_metric_calls=None)), ledger=own)
    return evaluator.evaluate(program, examples)


def field_agreement(pairs: list[tuple[str, bool, str]]) -> dict[str, Any]:
    """Per field: n, agreement, and the confusion counts (gold right/wrong x judge verdict)."""
    by_field: dict[str, list[tuple[bool, str]]] = {}
    for name, gold_right, verdict in pairs:
        by_field.setdefault(name, []).append((gold_right, verdict))
    table: dict[str, Any] = {}
    for name, rows in by_field.items():
        agree = sum(1 for right, verdict in rows if right == (verdict == "correct"))
        counts = Counter(f"gold_{'right' if right else 'wrong'}/judge_{verdict}" for right, verdict in rows)
        table[name] = {"n": len(rows), "agreement": agree / len(rows), "counts": dict(sorted(counts.items()))}
    return table


def summarize(
    dataset: str,
    judge: JudgeScorer,
    program: ExtractionProgram,
    documents: int,
    pairs: list[tuple[str, bool, str]],
    started: float,
) -> dict[str, Any]:
    overall = sum(1 for _, right, verdict in pairs if right == (verdict == "correct")) / max(len(pairs), 1)
    return {
        "dataset": dataset,
        "judge_model": judge.lm.model,
        "seed_program": program.hash,
        "documents": documents,
        "field_verdicts": len(pairs),
        "agreement": overall,
        "unsure": sum(1 for *_, verdict in pairs if verdict == "unsure"),
        "per_field": field_agreement(pairs),
        "judge_requests": judge.calls,
        "judge_usage": judge.lm.usage.to_dict(),
        "wall_s": time.time() - started,
        "code_version": CODE_VERSION,
    }


def run(dataset: str, docs: int, judge_model: str, max_input_tokens: int) -> dict[str, Any]:
    out = OUT / "label_free" / dataset
    out.mkdir(parents=True, exist_ok=True)
    schema, splits = load_examples(dataset, (1, 1, docs))
    examples = splits["test"][:docs]
    program = seed_program(dataset, schema, max_input_tokens)
    started = time.time()
    results = seed_predictions(dataset, program, examples, out)
    gold_scorer = Scorer(schema)
    judge = JudgeScorer(schema, JudgeConfig(model=judge_model))
    pairs: list[tuple[str, bool, str]] = []
    reasons: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for example, result in zip(examples, results, strict=True):
        gold = gold_scorer.score(result.record, example.gold)
        verdicts = judge.verdicts(example.text, result.record)
        for name in gold_scorer.top_level:
            right, verdict = gold.fields[name].score >= 1.0 - 1e-9, verdicts[name]
            pairs.append((name, right, verdict.verdict))
            reasons.append({"doc_id": example.doc_id, "field": name, "gold_right": right} | vars(verdict))
        print(f"[{dataset}] {example.doc_id}: {pairs[-len(verdicts) :]}", flush=True)
        # Written after every document: a run cut short still leaves its figure so far.
        summary = summarize(dataset, judge, program, len(reasons) // len(verdicts), pairs, started)
        (out / "judge_agreement.json").write_text(json.dumps(summary, indent=2) + "\n")
        (out / "judge_verdicts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reasons))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="sroie")
    parser.add_argument("--docs", type=int, default=5, help="test documents judged")
    parser.add_argument("--judge", default=config.DEFAULT_REFLECTION_MODEL, help="litellm name of the judge")
    parser.add_argument(
        "--max-input-tokens", type=int, default=1500, help="the seed program's (as optimizers.py)"
    )
    args = parser.parse_args()
    if not (DATASETS / args.dataset).is_dir():
        parser.error(f"no dataset {args.dataset!r} in {DATASETS}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("LiteLLM").setLevel(logging.WARNING)
    summary = run(args.dataset, args.docs, args.judge, args.max_input_tokens)
    print(json.dumps({k: v for k, v in summary.items() if k != "per_field"}, indent=2))
    for name, row in summary["per_field"].items():
        print(f"  {name:10s} agreement {row['agreement']:.2f} (n={row['n']}) {row['counts']}")


if __name__ == "__main__":
    main()
