"""Do grounding and confidence point at the wrong values? And what does grounding cost?

    IEFLOW_HOME=<home with the calibration run's LM cache> python benchmarks/traceability.py
    python benchmarks/traceability.py --report      # tables only, from the results file
    python benchmarks/traceability.py --write-doc   # and rewrite the "Measured" section of docs/evidence.md

For every document benchmarks/calibration.py recorded (sroie, deepform_adbuy, kleister_nda held-out
dev documents, committed best programs), the record is extracted again from the LM response cache
(a document whose answer is not cached is skipped and counted: no model call is made here), grounded
as a batch grounds it (DocumentIndex + ground_record, timed), and put through the batch's review
policy (required value not found; confidence below --below). Per leaf: correct (Scorer), grounding
method, confidence. Results: benchmarks/results/traceability/<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.calibration import (  # noqa: E402
    NAMES,
    best_program,
    dev_documents,
    leaf_correct,
    read_rows,
    replace_between,
)
from benchmarks.calibration import OUT as CALIBRATION  # noqa: E402
from ieflow.batch.outcome import Outcome, OutcomeKind  # noqa: E402
from ieflow.batch.review_queue import ReviewPolicy, is_required, review_item  # noqa: E402
from ieflow.extraction import extract  # noqa: E402
from ieflow.grounding import DocumentIndex, ground_record  # noqa: E402
from ieflow.lm.client import LMClient  # noqa: E402
from ieflow.scoring import Scorer  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "traceability"
DOC = ROOT / "docs" / "evidence.md"
SECTION_START, SECTION_END = "<!-- traceability:start -->", "<!-- traceability:end -->"
REVIEW_RATE = 0.10


@dataclass(frozen=True)
class Leaf:
    """One extracted value: right or wrong against gold, how grounding found it, the confidence."""

    path: str
    correct: bool
    method: str
    confidence: float | None
    required: bool


@dataclass(frozen=True)
class DocumentResult:
    """One re-extracted document: its leaves, its review reasons, and the two times compared."""

    doc_id: str
    leaves: list[Leaf]
    reasons: list[str]
    issues: int
    min_confidence: float | None
    grounding_s: float
    extraction_s: float  # the real-model call's wall time, as benchmarks/calibration.py recorded it


@dataclass(frozen=True)
class Detection:
    """A flag judged as a detector of wrong values."""

    flagged: int
    caught: int
    wrong: int

    @property
    def precision(self) -> float | None:
        return self.caught / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.caught / self.wrong if self.wrong else None


def detection(leaves: list[Leaf], flag: Any) -> Detection:
    """How the leaves `flag` picks overlap the wrong ones."""
    flagged = [leaf for leaf in leaves if flag(leaf)]
    return Detection(
        flagged=len(flagged),
        caught=sum(not leaf.correct for leaf in flagged),
        wrong=sum(not leaf.correct for leaf in leaves),
    )


def review_order(documents: list[DocumentResult]) -> list[DocumentResult]:
    """The order a reviewer works in: most review issues first, then the lowest confidence
    (a document without any confidence last among equals)."""
    return sorted(
        documents,
        key=lambda d: (-d.issues, d.min_confidence if d.min_confidence is not None else math.inf),
    )


def review_catch(documents: list[DocumentResult], rate: float) -> tuple[int, float | None, float]:
    """Reviewing the top `rate` of documents in review order: how many documents, the share of all
    wrong values inside them, and the share a random pick of as many documents catches on average."""
    if not documents:
        return 0, None, 0.0
    count = max(1, math.ceil(len(documents) * rate))
    wrong_in = [sum(not leaf.correct for leaf in d.leaves) for d in review_order(documents)]
    total = sum(wrong_in)
    share = sum(wrong_in[:count]) / total if total else None
    return count, share, count / len(documents)


class CacheOnlyClient(LMClient):
    """The calibration run's answers from the LM response cache; a miss fails at once, with no
    model call, and its document is skipped."""

    @staticmethod
    def _litellm() -> Any:
        raise LookupError("not in the LM response cache (this benchmark makes no model call)")


def measure(dataset: str, policy: ReviewPolicy) -> tuple[list[DocumentResult], list[str]]:
    """Every recorded document of `dataset` re-extracted from cache; the doc_ids skipped (not cached)."""
    recorded = {row["doc_id"]: row for row in read_rows(CALIBRATION / f"{dataset}.jsonl")}
    schema, examples = dev_documents(dataset, len(recorded))
    program, _origin = best_program(dataset, schema)
    scorer = Scorer(program.schema)
    client = CacheOnlyClient(program.model, params=dict(program.model_params), max_retries=0)
    results, skipped = [], []
    for example in examples:
        row = recorded.get(example.doc_id)
        if row is None or row["program"] != program.hash:
            continue
        started = time.perf_counter()
        record, trace = extract(program, example.text, client)
        if not trace.cached or record is None:
            skipped.append(example.doc_id)
            print(
                f"[{dataset}] {example.doc_id}: not cached, skipped ({time.perf_counter() - started:.1f} s)"
            )
            continue
        started = time.perf_counter()
        evidence = ground_record(record, DocumentIndex(example.text), program.schema, program.formats)
        grounding_s = time.perf_counter() - started
        outcome = Outcome(
            example.doc_id,
            OutcomeKind.OK,
            value=record,
            evidence=tuple(evidence),
            field_confidence=dict(trace.field_confidence),
        )
        item = review_item(outcome, program.schema, policy)
        results.append(_result(row, outcome, item, scorer, example.gold, grounding_s, program.schema))
    return results, skipped


def _result(
    row: dict[str, Any],
    outcome: Outcome,
    item: Any,
    scorer: Scorer,
    gold: dict[str, Any],
    grounding_s: float,
    schema: dict[str, Any],
) -> DocumentResult:
    leaves = [
        Leaf(
            path=e.path,
            correct=leaf_correct(scorer, outcome.value, gold, e.path),
            method=e.method,
            confidence=outcome.field_confidence.get(e.path),
            required=is_required(schema, e.path),
        )
        for e in outcome.evidence
    ]
    known = [leaf.confidence for leaf in leaves if leaf.confidence is not None]
    return DocumentResult(
        doc_id=outcome.doc_id,
        leaves=leaves,
        reasons=list(item.reasons) if item else [],
        issues=len(item.issues) if item else 0,
        min_confidence=min(known) if known else None,
        grounding_s=round(grounding_s, 5),
        extraction_s=row["wall_s"],
    )


def save(dataset: str, documents: list[DocumentResult], skipped: list[str], policy: ReviewPolicy) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data = {
        "dataset": dataset,
        "policy": asdict(policy),
        "skipped_not_cached": skipped,
        "documents": [asdict(d) for d in documents],
    }
    (OUT / f"{dataset}.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def load(dataset: str) -> tuple[list[DocumentResult], list[str], float | None]:
    path = OUT / f"{dataset}.json"
    if not path.exists():
        return [], [], None
    data = json.loads(path.read_text(encoding="utf-8"))
    documents = [
        DocumentResult(**{**d, "leaves": [Leaf(**leaf) for leaf in d["leaves"]]}) for d in data["documents"]
    ]
    return documents, data["skipped_not_cached"], data["policy"]["below_confidence"]


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def detection_rows(leaves: list[Leaf], bound: float) -> list[str]:
    """Markdown rows: each flag's flagged count, wrong values caught, precision and recall."""
    flags = {
        "not found": lambda leaf: leaf.method == "not_found",
        f"confidence < {bound}": lambda leaf: leaf.confidence is not None and leaf.confidence < bound,
        "either": lambda leaf: (
            leaf.method == "not_found" or (leaf.confidence is not None and leaf.confidence < bound)
        ),
    }
    rows = []
    for name, flag in flags.items():
        found = detection(leaves, flag)
        shares = f"{_share(found.precision)} | {_share(found.recall)}"
        rows.append(f"| {name} | {found.flagged} | {found.caught} | {shares} |")
    return rows


