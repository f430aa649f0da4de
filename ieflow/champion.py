"""Champion vs challenger: which labels are new, whether to promote, and the report that says why.

Plain functions (no Prefect), used by the nightly flow and unit-tested on their own. The rule:
both programs are scored on the *same* held-out documents; the challenger replaces the champion only
if it wins by at least `margin` (absolute, on the mean record score) and its serving cost per
document grows by at most `max_cost_increase` (relative). Anything else keeps the champion, and the
decision always carries a one-line reason a person can act on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ieflow.uncertainty import Interval, paired_interval

EPS = 1e-9


@dataclass(frozen=True)
class Policy:
    margin: float = 0.01  # the challenger must beat the champion by this much (mean record score)
    max_cost_increase: float = 0.10  # relative growth of serving cost per document allowed

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin <= 1.0:
            raise ValueError(f"margin must lie in [0, 1], got {self.margin}")
        if self.max_cost_increase < 0:
            raise ValueError(f"max_cost_increase must be >= 0, got {self.max_cost_increase}")


@dataclass(frozen=True)
class Scorecard:
    """One program on the held-out documents (built from `split_scoring.score_outside_budget`)."""

    program_hash: str
    score: float
    per_field: dict[str, float]
    n: int
    tokens_per_doc: float  # prompt + completion tokens: the serving cost of local (unpriced) models
    usd_per_doc: float = 0.0
    errors: int = 0
    doc_ids: tuple[str, ...] = ()
    doc_scores: dict[str, float] = field(default_factory=dict)  # record score per held-out document

    @classmethod
    def from_score(cls, result: dict[str, Any], doc_ids: list[str] | None = None) -> Scorecard:
        return cls(
            program_hash=result["program"],
            score=float(result["score"]),
            per_field={k: float(v) for k, v in result["per_field"].items()},
            n=int(result["n"]),
            tokens_per_doc=float(result["prompt_tokens"]) + float(result["completion_tokens"]),
            usd_per_doc=float(result.get("cost_usd", 0.0)),
            errors=int(result.get("errors", 0)),
            doc_ids=tuple(sorted(doc_ids or ())),
            doc_scores={k: float(v) for k, v in result.get("doc_scores", {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("doc_ids")
        data.pop("doc_scores")
        return data


@dataclass(frozen=True)
class Decision:
    promote: bool
    code: str  # promoted | below_margin | not_separated | too_costly | same_program | no_challenger | skipped
    reason: str
    score_delta: float | None = None
    cost_change: float | None = None  # relative change of serving cost per document
    cost_unit: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    interval: Interval | None = None  # challenger - champion, per held-out document (paired bootstrap)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def headline(self) -> str:
        """A few words for a table cell (the full `reason` goes in the report)."""
        if self.score_delta is None:
            return {"not_enough_labels": "waiting for labels"}.get(self.code, self.code.replace("_", " "))
        cost = f"{self.cost_change:+.0%} {self.cost_unit}" if self.cost_change is not None else ""
        return {
            "promoted": f"{self.score_delta:+.3f} score, {cost}",
            "below_margin": f"{self.score_delta:+.3f} score: below margin",
            "not_separated": f"{self.score_delta:+.3f} score: within noise",
            "too_costly": f"{self.score_delta:+.3f} score, but {cost}: too costly",
            "same_program": "no better program found",
        }.get(self.code, self.code.replace("_", " "))


def skipped(reason: str, code: str = "skipped") -> Decision:
    """No challenger was built (not enough new labels, no dataset, ...): keep the champion."""
    return Decision(promote=False, code=code, reason=reason)


def serving_cost(champion: Scorecard, challenger: Scorecard) -> tuple[float, float, str]:
    """(champion cost, challenger cost, unit): dollars when both are priced, else tokens.

    Local models cost $0, so tokens per document stand in for serving cost (they set latency and
    hardware load); a priced API model is judged in dollars."""
    if champion.usd_per_doc > 0 and challenger.usd_per_doc > 0:
        return champion.usd_per_doc, challenger.usd_per_doc, "USD/doc"
    return champion.tokens_per_doc, challenger.tokens_per_doc, "tokens/doc"


def decide(champion: Scorecard, challenger: Scorecard | None, policy: Policy) -> Decision:
    """Promote the challenger or keep the champion, with the reason."""
    if challenger is None:
        return skipped("the optimizer produced no challenger", "no_challenger")
    if champion.doc_ids and challenger.doc_ids and champion.doc_ids != challenger.doc_ids:
        raise ValueError("champion and challenger were scored on different held-out documents")
    if champion.n != challenger.n:
        raise ValueError(f"held-out sizes differ: champion {champion.n}, challenger {challenger.n} documents")
    if champion.n == 0:
        return skipped("no held-out documents to compare on: add labels to the test split", "no_holdout")
    delta = challenger.score - champion.score
    old_cost, new_cost, unit = serving_cost(champion, challenger)
    change = (new_cost - old_cost) / old_cost if old_cost > 0 else (0.0 if new_cost <= 0 else float("inf"))
    interval = difference_interval(champion, challenger)
    base = dict(score_delta=delta, cost_change=change, cost_unit=unit, interval=interval)
    scores = (
        f"challenger scores {challenger.score:.3f} vs champion {champion.score:.3f} "
        f"on {champion.n} held-out documents"
    )
    if interval is not None:
        scores += f" (difference {interval.text()})"
    if challenger.program_hash == champion.program_hash:
        return Decision(False, "same_program", "the optimizer found nothing better than the champion", **base)
    if delta <= EPS:
        return Decision(False, "below_margin", f"{scores}: no improvement", **base)
    if delta < policy.margin - EPS:
        return Decision(
            False, "below_margin", f"{scores}: {delta:+.3f} is below the margin {policy.margin:.3f}", **base
        )
    if interval is not None and interval.low < policy.margin - EPS:
        reason = (
            f"{scores}: the mean gain {delta:+.3f} clears the margin {policy.margin:.3f}, but the "
            f"interval's lower bound {interval.low:+.3f} does not (the gain may be noise)"
        )
        return Decision(False, "not_separated", reason, **base)
    if change > policy.max_cost_increase + EPS:
        return Decision(
            False,
            "too_costly",
            f"{scores} ({delta:+.3f}) but costs {change:+.0%} {unit} ({old_cost:.4g} -> {new_cost:.4g}), "
            f"above the bound {policy.max_cost_increase:+.0%}",
            **base,
        )
    evidence = f"lower bound {interval.low:+.3f} clears " if interval is not None else ""
    return Decision(
        True,
        "promoted",
        f"{scores} ({delta:+.3f}, {evidence}margin {policy.margin:.3f}) at {change:+.0%} {unit}",
        **base,
    )


def difference_interval(champion: Scorecard, challenger: Scorecard) -> Interval | None:
    """The paired bootstrap interval of challenger - champion, when both carry per-document scores
    (scorecards from before they were kept have none: the decision then reads the means only)."""
    if not champion.doc_scores or not challenger.doc_scores:
        return None
    return paired_interval(champion.doc_scores, challenger.doc_scores)


# --- new labels ------------------------------------------------------------------------------------


def label_snapshot(dataset: str | Path) -> dict[str, str]:
    """{doc_id: fingerprint of its gold record and document bytes} for a labelled folder.

    A corrected label or a replaced document gets a new fingerprint, so it counts as new data."""
    from ieflow.datasets import load_corpus

    corpus = load_corpus(dataset, with_text=False)
    return {
        ex.doc_id: hashlib.sha256(
            json.dumps([ex.gold, ex.content_hash], sort_keys=True, default=str).encode("utf-8")
        ).hexdigest()[:16]
        for ex in corpus.examples
    }


def new_labels(snapshot: dict[str, str], seen: dict[str, str]) -> list[str]:
    """Doc ids labelled (or relabelled) since `seen`, sorted."""
    return sorted(doc_id for doc_id, mark in snapshot.items() if seen.get(doc_id) != mark)


def data_fingerprint(snapshot: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode("utf-8")).hexdigest()[:12]


# --- the report ------------------------------------------------------------------------------------


def decision_markdown(
    name: str,
    decision: Decision,
    champion: Scorecard | None = None,
    challenger: Scorecard | None = None,
    *,
    champion_version: int | None = None,
    challenger_version: int | None = None,
    new_label_count: int = 0,
    policy: Policy | None = None,
    links: dict[str, str] | None = None,
    plot: str | None = None,
) -> str:
    """Champion vs challenger per field, serving cost, the decision and its reason."""
    champ_label = f"champion v{champion_version}" if champion_version else "champion"
    chall_label = f"challenger v{challenger_version}" if challenger_version else "challenger"
    if decision.promote:
        verdict = f"**Promoted {chall_label}**" + (f" (was v{champion_version})" if champion_version else "")
    else:
        verdict = f"**Kept {champ_label}**"
    lines = [f"# Nightly review: {name}", "", verdict, "", f"Why: {decision.reason}.", ""]
    facts = [f"new labelled documents: {new_label_count}"]
    if policy:
        facts.append(f"margin {policy.margin:.3f}")
        facts.append(f"cost bound {policy.max_cost_increase:+.0%}")
    lines += [" · ".join(facts), ""]
    if decision.interval is not None:
        lines += [
            f"Challenger - champion per held-out document, paired bootstrap: {decision.interval.text()}. "
            "Promotion needs the interval's lower bound to clear the margin, not only the mean.",
            "",
        ]
    if champion and challenger:
        labels = (champ_label, chall_label)
        lines += _per_field_table(champion, challenger, labels) + _cost_table(champion, challenger, labels)
    if plot:
        lines += ["", "## How the challenger was found", "", plot]
    if links:
        lines += ["", *[f"- {label}: {target}" for label, target in links.items()]]
    return "\n".join(lines) + "\n"


def _per_field_table(champion: Scorecard, challenger: Scorecard, labels: tuple[str, str]) -> list[str]:
    lines = [
        f"## Per field on {champion.n} held-out documents",
        "",
        f"| field | {labels[0]} | {labels[1]} | change |",
        "|---|---:|---:|---:|",
    ]
    for key in sorted(set(champion.per_field) | set(challenger.per_field)):
        old, new = champion.per_field.get(key, 0.0), challenger.per_field.get(key, 0.0)
        lines.append(f"| {key} | {old:.2f} | {new:.2f} | {_signed(new - old)} |")
    lines.append(
        f"| **record score** | **{champion.score:.3f}** | **{challenger.score:.3f}** | "
        f"**{_signed(challenger.score - champion.score, 3)}** |"
    )
    return lines


def _cost_table(champion: Scorecard, challenger: Scorecard, labels: tuple[str, str]) -> list[str]:
    lines = [
        "",
        "## Serving cost per document",
        "",
        f"| | {labels[0]} | {labels[1]} | change |",
        "|---|---:|---:|---:|",
        f"| tokens | {champion.tokens_per_doc:.0f} | {challenger.tokens_per_doc:.0f} | "
        f"{_pct(challenger.tokens_per_doc, champion.tokens_per_doc)} |",
    ]
    if champion.usd_per_doc > 0 or challenger.usd_per_doc > 0:  # local models are free: no $0 row
        lines.append(
            f"| cost (USD) | {champion.usd_per_doc:.6f} | {challenger.usd_per_doc:.6f} | "
            f"{_pct(challenger.usd_per_doc, champion.usd_per_doc)} |"
        )
    if champion.errors or challenger.errors:
        lines.append(f"| failed extractions | {champion.errors} | {challenger.errors} | |")
    return lines


def _signed(value: float, digits: int = 2) -> str:
    return "0" if abs(value) < 0.5 * 10**-digits else f"{value:+.{digits}f}"


def _pct(new: float, old: float) -> str:
    if old <= 0:
        return "–" if new <= 0 else "new cost"
    return f"{(new - old) / old:+.0%}"
