"""The label-free path on datasets with gold: how far do suggested schemas and teacher labels get?

    python benchmarks/label_free.py schema --docs 3              # suggest a schema per dataset
    python benchmarks/label_free.py teacher --docs 5 --samples 3 # (a) teacher drafts vs gold
    python benchmarks/label_free.py report [--write-doc]         # tables (into docs/benchmarks.md)

Stages (more are added as subcommands: (b) GEPA on silver labels, (c) SPO, (d) judge vs gold):
- schema: a schema is suggested (`ieflow.labelfree.suggest`) from the first `--docs` training
  documents of sroie and deepform_adbuy; each gold field is matched to at most one suggested field
  (fuzzy name match, else name + description), and its type compared (date, number, string, enum,
  items). Saved as results/label_free/<dataset>/schema_<docs>.json (skipped when present).
- teacher: the gold records hidden, `draft_labels` drafts the first `--docs` training documents
  with the gold schema; each draft is scored with ieflow's Scorer against gold, per field, and
  counted as accepted or sent to review. One JSON line per document in
  results/label_free/<dataset>/teacher.jsonl (skipped when present for the same model and samples).
Model answers stay in the LM response cache, so a re-run or a larger `--docs` spends only what is new.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rapidfuzz import fuzz  # noqa: E402

from benchmarks.calibration import read_rows, replace_between  # noqa: E402
from ieflow import config  # noqa: E402
from ieflow.datasets import Example, document_text, load_corpus  # noqa: E402
from ieflow.labelfree.suggest import SuggestConfig, suggest_schema  # noqa: E402
from ieflow.labelfree.teacher import TeacherConfig, draft_labels  # noqa: E402
from ieflow.schema import resolve, types_of  # noqa: E402
from ieflow.scoring import Scorer  # noqa: E402

DATASETS = Path(os.environ.get("IEFLOW_DATASETS", ROOT.parent / "shared" / "datasets"))
OUT = ROOT / "benchmarks" / "results" / "label_free"
NAMES = ("sroie", "deepform_adbuy")
DOC = ROOT / "docs" / "benchmarks.md"
SECTION_START, SECTION_END = "<!-- label_free:start -->", "<!-- label_free:end -->"
# rapidfuzz token_set_ratio (0-100) at which two field names, or a name with its description,
# say the same thing; names are compared as words (`flight_from` -> "flight from").
NAME_MATCH, DESCRIPTION_MATCH = 80.0, 60.0


def train_documents(dataset: str, n: int) -> tuple[dict[str, Any], list[Example]]:
    """The first `n` training documents in label order, with their text (only theirs is parsed)."""
    corpus = load_corpus(DATASETS / dataset, with_text=False)
    chosen = corpus.by_split("train")[:n]
    return corpus.schema, [dataclasses.replace(ex, text=_text(ex)) for ex in chosen]


def _text(example: Example) -> str:
    source = Path(example.source or "")
    return document_text(source, example.content_hash or "", source.read_bytes())


def kind(schema: dict[str, Any], node: dict[str, Any]) -> str:
    """A field's type as the coverage table names it."""
    node = resolve(schema, node)
    types = set(types_of(node)) - {"null"}
    if "array" in types:
        items = resolve(schema, node.get("items") or {})
        return "items" if "object" in types_of(items) else "list"
    if "enum" in node:
        return "enum"
    if node.get("format") in ("date", "date-time"):
        return "date"
    if types & {"number", "integer"}:
        return "number"
    return "boolean" if "boolean" in types else "string"


def _words(name: str) -> str:
    return name.replace("_", " ")


