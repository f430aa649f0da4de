"""What `Optimizer.compile` returns: the best program, every candidate, the history and the usage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ieflow import storage
from ieflow.optimize.candidates import Candidate
from ieflow.optimize.choice import FinalChoice
from ieflow.program import ExtractionProgram


@dataclass
class OptimizationResult:
    optimizer: str
    best_program: ExtractionProgram
    best_index: int
    candidates: list[Candidate]
    pareto_front: list[int]  # candidate indices on the quality/cost front, cheapest first
    history: list[dict[str, Any]]
    lessons: list[str]
    usage: dict[str, float]
    stop_reason: str
    settings: dict[str, Any] = field(default_factory=dict)
    choice: FinalChoice | None = None  # how best_index was chosen (None: read from an older file)

    @property
    def seed_score(self) -> float:
        return self.candidates[0].val_score if self.candidates else 0.0

    @property
    def best_score(self) -> float:
        return self.candidates[self.best_index].val_score

    def to_dict(self) -> dict[str, Any]:
        # The choice is written when the evidence changed it; otherwise best_index says it all.
        changed = {"choice": self.choice.to_dict()} if self.choice and self.choice.changed else {}
        return changed | {
            "optimizer": self.optimizer,
            "best_index": self.best_index,
            "seed_val_score": self.seed_score,
            "best_val_score": self.best_score,
            "pareto_front": self.pareto_front,
            "usage": self.usage,
            "stop_reason": self.stop_reason,
            "settings": self.settings,
            "lessons": self.lessons,
            "candidates": [c.to_dict() for c in self.candidates],
            "history": self.history,
        }

    def save(self, run_dir: str | Path) -> None:
        storage.write_json(self.to_dict(), storage.join(str(run_dir), "result.json"))
        self.best_program.save(storage.join(str(run_dir), "program.json"))


__all__ = ["OptimizationResult"]
