"""The reference libraries beside ieflow's optimizers: same data, splits, models, budget and scorer.

    make bench-deps                                     # the `bench` extra: gepa and dspy, into .venv
    python benchmarks/peers.py --dataset sroie --peers gepa-lib,dspy-mipro,dspy-gepa --budget 300
    python benchmarks/optimizers.py --report            # peers appear in the same table

Peers: `gepa-lib` (`gepa.optimize` with an adapter over ieflow's extraction and scorer,
benchmarks/peer_gepa.py), `dspy-mipro` (DSPy MIPROv2, auto="light") and `dspy-gepa` (`dspy.GEPA`) on a
DSPy program built from the same schema and seed instruction (benchmarks/peer_dspy.py). The splits
and seed program are benchmarks/optimizers.py's; the student is the seed program's model and the
reflection model ieflow's, both through ieflow's LM client and cache. Each peer's final program is
scored on the test split with ieflow's scorer, with its serving tokens per document.

Resumable: each peer keeps its state in benchmarks/results/<dataset>/peer-<name>/ (gepa's run folder,
the evaluation ledger, the optimized DSPy program once optimization finished, the test answers), and
model answers are cached; `summary.json` there is the finished row the report reads.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.doc_costs import score_test
from benchmarks.optimizers import (
    CODE_VERSION,
    DEFAULT_BUDGET,
    OUT,
    load_examples,
    seed_program,
    test_ledgers,
)
from ieflow import config
from ieflow.datasets import Example
from ieflow.lm import LMClient
from ieflow.optimize import Budget, tracking
from ieflow.program import ExtractionProgram
from ieflow.scoring import Scorer, aggregate

PEERS = ("gepa-lib", "dspy-mipro", "dspy-gepa")
REFLECTION_MAX_TOKENS = 400  # gepa and DSPy rewrite a whole instruction, not one rule


def library_version(distribution: str) -> str:
    """`name version` of an installed library (gepa has no `__version__`)."""
    return f"{distribution} {importlib.metadata.version(distribution)}"


def peer_dir(out: Path, name: str) -> Path:
    return out / f"peer-{name}"


def clients(program: ExtractionProgram) -> tuple[LMClient, LMClient]:
    """The student (the seed program's model and settings) and the reflection model."""
    student = LMClient(program.model, params=program.model_params)
    reflection = LMClient(config.reflection_model(), params={"max_tokens": REFLECTION_MAX_TOKENS})
    return student, reflection


def run_gepa_lib(
    program: ExtractionProgram, splits: dict[str, list[Example]], budget: int, out: Path
) -> dict[str, Any]:
    from benchmarks.peer_gepa import run_gepa_library

    folder = peer_dir(out, "gepa-lib")
    started = time.time()
    _, reflection = clients(program)
    run = run_gepa_library(program, splits["train"], splits["val"], budget, folder, reflection)
    wall_s = time.time() - started
    run.best_program.save(folder / "program.json")
    test = score_test(run.best_program, splits["test"], *test_ledgers(out))
    return {
        "test": test,
        "val_seed": run.val_seed,
        "val_best": run.val_best,
        "metric_calls": run.metric_calls,
        "candidates": run.candidates,
        "optimization_wall_s": wall_s,
        "library": library_version("gepa"),
    }


def run_dspy(
    kind: str, program: ExtractionProgram, splits: dict[str, list[Example]], budget: int, out: Path
) -> dict[str, Any]:
    """MIPROv2 or dspy.GEPA; the optimized module is saved once optimization finishes, so a run cut
    during its test scoring does not optimize again."""
    from benchmarks.peer_dspy import load_program, optimize_with_dspy, save_program

    folder = peer_dir(out, f"dspy-{kind}")
    done = folder / "optimization.json"
    if done.exists():
        row = json.loads(done.read_text())
        module = load_program(program, folder / "program.json")
    else:
        started = time.time()
        data = (splits["train"], splits["val"])
        run = optimize_with_dspy(kind, program, data, budget, folder, clients(program))
        module = run.module
        save_program(module, folder / "program.json")
        row = {
            "val_seed": run.val_seed,
            "val_best": run.val_best,
            "metric_calls": run.metric_calls,
            "library_metric_calls": run.library_metric_calls,
            "candidates": run.candidates,
            "optimization_wall_s": time.time() - started,
            "library": library_version("dspy"),
        }
        done.write_text(json.dumps(row, indent=2))
    student, _ = clients(program)
    row["test"] = score_dspy_module(program, module, splits["test"], student, folder / "test_answers.jsonl")
    return row


def module_hash(module: Any) -> str:
    state = json.dumps(module.dump_state(), sort_keys=True, default=str)
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def score_dspy_module(
    program: ExtractionProgram, module: Any, examples: list[Example], student: LMClient, answers: Path
) -> dict[str, Any]:
    """`module` on each test document (answers kept in `answers`, keyed by the module's hash, so a
    resumed run asks only for the rest), scored with ieflow's scorer; tokens per document measured
    on the calls each document made."""
    import dspy

    from benchmarks.peer_dspy import TokenMeter, document_text, dspy_lm, record_of

    key = module_hash(module)
    rows = {}
    if answers.exists():
        for line in answers.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row["module"] == key:
                rows[row["doc_id"]] = row
    meter = TokenMeter()
    lm = dspy_lm(student, meter)
    for ex in examples:
        if ex.doc_id in rows:
            continue
        meter.reset()
        record, error = None, None
        try:
            with dspy.context(lm=lm):
                record = record_of(program, module(document=document_text(program, ex.text)))
        except Exception as exc:  # DSPy's parse failures and model errors: scored 0, reason kept
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        row = {"module": key, "doc_id": ex.doc_id, "record": record, "error": error, "calls": meter.calls}
        row |= {"prompt_tokens": meter.prompt_tokens, "completion_tokens": meter.completion_tokens}
        with open(answers, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        rows[ex.doc_id] = row
    return answers_summary(program, examples, [rows[ex.doc_id] for ex in examples])


def answers_summary(program: ExtractionProgram, examples: list[Example], rows: list[dict]) -> dict[str, Any]:
    """The same figures `score_test` gives an ieflow program (serving tokens from the DSPy calls)."""
    scorer = Scorer(program.schema)
    agg = aggregate(scorer.score(r["record"], ex.gold) for r, ex in zip(rows, examples, strict=True))
    n = len(rows)
    return {
        "n": n,
        "score": agg.mean_record_score,
        "macro_f1": agg.macro,
        "micro_f1": agg.micro,
        "per_field": dict(agg.per_field),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows) / n,
        "completion_tokens": sum(r["completion_tokens"] for r in rows) / n,
        "tokens_per_doc": sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) / n,
        "model_calls_per_doc": sum(r["calls"] for r in rows) / n,
        "errors": sum(1 for r in rows if r["error"]),
        "failed_docs": [{"doc_id": r["doc_id"], "reason": r["error"]} for r in rows if r["error"]],
    }