def coverage(gold: dict[str, Any], suggested: dict[str, Any]) -> list[dict[str, Any]]:
    """Per gold field: the suggested field it is matched to (one each, best score first), how it
    matched, and both types."""
    gold_props = resolve(gold, gold)["properties"]
    sugg_props = resolve(suggested, suggested)["properties"]
    candidates = []
    for g, g_node in gold_props.items():
        for s, s_node in sugg_props.items():
            by_name = fuzz.token_set_ratio(_words(g), _words(s))
            g_text = f"{_words(g)} {g_node.get('description', '')}"
            s_text = f"{_words(s)} {s_node.get('description', '')}"
            by_text = fuzz.token_set_ratio(g_text, s_text)
            if by_name >= NAME_MATCH:
                candidates.append((1, by_name, g, s, "name"))
            elif by_text >= DESCRIPTION_MATCH:
                candidates.append((0, by_text, g, s, "description"))
    matched: dict[str, tuple[str, str]] = {}
    used: set[str] = set()
    for _, _, g, s, how in sorted(candidates, reverse=True):
        if g not in matched and s not in used:
            matched[g] = (s, how)
            used.add(s)
    rows = []
    for g, g_node in gold_props.items():
        s, how = matched.get(g, (None, None))
        s_kind = kind(suggested, sugg_props[s]) if s else None
        g_kind = kind(gold, g_node)
        rows.append(
            {
                "gold": g,
                "gold_type": g_kind,
                "suggested": s,
                "how": how,
                "type": s_kind,
                "same_type": s_kind == g_kind,
            }
        )
    return rows


