"""Calibration of per-field confidence: is a value the model was sure of more often right?

    python benchmarks/calibration.py --docs 8                 # extract (resumable), print the tables
    python benchmarks/calibration.py --docs 8 --write-doc     # and rewrite them in docs/confidence.md
    python benchmarks/calibration.py --report                 # tables only, from what is recorded

For sroie, deepform_adbuy and kleister_nda: the first `--docs` dev documents held out from the
optimizers' selection (`holdout_split`'s test part, the documents benchmarks/optimizers.py reports
on), read by the committed best program (benchmarks/results/<dataset>/<optimizer>/program.json with
the best test score) or the seed program where none is committed. Every non-null leaf value is
scored against gold with ieflow's Scorer (a list item: matched in full by a gold item) and kept with
its confidence.

Resumable: one JSON line per document in benchmarks/results/calibration/<dataset>.jsonl (skipped when
present for the same program), and model answers stay in the LM response cache; a later session
extends the sample with a larger `--docs`.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ieflow  # noqa: E402,F401  (offline env defaults)
from ieflow.datasets import Example, document_text, holdout_split, load_corpus  # noqa: E402
from ieflow.extraction import extract  # noqa: E402
from ieflow.program import ExtractionProgram, LongDocStrategy  # noqa: E402
from ieflow.scoring import Scorer  # noqa: E402

DATASETS = Path(os.environ.get("IEFLOW_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "calibration"
NAMES = ("sroie", "deepform_adbuy", "kleister_nda")
BUCKETS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0)
DOC = ROOT / "docs" / "confidence.md"
TABLE_START, TABLE_END = "<!-- calibration:start -->", "<!-- calibration:end -->"
_ITEM = re.compile(r"^([^.\[]+)\[(\d+)\]$")


def best_program(dataset: str, schema: dict[str, Any]) -> tuple[ExtractionProgram, str]:
    """The committed program with the best test score, else the seed program; and its origin."""
    summary_path = RESULTS / dataset / "summary.json"
    if summary_path.exists():
        runs = json.loads(summary_path.read_text()).get("optimizers", {})
        ranked = sorted(runs, key=lambda name: runs[name]["test"]["score"], reverse=True)
        for name in ranked:
            path = RESULTS / dataset / name / "program.json"
            if path.exists():
                return ExtractionProgram.load(
                    path
                ), f"{name} (committed best, test {runs[name]['test']['score']:.3f})"
    seed = ExtractionProgram.from_schema(
        schema,
        instruction="Extract the fields as JSON.",
        name=dataset,
        strategy=LongDocStrategy(kind="select", max_input_tokens=1500),
    )
    return seed, "seed program (no optimized program committed)"


def dev_documents(dataset: str, n: int) -> tuple[dict[str, Any], list[Example]]:
    """The first `n` held-out dev documents, with their text (only theirs is parsed)."""
    corpus = load_corpus(DATASETS / dataset, with_text=False)
    chosen = holdout_split(corpus, seed=0).by_split("test")[:n]
    with_text = [dataclasses.replace(ex, text=_text(ex)) for ex in chosen]
    return corpus.schema, with_text


def _text(example: Example) -> str:
    source = Path(example.source or "")
    return document_text(source, example.content_hash or "", source.read_bytes())


def leaf_correct(scorer: Scorer, record: dict[str, Any], gold: dict[str, Any], path: str) -> bool:
    """Whether the predicted value at `path` is right: a top-level value as the Scorer judges the
    field; a list item when the Scorer pairs it in full with a gold item."""
    item = _ITEM.match(path)
    if item is not None:
        name, index = item.group(1), int(item.group(2))
        alone = scorer.score({name: [record[name][index]]}, gold).fields[name]
        return (alone.precision or 0.0) >= 1.0 - 1e-9
    top = re.split(r"[.\[]", path, maxsplit=1)[0]
    return scorer.score(record, gold).fields[top].error_kind is None


def extract_one(program: ExtractionProgram, scorer: Scorer, example: Example) -> dict[str, Any]:
    started = time.perf_counter()
    record, trace = extract(program, example.text)
    leaves = (
        [
            {
                "path": path,
                "confidence": confidence,
                "correct": leaf_correct(scorer, record, example.gold, path),
            }
            for path, confidence in trace.field_confidence.items()
        ]
        if record is not None
        else []
    )
    return {
        "doc_id": example.doc_id,
        "program": program.hash,
        "error": trace.error,
        "confidence_note": trace.confidence_note,
        "cached": trace.cached,
        "wall_s": round(time.perf_counter() - started, 2),
        "leaves": leaves,
    }


def run(dataset: str, n_docs: int) -> None:
    schema, examples = dev_documents(dataset, n_docs)
    program, origin = best_program(dataset, schema)
    scorer = Scorer(program.schema)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{dataset}.jsonl"
    done = {(row["doc_id"], row["program"]) for row in read_rows(path)}
    print(f"[{dataset}] {len(examples)} dev documents, program: {origin}", flush=True)
    for example in examples:
        if (example.doc_id, program.hash) in done:
            continue
        row = extract_one(program, scorer, example)
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")
        right = sum(leaf["correct"] for leaf in row["leaves"])
        print(
            f"[{dataset}] {example.doc_id}: {right}/{len(row['leaves'])} right, {row['wall_s']} s", flush=True
        )


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def bucket_label(low: float, high: float) -> str:
    return f"[{low:.2f}, {high:.2f}]" if high >= 1.0 else f"[{low:.2f}, {high:.2f})"


def reliability(leaves: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: confidence bucket -> values, share correct, mean confidence."""
    rows = []
    for low, high in itertools.pairwise(BUCKETS):
        inside = [
            leaf
            for leaf in leaves
            if leaf["confidence"] is not None
            and low <= leaf["confidence"]
            and (leaf["confidence"] < high or high >= 1.0)
        ]
        if not inside:
            rows.append(f"| {bucket_label(low, high)} | 0 | - | - |")
            continue
        share = sum(leaf["correct"] for leaf in inside) / len(inside)
        mean = sum(leaf["confidence"] for leaf in inside) / len(inside)
        rows.append(f"| {bucket_label(low, high)} | {len(inside)} | {share:.2f} | {mean:.2f} |")
    missing = [leaf for leaf in leaves if leaf["confidence"] is None]
    if missing:
        share = sum(leaf["correct"] for leaf in missing) / len(missing)
        rows.append(f"| no confidence | {len(missing)} | {share:.2f} | - |")
    return rows


