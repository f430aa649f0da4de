"""Optimizers on real data: test field scores of the baseline and of each optimizer at equal budget.

    python benchmarks/optimizers.py --dataset sroie --budget 300 --optimizers gepa,mipro,...
    python benchmarks/optimizers.py --report          # rewrite docs/benchmarks.md from finished runs

Splits come from the shared train/dev (`holdout_split`: train stays train, dev is cut into val and
test by a hash). Everything is resumable: each optimizer run checkpoints in
benchmarks/results/<dataset>/<optimizer>/ (checkpoint.json + evaluations.jsonl ledger), test
evaluations are kept in a ledger shared by all optimizers, and model answers are cached; a run cut
short continues where it stopped when started again. The results folder is committed, so a later
session on a fresh machine resumes from the ledgers (only the step in flight is asked again).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ieflow  # noqa: E402,F401  (offline env defaults)
from benchmarks.doc_costs import TraceLog, cost_summary, score_test  # noqa: E402
from ieflow.datasets import Example, load_corpus  # noqa: E402
from ieflow.optimize import Budget, make_optimizer  # noqa: E402
from ieflow.optimize.split_scoring import load_split_examples  # noqa: E402
from ieflow.optimize.tracking import log_outputs  # noqa: E402
from ieflow.program import ExtractionProgram, LongDocStrategy  # noqa: E402
from ieflow.uncertainty import paired_interval  # noqa: E402

# ../shared/datasets beside the checkout, or beside the folder of worktrees (as benchmarks/longdoc.py).
DATASETS = next(
    (p / "shared" / "datasets" for p in ROOT.parents if (p / "shared" / "datasets").is_dir()),
    ROOT.parent / "shared" / "datasets",
)
OUT = Path(os.environ.get("IEFLOW_BENCH_OUT", ROOT / "benchmarks" / "results"))
SEED_INSTRUCTION = {
    "sroie": "Extract the receipt fields as JSON.",
    "deepform_adbuy": "Extract the political ad buy fields as JSON.",
    "kleister_nda": "Extract the agreement fields as JSON.",
    "cuad": "Extract the contract fields as JSON.",
    "invoice2data": "Extract the invoice fields and its line items as JSON.",
}
DEFAULT_BUDGET = {"sroie": 300, "deepform_adbuy": 150}
# Each dataset's long-document reading, the same for the baseline and every optimizer (GEPA may
# change it through the `strategy` component); datasets not named read by `select`.
SEED_STRATEGY: dict[str, dict] = {
    # Long NDAs, four fields: one call on the first window plus each field's best windows.
    "kleister_nda": {"kind": "select", "chunk_tokens": 400, "top_k": 2},
    # 41 fields over long contracts: 8 fields per call, each group reading its fields' BM25 windows
    # in one call (the 33 clause flags are decided from the passages that mention them).
    "cuad": {"kind": "select", "chunk_tokens": 250, "top_k": 1, "fields_per_call": 8},
}
# Answers longer than the program's default 400 tokens: invoices list every line item.
SEED_MAX_TOKENS = {"invoice2data": 1000}
# Labelled sets too small to split (a single dev split): every document is a test document and
# only the baseline runs.
ALL_TEST = {"invoice2data"}


def seed_program(dataset: str, schema: dict, max_input_tokens: int) -> ExtractionProgram:
    strategy = SEED_STRATEGY.get(dataset, {"kind": "select"})
    program = ExtractionProgram.from_schema(
        schema,
        instruction=SEED_INSTRUCTION.get(dataset, "Extract the fields as JSON."),
        name=dataset,
        strategy=LongDocStrategy(max_input_tokens=max_input_tokens, **strategy),
    )
    if dataset in SEED_MAX_TOKENS:
        program = program.replace(
            model_params={**program.model_params, "max_tokens": SEED_MAX_TOKENS[dataset]}
        )
    return program


def load_examples(dataset: str, sizes: tuple[int, int, int]) -> tuple[dict, dict[str, list[Example]]]:
    """(schema, {train, val, test}); an ALL_TEST dataset has every document in test."""
    if dataset in ALL_TEST:
        corpus = load_corpus(DATASETS / dataset)
        return corpus.schema, {"train": [], "val": [], "test": corpus.examples[: sizes[2] or None]}
    n_train, n_val, n_test = sizes
    return load_split_examples(
        DATASETS / dataset, seed=0, limits={"train": n_train, "val": n_val, "test": n_test}
    )


def code_version() -> str:
    """The commit the result was measured with (optimizers change between sessions), "+changes"
    when ieflow/ had uncommitted edits. Taken once at start: a run lasts hours, the code it runs is
    the code it imported, whatever is committed meanwhile."""
    try:

        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "ieflow")
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+changes" if dirty else "")


CODE_VERSION = code_version()


def checkpoint_stop_reason(run_dir: Path) -> str:
    """Why the run in `run_dir` stopped, as its checkpoint says; empty while unfinished or unstarted."""
    path = run_dir / "checkpoint.json"
    return json.loads(path.read_text()).get("stop_reason", "") if path.exists() else ""


def test_ledgers(out: Path) -> tuple[Path, Path]:
    """The test evaluations (shared by every program of a dataset) and their per-document traces."""
    return out / "test_evaluations.jsonl", out / "test_traces.jsonl"


def run(
    dataset: str, optimizers: list[str], budget: int, sizes: tuple[int, int, int], max_input_tokens: int
) -> None:
    out = OUT / dataset
    out.mkdir(parents=True, exist_ok=True)
    schema, splits = load_examples(dataset, sizes)
    program = seed_program(dataset, schema, max_input_tokens)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary["dataset"] = dataset
    summary["sizes"] = {k: len(splits[k]) for k in ("train", "val", "test")}
    summary["budget_metric_calls"] = budget
    if dataset in ALL_TEST:
        summary["baseline_only"] = True
        optimizers = []
    summary["seed_strategy"] = program.strategy.to_dict()
    print(f"[{dataset}] train {len(splits['train'])}, val {len(splits['val'])}, test {len(splits['test'])}")
    started = time.time()
    baseline = score_test(program, splits["test"], *test_ledgers(out))
    baseline["wall_s"] = time.time() - started
    earlier = summary.get("baseline", {})
    if earlier.get("score") == baseline["score"] and "wall_s" in earlier:
        baseline["wall_s"] = earlier["wall_s"]  # re-read from the cache: keep the first run's figure
    summary["baseline"] = baseline
    summary_path.write_text(json.dumps(summary, indent=2))
    print(f"[{dataset}] baseline test score {summary['baseline']['score']:.3f}")
    for name in optimizers:
        started = time.time()
        finished_earlier = bool(checkpoint_stop_reason(out / name))
        optimizer = make_optimizer(name, run_dir=out / name, seed=0)
        result = optimizer.compile(program, splits["train"], splits["val"], Budget(max_metric_calls=budget))
        test = score_test(result.best_program, splits["test"], *test_ledgers(out))
        log_outputs(out / name, [], {"test": test})  # to its MLflow run, when tracking is on
        earlier = summary.setdefault("optimizers", {}).get(name, {})
        if finished_earlier and earlier.get("code"):
            # A finished run, only re-read: it ran on the code recorded then, not on today's.
            print(f"[{dataset}] {name}: finished earlier (code {earlier['code']}), test {test['score']:.3f}")
            continue
        summary["optimizers"][name] = {
            "test": test,
            "val_seed": result.seed_score,
            "val_best": result.best_score,
            "metric_calls": result.usage["metric_calls"],
            "optimization_wall_s": result.usage["wall_s"],
            "candidates": len(result.candidates),
            "stop_reason": result.stop_reason,
            "session_wall_s": time.time() - started,
            "code": CODE_VERSION,
        }
        summary_path.write_text(json.dumps(summary, indent=2))
        print(
            f"[{dataset}] {name}: val {result.seed_score:.3f} -> {result.best_score:.3f}, "
            f"test {test['score']:.3f} (baseline {summary['baseline']['score']:.3f}), "
            f"{result.usage['metric_calls']} metric calls"
        )


def report() -> str:
    lines = [
        "# Optimizer benchmarks on real data",
        "",
        "Generated by `python benchmarks/optimizers.py --report` from the runs in benchmarks/results/.",
        "Student `local/qwen2.5-coder-0.5b`, reflection/proposal model `local/qwen2.5-coder-1.5b`,",
        "2 CPU cores.",
        "Test score = mean record score (mean of per-field scores) on held-out test documents.",
        "Wall time is the recorded run's own: model calls answered from the LM cache take no time, so",
        "a run re-done over a warm cache shows less than its first run took (see each dataset's notes).",
        "",
    ]
    for folder in sorted(path.parent for path in OUT.glob("*/test_evaluations.jsonl")):
        if (folder / "summary.json").exists():
            lines += dataset_section(folder / "summary.json")
        else:
            lines += unfinished_section(folder)
    return "\n".join(lines)


def unfinished_section(folder: Path) -> list[str]:
    """A dataset whose baseline test evaluation was cut short: what its ledger holds so far, for the
    program evaluated last (earlier programs' lines are kept in the ledger but not shown)."""
    rows = [json.loads(line) for line in (folder / "test_evaluations.jsonl").read_text().splitlines()]
    program = rows[-1]["program"]
    results = [row["result"] for row in rows if row["program"] == program]
    log = TraceLog(folder / "test_traces.jsonl")
    costs = cost_summary([log.get(program, r["doc_id"]) for r in results])
    n = len(results)
    per_field = {f: sum(r["fields"][f] for r in results) / n for f in results[0]["fields"]}
    baseline = {
        "score": sum(r["score"] for r in results) / n,
        "per_field": per_field,
        "prompt_tokens": sum(r["prompt_tokens"] for r in results) / n,
    } | costs
    lines = [
        f"## {folder.name} (unfinished)",
        "",
        f"The baseline's test evaluation was cut short: {n} document(s) scored so far (program {program}).",
        "Figures are over those documents only, not a test split.",
        "",
        f"Baseline mean record score {baseline['score']:.3f}, "
        f"{baseline['prompt_tokens']:.0f} prompt tokens/doc.",
    ]
    summary = {"baseline": baseline}
    lines += [*cost_lines(summary), "", "Per-field scores so far:", "", *per_field_lines(summary), ""]
    notes = folder / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text(encoding="utf-8").strip(), ""]
    return lines