def run_peer(
    name: str, dataset: str, budget: int, sizes: tuple[int, int, int], max_input_tokens: int
) -> None:
    out = OUT / dataset
    summary_path = peer_dir(out, name) / "summary.json"
    if summary_path.exists():
        row = json.loads(summary_path.read_text())
        print(
            f"[{dataset}] peer {name}: finished earlier (code {row['code']}), test {row['test']['score']:.3f}"
        )
        return
    schema, splits = load_examples(dataset, sizes)
    program = seed_program(dataset, schema, max_input_tokens)
    print(f"[{dataset}] peer {name}: train {len(splits['train'])}, val {len(splits['val'])}, budget {budget}")
    if name == "gepa-lib":
        row = run_gepa_lib(program, splits, budget, out)
    else:
        row = run_dspy(name.removeprefix("dspy-"), program, splits, budget, out)
    row |= {"budget_metric_calls": budget, "stop_reason": "finished", "code": CODE_VERSION}
    summary_path.write_text(json.dumps(row, indent=2))
    track_peer(peer_dir(out, name), name, row)
    print(
        f"[{dataset}] peer {name}: val {row['val_seed']} -> {row['val_best']}, "
        f"test {row['test']['score']:.3f}, "
        f"{row['metric_calls']} metric calls, {row['test']['prompt_tokens']:.0f} prompt tokens/doc"
    )


def track_peer(folder: Path, name: str, row: dict[str, Any], uri: str | None = None) -> None:
    """A finished peer as an MLflow run (when tracking is configured), as ieflow's own runs are
    logged: its settings and budget as parameters, validation and test scores as metrics, its
    summary and program as artifacts."""
    uri = tracking.configured_uri(uri)
    if uri is None:
        return
    settings = {"library": row.get("library"), "code": row.get("code")}
    budget = Budget(max_metric_calls=row["budget_metric_calls"])
    tracker = tracking.MlflowTracker.open(uri, folder, f"peer-{name}", settings, budget, "ieflow-peers")
    numbers = {k: row[k] for k in ("val_seed", "val_best", "metric_calls", "optimization_wall_s")}
    tracker.log_scores("optimization", {k: v for k, v in numbers.items() if v is not None})
    tracker.log_scores("test", row["test"])
    tracker.log_files([folder / "summary.json", folder / "program.json"])
    tracker.client.set_terminated(tracker.run_id)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="sroie")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--sizes", default="60,20,40", help="train,val,test (as benchmarks/optimizers.py)")
    parser.add_argument("--max-input-tokens", type=int, default=1500)
    args = parser.parse_args()
    names = [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    try:
        n_train, n_val, n_test = (int(n) for n in args.sizes.split(","))
    except ValueError:
        parser.error(f"--sizes takes three whole numbers train,val,test, not {args.sizes!r}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("LiteLLM").setLevel(logging.WARNING)
    budget = args.budget or DEFAULT_BUDGET.get(args.dataset, 150)
    for name in names:
        run_peer(name, args.dataset, budget, (n_train, n_val, n_test), args.max_input_tokens)


if __name__ == "__main__":
    main()