def flagging(leaves: list[dict[str, Any]]) -> list[str]:
    """How well a low confidence predicts a wrong value: precision and recall of 'confidence < t'
    as a wrong-value detector, and the share of wrong values in the least confident 10%."""
    scored = sorted(
        (leaf for leaf in leaves if leaf["confidence"] is not None), key=lambda leaf: leaf["confidence"]
    )
    wrong = sum(not leaf["correct"] for leaf in scored)
    lines = []
    for threshold in (0.5, 0.8, 0.9):
        flagged = [leaf for leaf in scored if leaf["confidence"] < threshold]
        caught = sum(not leaf["correct"] for leaf in flagged)
        precision = f"{caught / len(flagged):.2f}" if flagged else "-"
        recall = f"{caught / wrong:.2f}" if wrong else "-"
        lines.append(f"| confidence < {threshold} | {len(flagged)} | {precision} | {recall} |")
    tenth = scored[: max(1, round(len(scored) * 0.1))] if scored else []
    caught = sum(not leaf["correct"] for leaf in tenth)
    recall = f"{caught / wrong:.2f}" if wrong else "-"
    precision = f"{caught / len(tenth):.2f}" if tenth else "-"
    lines.append(f"| least confident 10% | {len(tenth)} | {precision} | {recall} |")
    return lines


def report() -> str:
    lines = []
    everything: list[dict[str, Any]] = []
    for dataset in NAMES:
        rows = read_rows(OUT / f"{dataset}.jsonl")
        if not rows:
            lines += [f"### {dataset}", "", "Not run yet.", ""]
            continue
        leaves = [leaf for row in rows for leaf in row["leaves"]]
        everything += leaves
        errors = sum(1 for row in rows if row["error"])
        lines += [
            f"### {dataset}",
            "",
            f"{len(rows)} documents ({errors} without a record), {len(leaves)} values.",
            "",
        ]
        lines += _tables(leaves)
    if everything:
        lines += ["### all three", "", f"{len(everything)} values.", "", *_tables(everything)]
    return "\n".join(lines)


def _tables(leaves: list[dict[str, Any]]) -> list[str]:
    if not leaves:
        return ["No values.", ""]
    wrong = sum(not leaf["correct"] for leaf in leaves)
    return [
        f"{wrong} of {len(leaves)} values wrong ({wrong / len(leaves):.2f}): the precision of a flag",
        "that picks values at random.",
        "",
        "| confidence | values | share correct | mean confidence |",
        "|---|---|---|---|",
        *reliability(leaves),
        "",
        "| flag wrong values by | flagged | precision | recall |",
        "|---|---|---|---|",
        *flagging(leaves),
        "",
    ]


def write_doc(tables: str) -> None:
    replace_between(DOC, TABLE_START, TABLE_END, tables)


def replace_between(doc: Path, start: str, end: str, body: str) -> None:
    """Rewrite the text between the markers `start` and `end` in `doc` (both must be there)."""
    text = doc.read_text(encoding="utf-8")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{start}\n{body}\n{end}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=8, help="dev documents per dataset")
    parser.add_argument("--datasets", default=",".join(NAMES))
    parser.add_argument("--report", action="store_true", help="only print the tables")
    parser.add_argument("--write-doc", action="store_true", help="rewrite the tables in docs/confidence.md")
    args = parser.parse_args()
    if not args.report:
        for dataset in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            run(dataset, args.docs)
    tables = report()
    print(tables)
    if args.write_doc:
        write_doc(tables)


if __name__ == "__main__":
    main()
