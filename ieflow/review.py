"""The record of one program's nightly review: what it found, the challenger's registry entry, the
history kept in `<name>/nightly.json`, and the summary table row. Plain functions, no Prefect: the
nightly flow passes in what Prefect knows (which flow run it is).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ieflow.champion import Decision, Policy, Scorecard, decision_markdown, skipped
from ieflow.program import ExtractionProgram
from ieflow.registry import ProgramVersion, Registry

MAX_RUNS_KEPT = 60  # decisions remembered per program in nightly.json
NO_DATASET = skipped("no labelled dataset: register the program with --dataset or set `datasets`")


def not_enough_labels(count: int, minimum: int) -> Decision:
    """Keep the champion: too few documents labelled since the last optimization."""
    return skipped(
        f"{count} new labelled documents since the last optimization, fewer than min_new_labels={minimum}",
        "not_enough_labels",
    )


@dataclass(frozen=True)
class Challenger:
    """The program the optimizer built from the champion, and where it was built."""

    program: ExtractionProgram
    run_dir: Path  # checkpoint, ledgers, report.md, pareto.png
    optimize_flow_run_id: str


@dataclass(frozen=True)
class HoldoutCards:
    """Champion and challenger scored on the same held-out documents."""

    champion: Scorecard
    challenger: Scorecard


@dataclass(frozen=True)
class ReviewResult:
    """What one review found: the decision and, when a challenger was built, how it compared."""

    decision: Decision
    champion_version: int
    challenger_version: int | None = None  # the challenger's registry version (None: not registered)
    new_labels: int = 0
    cards: HoldoutCards | None = None
    links: dict[str, str] = field(default_factory=dict)  # label -> markdown link or `path`
    plot: str | None = None  # an embedded markdown image

    def outcome(self, *, at: str, run: dict[str, Any], champion_after: int | None) -> dict[str, Any]:
        """The nightly.json entry (and the flow's result) for this review; `run` says which flow
        run made it."""
        return {
            "at": at,
            **run,
            "decision": self.decision.code,
            "promoted": self.decision.promote,
            "reason": self.decision.reason,
            "headline": self.decision.headline(),
            "champion_before": self.champion_version,
            "champion_after": champion_after,
            "challenger": self.challenger_version,
            "new_labels": self.new_labels,
            "champion_score": self.cards.champion.score if self.cards else None,
            "challenger_score": self.cards.challenger.score if self.cards else None,
        }

    def markdown(self, name: str, policy: Policy) -> str:
        """The review's report: champion vs challenger, the decision and its reason."""
        return decision_markdown(
            name,
            self.decision,
            self.cards.champion if self.cards else None,
            self.cards.challenger if self.cards else None,
            champion_version=self.champion_version,
            challenger_version=self.challenger_version,
            new_label_count=self.new_labels,
            policy=policy,
            links=self.links or None,
            plot=self.plot,
        )

    def verdict(self) -> str:
        """One line for the artifact's description."""
        kept = (
            f"promoted v{self.challenger_version}"
            if self.decision.promote
            else f"kept v{self.champion_version}"
        )
        return f"{kept}: {self.decision.headline()}"


def with_outcome(state: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    """nightly.json after a review: the outcome appended to the (bounded) history."""
    runs = [*state.get("runs", []), outcome][-MAX_RUNS_KEPT:]
    return {**state, "runs": runs, "last_run": outcome["at"]}


def register_challenger(
    registry: Registry,
    name: str,
    champion: ProgramVersion,
    challenger: Challenger,
    cards: HoldoutCards,
    decision: Decision,
    *,
    dataset: str,
    optimizer: str,
    new_labels: int,
    run: dict[str, Any],
) -> int | None:
    """Register a challenger that differs from the champion (promoted when the decision says so);
    returns its version, or None when the optimizer found nothing but the champion itself."""
    program = challenger.program
    if program.hash == champion.hash:
        return None
    entry = registry.register(
        name,
        program,
        dataset=dataset,
        promote=False,
        note=decision.reason,
        scores={
            "holdout": cards.challenger.score,
            "per_field": cards.challenger.per_field,
            "n": cards.challenger.n,
            "champion_holdout": cards.champion.score,
            "val": program.metadata.get("val_score"),
        },
        cost={"tokens_per_doc": cards.challenger.tokens_per_doc, "usd_per_doc": cards.challenger.usd_per_doc},
        lineage={
            "parent_version": champion.version,
            "parent_hash": champion.hash,
            "optimizer": optimizer,
            "new_labels": new_labels,
            "steps": program.metadata.get("lineage", []),
        },
        source_run={
            **run,
            "optimize_flow_run_id": challenger.optimize_flow_run_id,
            "run_dir": str(challenger.run_dir),
        },
    )
    if decision.promote:
        registry.promote(name, entry.version, reason=decision.reason, by="nightly")
    return entry.version


def run_key(champion_hash: str, data_fp: str, settings: dict[str, Any]) -> str:
    """Folder name of an optimization: same champion, data and settings -> same folder -> its
    checkpoint and ledgers are reused instead of spending the budget again."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{champion_hash[:10]}-{data_fp[:10]}-{digest}"


def summary_row(name: str, outcome: dict[str, Any]) -> dict[str, Any]:
    """One row of the night's summary table."""

    def fmt(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else "-"

    before, after = outcome.get("champion_before"), outcome.get("champion_after")
    champion = f"v{before} → v{after}" if before and after and before != after else f"v{after or before}"
    return {
        "program": name,
        "decision": str(outcome.get("decision", "")).replace("_", " "),
        "champion": champion if (before or after) else "-",
        "champion score": fmt(outcome.get("champion_score")),
        "challenger score": fmt(outcome.get("challenger_score")),
        "new labels": outcome.get("new_labels", 0),
        "summary": outcome.get("headline") or outcome.get("reason", "")[:80],
    }
