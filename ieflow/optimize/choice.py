"""The final choice of a run: the best candidate on validation, unless a cheaper one is within noise.

Validation sets are small (often 6-40 documents), so the candidate with the highest mean score is
often not better than a cheaper one in any way the data can show. A candidate that serves with
fewer tokens per document is preferred when the paired bootstrap interval of (best - cheaper) over
the validation documents includes 0; when the interval separates them, the best by score stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ieflow.optimize.candidates import Candidate, CandidatePool
from ieflow.uncertainty import Interval, paired_interval

EPS = 1e-9


@dataclass(frozen=True)
class FinalChoice:
    index: int  # the candidate the run returns
    best_by_score: int  # the candidate with the highest mean validation score
    reason: str
    interval: Interval | None = None  # best_by_score - index, per validation document

    @property
    def changed(self) -> bool:
        """Whether the evidence changed the pick (a cheaper candidate within noise of the best)."""
        return self.index != self.best_by_score

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "best_by_score": self.best_by_score,
            "reason": self.reason,
            "interval": self.interval.to_dict() if self.interval else None,
        }


def choose_final(pool: CandidatePool) -> FinalChoice:
    """The cheapest candidate the interval cannot tell apart from the best by score, else the best."""
    best = pool.best()
    tied: list[tuple[Candidate, Interval]] = []
    for candidate in pool.candidates:
        cheaper = candidate.tokens_per_doc < best.tokens_per_doc - EPS
        if not cheaper or not candidate.val_scores or set(candidate.val_scores) != set(best.val_scores):
            continue
        interval = paired_interval(candidate.val_scores, best.val_scores)
        if not interval.separates():
            tied.append((candidate, interval))
    if not tied:
        return FinalChoice(best.index, best.index, "highest validation score")
    chosen, interval = min(tied, key=lambda t: (t[0].tokens_per_doc, -t[0].val_score, t[0].index))
    reason = (
        f"candidate {chosen.index} ({chosen.tokens_per_doc:.0f} tokens/doc, val {chosen.val_score:.3f}) "
        f"is within noise of the best by score, candidate {best.index} ({best.tokens_per_doc:.0f} "
        f"tokens/doc, val {best.val_score:.3f}): best - cheaper is {interval.text()}, so the cheaper is kept"
    )
    return FinalChoice(chosen.index, best.index, reason, interval)


__all__ = ["FinalChoice", "choose_final"]
