"""The markdown report of a split run (the flow's `split-summary` artifact)."""

from __future__ import annotations

from ieflow.splits.plan import SplitSummary


def summary_markdown(summary: SplitSummary, output: str) -> str:
    """Documents per split, per stratum, and every problem found (leaks, unmatched, bad labels)."""
    lines = [f"# Splits: {summary.n_assigned} documents", "", f"Written to `{output}`.", ""]
    lines += ["| split | documents |", "|---|---|"]
    lines += [f"| {name} | {count} |" for name, count in sorted(summary.splits.items())]
    lines += ["", f"Seed {summary.seed}, ratios {summary.ratios}; assigned by: {summary.assigned_by}."]
    if summary.by_stratum:
        lines += _stratum_table(summary)
    if summary.leaks:
        lines += ["", f"**{len(summary.leaks)} content hashes sit in more than one split** (kept as given)."]
    if summary.matched_by:
        lines += ["", f"Labels joined to documents by: {summary.matched_by}."]
    if summary.labels_without_document:
        missing = summary.labels_without_document
        lines += ["", f"{len(missing)} labels have no document: {', '.join(missing[:10])}"]
    if summary.label_errors:
        lines += ["", f"## {len(summary.label_errors)} bad label rows", ""]
        lines += [f"- line {e.line} ({e.doc_id or '?'}): {e.reason}" for e in summary.label_errors[:20]]
    return "\n".join(lines) + "\n"


def _stratum_table(summary: SplitSummary) -> list[str]:
    names = sorted({s for counts in summary.by_stratum.values() for s in counts})
    lines = [
        "",
        f"## By {summary.stratify_by}",
        "",
        "| value | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for value, counts in sorted(summary.by_stratum.items()):
        lines.append(f"| {value[:60]} | " + " | ".join(str(counts.get(n, 0)) for n in names) + " |")
    return lines
