"""Optimization reports: a markdown summary and a quality-cost Pareto plot (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ieflow.labelfree.sources import ScoringChoice
from ieflow.optimize.result import OptimizationResult
from ieflow.uncertainty import paired_interval

MAX_EMBEDDED_PNG = 300_000  # bytes: artifacts live in the Prefect database, keep them small


def embedded_png(path: str | Path, alt: str) -> str | None:
    """A PNG as a markdown image with a data URL: Prefect's UI renders it inside the artifact,
    with no file server or object store needed. None when the file is missing or too big."""
    import base64

    file = Path(path)
    if not file.is_file() or file.stat().st_size > MAX_EMBEDDED_PNG:
        return None
    return f"![{alt}](data:image/png;base64,{base64.b64encode(file.read_bytes()).decode('ascii')})"


def field_table(baseline: dict[str, float], optimized: dict[str, float]) -> list[str]:
    lines = ["| field | baseline | optimized | change |", "|---|---|---|---|"]
    for name in baseline:
        before, after = baseline[name], optimized.get(name, 0.0)
        lines.append(f"| {name} | {before:.2f} | {after:.2f} | {after - before:+.2f} |")
    return lines


def _cost_table(baseline: dict[str, Any], optimized: dict[str, Any]) -> list[str]:
    """Tokens per document, plus dollars only when a model has a price (local models cost $0)."""
    priced = baseline["cost_usd"] > 0 or optimized["cost_usd"] > 0
    header = "| program | prompt tokens | completion tokens |" + (" cost (USD) |" if priced else "")
    rows = [header, "|---|---|---|" + ("---|" if priced else "")]
    for label, row in (("baseline", baseline), ("optimized", optimized)):
        line = f"| {label} | {row['prompt_tokens']:.0f} | {row['completion_tokens']:.0f} |"
        rows.append(line + (f" {row['cost_usd']:.6f} |" if priced else ""))
    return rows


def optimization_markdown(
    result: OptimizationResult,
    baseline_test: dict[str, Any],
    optimized_test: dict[str, Any],
    plot_path: str | None,
    scoring: ScoringChoice | None = None,
) -> str:
    """The optimize flow's report: which labels it used, test scores per field, cost per document,
    lineage, the front."""
    lines = [
        f"# Optimization report: {result.best_program.name} ({result.optimizer})",
        "",
        f"**Test score** {baseline_test['score']:.3f} → **{optimized_test['score']:.3f}** "
        f"({optimized_test['score'] - baseline_test['score']:+.3f}); validation "
        f"{result.seed_score:.3f} → {result.best_score:.3f}. Stopped: {result.stop_reason}.",
        "",
        (scoring or ScoringChoice("gold", "gold")).line(),
        "",
        *_evidence_lines(result, baseline_test, optimized_test),
        "## Per field on the test set",
        "",
        *field_table(baseline_test["per_field"], optimized_test["per_field"]),
        "",
        "## Serving cost per document",
        "",
        *_cost_table(baseline_test, optimized_test),
        "",
        "## The optimization's own cost",
        "",
        _own_cost_line(result),
        "",
        *_lineage_lines(result),
        "",
        *_front_lines(result),
    ]
    if plot_path:
        image = embedded_png(plot_path, "quality-cost Pareto plot")
        lines += ["", image or "", f"Plot of all candidates: `{plot_path}`"]
    if result.lessons:
        lines += ["", "## Lessons (carried to the next run)", "", *[f"- {x}" for x in result.lessons[-10:]]]
    return "\n".join(lines) + "\n"


def _evidence_lines(
    result: OptimizationResult, baseline_test: dict[str, Any], optimized_test: dict[str, Any]
) -> list[str]:
    """How sure the test gain is (paired bootstrap over the test documents), and the final choice
    when a cheaper candidate within noise of the best was kept."""
    lines = []
    before, after = baseline_test.get("doc_scores"), optimized_test.get("doc_scores")
    if before and after and set(before) == set(after):
        lines += [
            f"Test difference per document, paired bootstrap: {paired_interval(before, after).text()}.",
            "",
        ]
    if result.choice is not None and result.choice.changed:
        lines += [f"Final choice: {result.choice.reason}.", ""]
    return lines


def _own_cost_line(result: OptimizationResult) -> str:
    usage = result.usage
    judged = f", {usage['judge_calls']:.0f} judge calls" if "judge_calls" in usage else ""
    dollars = (
        f", student ${usage['student_cost_usd']:.4f} + optimizer model ${usage['optimizer_cost_usd']:.4f}."
        if usage["student_cost_usd"] or usage["optimizer_cost_usd"]
        else " (local models: no dollar cost)."
    )
    return (
        f"{usage['metric_calls']:.0f} metric calls{judged}, {len(result.candidates)} candidates, "
        f"{usage['wall_s'] / 60:.1f} min wall time" + dollars
    )


def _lineage_lines(result: OptimizationResult) -> list[str]:
    lines = [
        "## Lineage of the best program",
        "",
        "| candidate | changed | val score | note |",
        "|---|---|---|---|",
    ]
    for step in result.best_program.metadata.get("lineage", []):
        note = result.candidates[step["index"]].note.replace("|", "\\|")[:120]
        lines.append(f"| {step['index']} | {step['changed']} | {step['val_score']:.3f} | {note} |")
    return lines


def _front_lines(result: OptimizationResult) -> list[str]:
    best_index = result.candidates[result.best_index].index
    lines = [
        "## Quality-cost Pareto front (validation)",
        "",
        "| candidate | val score | tokens/doc | changed |",
        "|---|---|---|---|",
    ]
    for index in result.pareto_front:
        c = result.candidates[index]
        marker = " (best)" if index == best_index else ""
        lines.append(
            f"| {index}{marker} | {c.val_score:.3f} | {c.tokens_per_doc:.0f} | {c.changed_component} |"
        )
    return lines


def write_optimization_outputs(
    out: Path,
    result: OptimizationResult,
    baseline_test: dict[str, Any],
    optimized_test: dict[str, Any],
    scoring: ScoringChoice | None = None,
) -> str:
    """The optimize flow's files in `out`: program.json (the best program, its test scores in its
    metadata), pareto.png and report.md; returns the report."""
    best = result.best_program
    best.metadata["test_score"] = optimized_test["score"]
    best.metadata["baseline_test_score"] = baseline_test["score"]
    best.save(out / "program.json")
    plot = pareto_plot(result, out / "pareto.png")
    report = optimization_markdown(result, baseline_test, optimized_test, str(plot), scoring)
    (out / "report.md").write_text(report)
    return report


def pareto_plot(result: OptimizationResult, path: str | Path) -> Path:
    """Every candidate as (tokens per document, validation score); the front joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    xs = [c.tokens_per_doc for c in result.candidates]
    ys = [c.val_score for c in result.candidates]
    ax.scatter(xs, ys, color="#9aa5b1", label="candidates", zorder=2)
    front = result.pareto_front
    ax.plot(
        [xs[i] for i in front], [ys[i] for i in front], "-o", color="#1f6feb", label="Pareto front", zorder=3
    )
    best = result.best_index
    ax.scatter(
        [xs[best]], [ys[best]], s=140, facecolors="none", edgecolors="#d1242f", linewidths=2, label="best"
    )
    ax.scatter([xs[0]], [ys[0]], marker="s", color="#6e7781", label="seed", zorder=4)
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("serving cost: tokens per document")
    ax.set_ylabel("validation score")
    ax.set_title(f"{result.optimizer}: quality vs cost of {len(xs)} candidates")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
