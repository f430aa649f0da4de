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
from ieflow.optimize import Budget, make_optimizer  # noqa: E402
from ieflow.optimize.split_scoring import load_split_examples, score_outside_budget  # noqa: E402
from ieflow.program import ExtractionProgram, LongDocStrategy  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
OUT = Path(os.environ.get("IEFLOW_BENCH_OUT", ROOT / "benchmarks" / "results"))
SEED_INSTRUCTION = {
    "sroie": "Extract the receipt fields as JSON.",
    "deepform_adbuy": "Extract the political ad buy fields as JSON.",
    "kleister_nda": "Extract the agreement fields as JSON.",
}
DEFAULT_BUDGET = {"sroie": 300, "deepform_adbuy": 150}


def seed_program(dataset: str, schema: dict, max_input_tokens: int) -> ExtractionProgram:
    return ExtractionProgram.from_schema(
        schema,
        instruction=SEED_INSTRUCTION.get(dataset, "Extract the fields as JSON."),
        name=dataset,
        strategy=LongDocStrategy(kind="select", max_input_tokens=max_input_tokens),
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


def run(
    dataset: str, optimizers: list[str], budget: int, sizes: tuple[int, int, int], max_input_tokens: int
) -> None:
    out = OUT / dataset
    out.mkdir(parents=True, exist_ok=True)
    n_train, n_val, n_test = sizes
    schema, splits = load_split_examples(
        DATASETS / dataset, seed=0, limits={"train": n_train, "val": n_val, "test": n_test}
    )
    program = seed_program(dataset, schema, max_input_tokens)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary["dataset"] = dataset
    summary["sizes"] = {k: len(splits[k]) for k in ("train", "val", "test")}
    summary["budget_metric_calls"] = budget
    print(f"[{dataset}] train {len(splits['train'])}, val {len(splits['val'])}, test {len(splits['test'])}")
    started = time.time()
    baseline = score_outside_budget(program, splits["test"], out / "test_evaluations.jsonl")
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
        test = score_outside_budget(result.best_program, splits["test"], out / "test_evaluations.jsonl")
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
    for summary_path in sorted(OUT.glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        base = summary["baseline"]
        sizes = summary["sizes"]
        lines += [
            f"## {summary['dataset']}",
            "",
            f"train {sizes['train']}, val {sizes['val']}, test {sizes['test']}; "
            f"budget {summary['budget_metric_calls']} metric calls per optimizer.",
            "",
            "| program | test score | macro F1 | prompt tokens/doc | metric calls | wall time | commit |",
            "|---|---|---|---|---|---|---|",
            f"| baseline | {base['score']:.3f} | {base['macro_f1']:.3f} | "
            f"{base['prompt_tokens']:.0f} | - | - | - |",
        ]
        for name, row in summary.get("optimizers", {}).items():
            test = row["test"]
            lines.append(
                f"| {name} | {test['score']:.3f} | {test['macro_f1']:.3f} | "
                f"{test['prompt_tokens']:.0f} | {row['metric_calls']} | "
                f"{row['optimization_wall_s'] / 60:.0f} min | {row.get('code', '-')} |"
            )
        for checkpoint in sorted(summary_path.parent.glob("*/checkpoint.json")):
            name = checkpoint.parent.name
            if name in summary.get("optimizers", {}):
                continue
            state = json.loads(checkpoint.read_text())
            calls = len((checkpoint.parent / "evaluations.jsonl").read_text().splitlines())
            scores = [c["val_score"] for c in state["candidates"]]
            lines.append(
                f"| {name} (in progress: step {state['step']}, {calls} of "
                f"{summary['budget_metric_calls']} metric calls) | not yet scored on test | - | - | "
                f"{calls} | val {scores[0]:.3f} -> best {max(scores):.3f} so far | - |"
            )
        lines += ["", "Per-field test scores:", ""]
        fields = list(base["per_field"])
        lines.append("| program | " + " | ".join(fields) + " |")
        lines.append("|---" * (len(fields) + 1) + "|")
        lines.append("| baseline | " + " | ".join(f"{base['per_field'][f]:.2f}" for f in fields) + " |")
        for name, row in summary.get("optimizers", {}).items():
            per = row["test"]["per_field"]
            lines.append(f"| {name} | " + " | ".join(f"{per.get(f, 0):.2f}" for f in fields) + " |")
        lines.append("")
        notes = summary_path.parent / "NOTES.md"  # observations written by hand, kept across reports
        if notes.exists():
            lines += [notes.read_text(encoding="utf-8").strip(), ""]
    return "\n".join(lines)


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
    parser.add_argument("--max-input-tokens", type=int, default=1500)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        text = report()
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / "benchmarks.md").write_text(text + "\n")
        print(text)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("LiteLLM").setLevel(logging.WARNING)
    budget = args.budget or DEFAULT_BUDGET.get(args.dataset, 150)
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    run(args.dataset, names, budget, (args.train, args.val, args.test), args.max_input_tokens)


if __name__ == "__main__":
    main()