def run_schema(dataset: str, n_docs: int, model: str) -> None:
    path = OUT / dataset / f"schema_{n_docs}.json"
    if path.exists() and json.loads(path.read_text()).get("model") == model:
        print(f"[{dataset}] schema from {n_docs} documents already recorded: {path}")
        return
    gold, examples = train_documents(dataset, n_docs)
    started = time.perf_counter()
    suggestion = suggest_schema(examples, SuggestConfig(model=model, title=dataset))
    rows = coverage(gold, suggestion.schema)
    result = {
        "model": model,
        "documents": [ex.doc_id for ex in examples],
        "wall_s": round(time.perf_counter() - started, 1),
        "coverage": rows,
        "failures": [dataclasses.asdict(f) for f in suggestion.failures],
        "schema": suggestion.schema,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    covered = sum(r["suggested"] is not None for r in rows)
    print(f"[{dataset}] {covered}/{len(rows)} gold fields covered, {result['wall_s']}s: {path}")


def run_teacher(dataset: str, n_docs: int, cfg: TeacherConfig) -> None:
    schema, examples = train_documents(dataset, n_docs)
    scorer = Scorer(schema)
    path = OUT / dataset / "teacher.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = {r["doc_id"] for r in read_rows(path) if (r["model"], r["samples"]) == (cfg.model, cfg.samples)}
    for example in examples:
        if example.doc_id in done:
            continue
        started = time.perf_counter()
        hidden = dataclasses.replace(example, gold={})  # the teacher never sees the gold record
        (draft,) = draft_labels([hidden], schema, cfg)
        score = scorer.score(draft.record, example.gold)
        row = {
            "doc_id": example.doc_id,
            "model": cfg.model,
            "samples": cfg.samples,
            "temperature": cfg.temperature,
            "wall_s": round(time.perf_counter() - started, 1),
            "needs_review": draft.needs_review,
            "problems": draft.problems,
            "agreement": draft.agreement,
            "field_scores": {name: score.fields[name].score for name in scorer.top_level},
        }
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        print(
            f"[{dataset}] {example.doc_id}: score {score.score:.2f}, review={draft.needs_review} "
            f"({row['wall_s']}s)",
            flush=True,
        )


def _schema_tables(dataset: str) -> list[str]:
    lines: list[str] = []
    for path in sorted((OUT / dataset).glob("schema_*.json"), key=lambda p: int(p.stem.split("_")[1])):
        result = json.loads(path.read_text())
        rows = result["coverage"]
        covered = [r for r in rows if r["suggested"]]
        same = sum(r["same_type"] for r in covered)
        suggested = list(result["schema"]["properties"])
        lines += [
            f"Schema from {len(result['documents'])} training documents ({result['model']}, "
            f"{result['wall_s']} s, {len(result['failures'])} failed answers): {len(covered)} of "
            f"{len(rows)} gold fields covered, {same} with the gold type; {len(suggested)} fields "
            f"suggested ({', '.join(suggested)}).",
            "",
            "| gold field | gold type | suggested field | matched by | suggested type |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['gold']} | {r['gold_type']} | {r['suggested'] or '-'} | "
                f"{r['how'] or '-'} | {r['type'] or '-'} |"
            )
        lines.append("")
    return lines


def _teacher_tables(dataset: str) -> list[str]:
    rows = read_rows(OUT / dataset / "teacher.jsonl")
    lines: list[str] = []
    for model, samples in sorted({(r["model"], r["samples"]) for r in rows}):
        mine = [r for r in rows if (r["model"], r["samples"]) == (model, samples)]
        accepted = [r for r in mine if not r["needs_review"]]
        fields = list(mine[0]["field_scores"])
        lines += [
            f"Teacher {model}, {samples} samples at temperature {mine[0]['temperature']}: "
            f"{len(mine)} training documents drafted, {len(mine) - len(accepted)} sent to review "
            f"({(len(mine) - len(accepted)) / len(mine):.0%}), {len(accepted)} accepted as labels; "
            f"mean {sum(r['wall_s'] for r in mine) / len(mine):.0f} s per document.",
            "",
            "| field | accuracy, all drafts | accuracy, accepted | mean agreement | flagged |",
            "|---|---|---|---|---|",
        ]
        for name in fields:
            all_mean = sum(r["field_scores"][name] for r in mine) / len(mine)
            acc = f"{sum(r['field_scores'][name] for r in accepted) / len(accepted):.2f}" if accepted else "-"
            agree = [r["agreement"].get(name, 0.0) for r in mine]
            flagged = sum(name in r["problems"] for r in mine)
            lines.append(
                f"| {name} | {all_mean:.2f} | {acc} | {sum(agree) / len(agree):.2f} | {flagged}/{len(mine)} |"
            )
        lines.append("")
    return lines


def report() -> str:
    lines = [
        "Generated by `python benchmarks/label_free.py report --write-doc` from "
        "benchmarks/results/label_free/. Accuracy = ieflow's Scorer field score of the teacher's "
        'draft against the hidden gold record; "flagged" = drafts with a problem on that field.',
        "",
    ]
    for dataset in NAMES:
        body = _schema_tables(dataset) + _teacher_tables(dataset)
        if body:
            lines += [f"### {dataset}", "", *body]
    return "\n".join(lines).rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    stages = parser.add_subparsers(dest="stage", required=True)
    schema = stages.add_parser("schema", help="suggest a schema per dataset and measure its coverage")
    schema.add_argument("--docs", type=int, default=3)
    schema.add_argument("--model", default=config.reflection_model())
    teacher = stages.add_parser("teacher", help="(a) teacher drafts of training documents vs gold")
    teacher.add_argument("--docs", type=int, default=5)
    teacher.add_argument("--samples", type=int, default=3)
    teacher.add_argument("--model", default=config.reflection_model())
    for stage in (schema, teacher):
        stage.add_argument("--datasets", default=",".join(NAMES))
    shown = stages.add_parser("report", help="print the tables")
    shown.add_argument("--write-doc", action="store_true", help="rewrite them in docs/benchmarks.md")
    args = parser.parse_args()
    if args.stage == "report":
        text = report()
        if args.write_doc:
            replace_between(DOC, SECTION_START, SECTION_END, text)
        print(text)
        return
    for dataset in (d.strip() for d in args.datasets.split(",") if d.strip()):
        if args.stage == "schema":
            run_schema(dataset, args.docs, args.model)
        else:
            run_teacher(dataset, args.docs, TeacherConfig(model=args.model, samples=args.samples))


if __name__ == "__main__":
    main()