def _section(name: str, documents: list[DocumentResult], skipped: int, bound: float) -> list[str]:
    leaves = [leaf for d in documents for leaf in d.leaves]
    wrong = sum(not leaf.correct for leaf in leaves)
    methods: dict[str, int] = {}
    for leaf in leaves:
        methods[leaf.method] = methods.get(leaf.method, 0) + 1
    return [
        f"**{name}**: {len(documents)} documents ({skipped} skipped, not cached), {len(leaves)} values, "
        f"{wrong} wrong; grounding: "
        + ", ".join(f"{method} {count}" for method, count in sorted(methods.items())),
        "",
        "| flag a value as wrong when | flagged | wrong among them | precision | recall |",
        "|---|---|---|---|---|",
        *detection_rows(leaves, bound),
        "",
    ]


def _catch_row(name: str, documents: list[DocumentResult]) -> str:
    count, share, random_share = review_catch(documents, REVIEW_RATE)
    wrong = sum(not leaf.correct for d in documents for leaf in d.leaves)
    in_review = sum(1 for d in documents if d.issues)
    shares = f"{_share(share)} | {random_share:.2f}"
    return f"| {name} | {len(documents)} | {in_review} | {count} | {wrong} | {shares} |"


def _time_row(name: str, documents: list[DocumentResult]) -> str:
    grounding = sorted(d.grounding_s for d in documents)
    extraction = sum(d.extraction_s for d in documents) / len(documents)
    mean = sum(grounding) / len(grounding)
    return (
        f"| {name} | {len(documents)} | {mean * 1000:.1f} | {grounding[-1] * 1000:.1f} | "
        f"{extraction:.1f} | {mean / extraction:.1e} |"
    )