def dataset_section(summary_path: Path) -> list[str]:
    """One dataset's tables: scores, cost per document, per-field scores, then its NOTES.md."""
    summary = json.loads(summary_path.read_text())
    # The reference libraries' finished runs (benchmarks/peers.py), rows of the same tables.
    summary.setdefault("optimizers", {}).update(peer_rows(summary_path.parent))
    base = summary["baseline"]
    sizes = summary["sizes"]
    if summary.get("baseline_only"):
        scope = f"all {sizes['test']} documents as test (one dev split, too small to split); baseline only."
    elif summary.get("optimizers") or any(summary_path.parent.glob("*/checkpoint.json")):
        scope = (
            f"train {sizes['train']}, val {sizes['val']}, test {sizes['test']}; "
            f"budget {summary['budget_metric_calls']} metric calls per optimizer."
        )
    else:
        scope = f"test {sizes['test']} documents; baseline only so far (no optimizer run yet)."
    lines = [f"## {summary['dataset']}", "", scope, ""]
    if "seed_strategy" in summary:
        lines += [f"Seed strategy: `{json.dumps(summary['seed_strategy'], sort_keys=True)}`", ""]
    scores = test_scores(summary_path.parent)
    lines += [
        "| program | test score | vs baseline (95% CI) | macro F1 | prompt tokens/doc | metric calls | "
        "wall time | commit |",
        "|---|---|---|---|---|---|---|---|",
        f"| baseline | {base['score']:.3f} | - | {base['macro_f1']:.3f} | "
        f"{base['prompt_tokens']:.0f} | - | - | - |",
    ]
    for name, row in summary.get("optimizers", {}).items():
        test = row["test"]
        lines.append(
            f"| {name} | {test['score']:.3f} | {versus(scores, base, test)} | {test['macro_f1']:.3f} | "
            f"{test['prompt_tokens']:.0f} | {row['metric_calls']} | "
            f"{row['optimization_wall_s'] / 60:.0f} min | {row.get('code', '-')} |"
        )
    lines += in_progress_rows(summary_path, summary)
    lines += cost_lines(summary)
    lines += ["", "Per-field test scores:", ""]
    lines += per_field_lines(summary)
    lines.append("")
    notes = summary_path.parent / "NOTES.md"  # observations written by hand, kept across reports
    if notes.exists():
        lines += [notes.read_text(encoding="utf-8").strip(), ""]
    return lines


