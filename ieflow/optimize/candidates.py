"""The candidate pool: every program scored on validation, the best, the fronts and the lineage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ieflow.optimize.pareto import quality_cost_front
from ieflow.program import ExtractionProgram


@dataclass
class Candidate:
    """A program in the pool, with how it came to be and how it scored on validation."""

    index: int
    program: ExtractionProgram
    parents: list[int]
    changed_component: str  # changed from the first parent: "seed", "field:date", "instruction", "merge"...
    step: int
    val_scores: dict[str, float]
    tokens_per_doc: float
    note: str = ""

    @property
    def val_score(self) -> float:
        return sum(self.val_scores.values()) / len(self.val_scores) if self.val_scores else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "program": self.program.to_dict(),
            "parents": self.parents,
            "changed": self.changed_component,
            "step": self.step,
            "val_scores": self.val_scores,
            "val_score": self.val_score,
            "tokens_per_doc": self.tokens_per_doc,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(
            index=data["index"],
            program=ExtractionProgram.from_dict(data["program"]),
            parents=list(data["parents"]),
            changed_component=data["changed"],
            step=data["step"],
            val_scores=dict(data["val_scores"]),
            tokens_per_doc=data["tokens_per_doc"],
            note=data.get("note", ""),
        )


class CandidatePool:
    """The candidates in the order they were added (index = position), and the step of the last
    new best (for patience)."""

    def __init__(self, candidates: list[Candidate] | None = None, best_step: int = 0) -> None:
        self.candidates: list[Candidate] = candidates or []
        self.best_step = best_step

    def __len__(self) -> int:
        return len(self.candidates)

    def find(self, program: ExtractionProgram) -> Candidate | None:
        """The candidate with the same program (by hash), if any: a program is scored once."""
        return next((c for c in self.candidates if c.program.hash == program.hash), None)

    def add(self, candidate: Candidate) -> None:
        """Append `candidate`; a validation score above the best so far marks its step as the
        last improvement."""
        previous_best = self.best().val_score if self.candidates else -1.0
        self.candidates.append(candidate)
        if candidate.val_score > previous_best + 1e-9:
            self.best_step = candidate.step

    def best(self) -> Candidate:
        """Highest validation score; ties go to the cheaper, then the earlier candidate."""
        return max(self.candidates, key=lambda c: (round(c.val_score, 9), -c.tokens_per_doc, -c.index))

    def best_val_score(self) -> float | None:
        return self.best().val_score if self.candidates else None

    def quality_cost_front(self) -> list[int]:
        """Indices on the validation-score / tokens-per-document front, cheapest first."""
        return quality_cost_front([(c.val_score, c.tokens_per_doc) for c in self.candidates])

    def ancestors(self, index: int) -> list[int]:
        """`index` and every candidate it descends from, through all parents (merges have two)."""
        seen, stack = [], [index]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.append(current)
                stack.extend(self.candidates[current].parents)
        return seen

    def common_ancestor(self, a: int, b: int) -> int | None:
        """The latest candidate both descend from (or are), if any."""
        shared = set(self.ancestors(a)) & set(self.ancestors(b))
        return max(shared) if shared else None

    def lineage(self, index: int) -> list[dict[str, Any]]:
        """The chain of changes from the seed to candidate `index` (first parent at each step)."""
        chain = []
        current: int | None = index
        while current is not None:
            candidate = self.candidates[current]
            chain.append(
                {
                    "index": current,
                    "changed": candidate.changed_component,
                    "val_score": round(candidate.val_score, 4),
                }
            )
            current = candidate.parents[0] if candidate.parents else None
        return list(reversed(chain))


__all__ = ["Candidate", "CandidatePool"]