def report() -> str:
    per_dataset = {name: load(name) for name in NAMES}
    measured = {name: found for name, found in per_dataset.items() if found[0]}
    if not measured:
        return "Not run yet."
    bound = next(b for _docs, _skipped, b in measured.values() if b is not None)
    pooled = [d for docs, _skipped, _bound in measured.values() for d in docs]
    lines: list[str] = []
    for name, (docs, skipped, _bound) in measured.items():
        lines += _section(name, docs, len(skipped), bound)
    pooled_skipped = sum(len(skipped) for _docs, skipped, _bound in measured.values())
    lines += _section("all three", pooled, pooled_skipped, bound)
    lines += [
        f"Review queue at a {REVIEW_RATE:.0%} review rate (policy: required value not found, or "
        f"confidence < {bound}; documents ranked by review issues, then lowest confidence):",
        "",
        "| dataset | documents | in review | reviewed (top 10%) | wrong values | share caught | random 10% |",
        "|---|---|---|---|---|---|---|",
        *[_catch_row(name, docs) for name, (docs, _s, _b) in measured.items()],
        _catch_row("all three", pooled),
        "",
        "Grounding time per document against the extraction call (the real-model call's wall time "
        "that benchmarks/calibration.py recorded):",
        "",
        "| dataset | documents | grounding ms, mean | grounding ms, max | extraction s, mean | ratio |",
        "|---|---|---|---|---|---|",
        *[_time_row(name, docs) for name, (docs, _s, _b) in measured.items()],
        _time_row("all three", pooled),
    ]
    return "\n".join(lines)


def write_doc(tables: str) -> None:
    """Rewrite the measured tables in docs/evidence.md (the section is added once, at the end)."""
    text = DOC.read_text(encoding="utf-8")
    if SECTION_START not in text:
        DOC.write_text(
            f"{text.rstrip()}\n\n## Measured\n\n{SECTION_START}\n{SECTION_END}\n", encoding="utf-8"
        )
    replace_between(DOC, SECTION_START, SECTION_END, tables)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default=",".join(NAMES))
    parser.add_argument("--below", type=float, default=0.8, help="the review policy's confidence bound")
    parser.add_argument("--report", action="store_true", help="only print the tables")
    parser.add_argument("--write-doc", action="store_true", help="rewrite the tables in docs/evidence.md")
    args = parser.parse_args()
    if not args.report:
        policy = ReviewPolicy(when_not_found="required", below_confidence=args.below)
        for dataset in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            documents, skipped = measure(dataset, policy)
            save(dataset, documents, skipped, policy)
            print(f"[{dataset}] {len(documents)} documents grounded, {len(skipped)} skipped (not cached)")
    tables = report()
    print(tables)
    if args.write_doc:
        write_doc(tables)


if __name__ == "__main__":
    main()