def test_scores(folder: Path) -> dict[str, dict[str, float]]:
    """{program hash: {doc_id: test score}} from the dataset's shared test ledger."""
    by_program: dict[str, dict[str, float]] = {}
    for line in (folder / "test_evaluations.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a torn last line of a killed run, as the ledger skips it
            continue
        by_program.setdefault(row["program"], {})[row["result"]["doc_id"]] = row["result"]["score"]
    return by_program


def versus(scores: dict[str, dict[str, float]], base: dict, test: dict) -> str:
    """The paired bootstrap interval of (program - baseline) over the test documents both have."""
    ours, theirs = scores.get(test.get("program", ""), {}), scores.get(base.get("program", ""), {})
    shared = sorted(set(ours) & set(theirs))
    if not shared:
        return "-"
    return paired_interval({d: theirs[d] for d in shared}, {d: ours[d] for d in shared}).text()


def peer_rows(folder: Path) -> dict[str, dict]:
    """The finished runs of the reference libraries in a dataset's folder (peer-<name>/summary.json,
    written by benchmarks/peers.py), by folder name."""
    return {
        path.parent.name: json.loads(path.read_text()) for path in sorted(folder.glob("peer-*/summary.json"))
    }


def in_progress_rows(summary_path: Path, summary: dict) -> list[str]:
    """A row per optimizer run with a checkpoint but no finished result yet."""
    rows = []
    for checkpoint in sorted(summary_path.parent.glob("*/checkpoint.json")):
        name = checkpoint.parent.name
        if name in summary.get("optimizers", {}):
            continue
        state = json.loads(checkpoint.read_text())
        calls = len((checkpoint.parent / "evaluations.jsonl").read_text().splitlines())
        scores = [c["val_score"] for c in state["candidates"]]
        rows.append(
            f"| {name} (in progress: step {state['step']}, {calls} of "
            f"{summary['budget_metric_calls']} metric calls) | not yet scored on test | - | - | "
            f"- | {calls} | val {scores[0]:.3f} -> best {max(scores):.3f} so far | - |"
        )
    return rows


def cost_lines(summary: dict) -> list[str]:
    """Per-document cost and failures of each program on test, where its traces were kept."""
    programs = {"baseline": summary["baseline"]} | {
        name: row["test"] for name, row in summary.get("optimizers", {}).items()
    }
    traced = {name: test for name, test in programs.items() if "calls_per_doc" in test}
    if not traced:
        return []
    lines = [
        "",
        "Cost and reading per test document (from each extraction's trace):",
        "",
        "| program | docs | model calls/doc (max) | tokens/doc | windows read/doc | readings | "
        "context overflow | head only | answer cut off | failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    failures = []
    for name, test in traced.items():
        readings = ", ".join(f"{kind} {n}" for kind, n in sorted(test["readings"].items()))
        lines.append(
            f"| {name} | {test['traced_docs']} | {test['calls_per_doc']:.1f} ({test['max_calls_per_doc']}) | "
            f"{test['tokens_per_doc']:.0f} | {test['windows_read_per_doc']:.1f} | {readings} | "
            f"{test['context_overflow']} | {test['head_only']} | {test.get('answer_cut_off', 0)} | "
            f"{len(test['failed'])} |"
        )
        failures += [f"- {name}, {f['doc_id']}: {f['reason']}" for f in test["failed"]]
    return lines + (["", "Failed documents:", "", *failures] if failures else [])


def per_field_lines(summary: dict) -> list[str]:
    """Per-field test scores: programs as rows, or (more than 8 fields) fields as rows."""
    base = summary["baseline"]
    programs = {"baseline": base["per_field"]} | {
        name: row["test"]["per_field"] for name, row in summary.get("optimizers", {}).items()
    }
    fields = list(base["per_field"])
    if len(fields) > 8:
        lines = ["| field | " + " | ".join(programs) + " |", "|---" * (len(programs) + 1) + "|"]
        for f in fields:
            lines.append(f"| {f} | " + " | ".join(f"{per.get(f, 0):.2f}" for per in programs.values()) + " |")
        return lines
    lines = ["| program | " + " | ".join(fields) + " |", "|---" * (len(fields) + 1) + "|"]
    for name, per in programs.items():
        lines.append(f"| {name} | " + " | ".join(f"{per.get(f, 0):.2f}" for f in fields) + " |")
    return lines


LABEL_FREE_HEADING = "## Label-free path"


def _label_free_section(doc: Path) -> str:
    """The label-free section (benchmarks/label_free.py writes its tables): kept when this report
    rewrites the rest of the page."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    start = text.find(LABEL_FREE_HEADING)
    return text[start:] if start >= 0 else ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="sroie")
    parser.add_argument("--optimizers", default="gepa")
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--train", type=int, default=60)
    parser.add_argument("--val", type=int, default=20)
    parser.add_argument("--test", type=int, default=40)
    parser.add_argument("--sizes", default=None, help="train,val,test (overrides the three above)")
    parser.add_argument("--max-input-tokens", type=int, default=1500)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        text = report()
        (ROOT / "docs").mkdir(exist_ok=True)
        doc = ROOT / "docs" / "benchmarks.md"
        kept = _label_free_section(doc)
        doc.write_text(text + "\n" + (f"\n{kept}" if kept else ""))
        print(text)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("LiteLLM").setLevel(logging.WARNING)
    budget = args.budget or DEFAULT_BUDGET.get(args.dataset, 150)
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    sizes = (args.train, args.val, args.test)
    if args.sizes:
        try:
            n_train, n_val, n_test = (int(n) for n in args.sizes.split(","))
        except ValueError:
            parser.error(f"--sizes takes three whole numbers train,val,test, not {args.sizes!r}")
        sizes = (n_train, n_val, n_test)
    run(args.dataset, names, budget, sizes, args.max_input_tokens)


if __name__ == "__main__":
    main()
