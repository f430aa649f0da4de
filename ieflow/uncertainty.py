"""How sure a comparison of two programs is: a paired bootstrap interval of the mean score difference.

Validation and held-out sets here are small (20-40 documents), where a difference of 0.01 in mean
score is noise. Both programs are scored on the same documents, so the per-document differences
are resampled together (`scipy.stats.bootstrap(..., paired=True)`), which removes the spread that
comes from some documents being harder than others. Decisions read the interval, not the mean:
the nightly promotion needs the lower bound above its margin, and an optimizer's final choice keeps
a cheaper candidate that the interval cannot tell apart from the best.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 4999
SEED = 0  # fixed: the same scores give the same interval, so decisions replay on resume


@dataclass(frozen=True)
class Interval:
    """The mean of (b - a) over the shared documents and its confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE

    def separates(self) -> bool:
        """Whether the interval excludes 0: b and a differ beyond resampling noise."""
        return self.low > 0.0 or self.high < 0.0

    def text(self) -> str:
        """'+0.050 [+0.010, +0.090] (95%, n=20)' for reports."""
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}] ({self.confidence:.0%}, n={self.n})"

    def to_dict(self) -> dict[str, float | int]:
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "confidence": self.confidence,
        }


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(b - a, axis=axis)


def paired_interval(
    a: Mapping[str, float],
    b: Mapping[str, float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """The paired bootstrap interval of mean(b - a) over documents scored by both.

    Raises ValueError when `a` and `b` were not scored on the same documents: a paired comparison
    on different documents would not be one."""
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))
        raise ValueError(f"paired scores must cover the same documents; differ on {', '.join(only[:3])}")
    if not a:
        raise ValueError("no documents to compare on")
    docs = sorted(a)
    first = np.array([a[d] for d in docs], dtype=float)
    second = np.array([b[d] for d in docs], dtype=float)
    mean = float(np.mean(second - first))
    if len(docs) == 1 or np.ptp(second - first) == 0.0:
        # Every resample of equal differences has the same mean: the interval is that point.
        return Interval(mean, mean, mean, len(docs), confidence)
    # Percentile intervals stay defined for the few distinct values small sets give (BCa may not).
    result = stats.bootstrap(
        (first, second),
        _mean_difference,
        paired=True,
        vectorized=True,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return Interval(mean, float(low), float(high), len(docs), confidence)


__all__ = ["CONFIDENCE", "Interval", "paired_interval"]
