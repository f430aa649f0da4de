"""The run's checkpoint: versioned JSON written after every step, so a killed run resumes.

Version 2 holds the shared parts (step, RNG, candidates, history, lessons, usage) and the
optimizer's typed `State` under "state". A version-1 checkpoint (the untyped state dict, lessons
as sentences) migrates on load; any other version fails with `CheckpointError`, naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ieflow import storage
from ieflow.optimize.candidates import Candidate
from ieflow.optimize.lessons import LessonLog
from ieflow.optimize.run_log import RunEvent, event_from_json
from ieflow.optimize.state import OptimizerState

CHECKPOINT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class CheckpointError(ValueError):
    """A checkpoint this code cannot resume (unknown version, or another run's)."""


@dataclass
class Checkpoint:
    """Everything a resumed run needs, as typed parts."""

    optimizer: str
    seed_program_hash: str
    step: int
    best_step: int
    rng_state: tuple[Any, ...]
    candidates: list[Candidate]
    history: list[RunEvent]
    lessons: LessonLog
    state: OptimizerState
    wall_s: float = 0.0
    optimizer_cost_usd: float = 0.0
    stop_reason: str = ""
    migrated_from: int | None = field(default=None, compare=False)  # the version read, if older

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "optimizer": self.optimizer,
            "seed_program_hash": self.seed_program_hash,
            "step": self.step,
            "best_step": self.best_step,
            "rng": _rng_to_json(self.rng_state),
            "candidates": [c.to_dict() for c in self.candidates],
            "history": [e.to_json() for e in self.history],
            "lessons": self.lessons.to_json(),
            "state": self.state.to_json(),
            "wall_s": self.wall_s,
            "optimizer_cost_usd": self.optimizer_cost_usd,
            "stop_reason": self.stop_reason,
        }

    def save(self, path: str | Path) -> None:
        storage.write_json(self.to_json(), path)

    @classmethod
    def from_json(cls, data: dict[str, Any], state_type: type[OptimizerState], source: str) -> Checkpoint:
        """Read version 2, or migrate version 1; `source` names the file in error messages."""
        version = data.get("version")
        if version not in READABLE_VERSIONS:
            raise CheckpointError(
                f"{source}: checkpoint version {version!r} cannot be resumed by this ieflow "
                f"(it reads versions {', '.join(map(str, READABLE_VERSIONS))}); use a new run folder"
            )
        try:
            if version == 1:  # the untyped state dict; lessons as sentences
                state, lessons = state_type.from_v1(data["state"]), LessonLog.from_sentences(data["lessons"])
            else:
                state, lessons = state_type.from_json(data["state"]), LessonLog.from_json(data["lessons"])
            return cls(
                optimizer=data["optimizer"],
                seed_program_hash=data["seed_program_hash"],
                step=data["step"],
                best_step=data.get("best_step", 0),
                rng_state=_rng_from_json(data["rng"]),
                candidates=[Candidate.from_dict(c) for c in data["candidates"]],
                history=[event_from_json(entry) for entry in data["history"]],
                lessons=lessons,
                state=state,
                wall_s=data.get("wall_s", 0.0),
                optimizer_cost_usd=data.get("optimizer_cost_usd", 0.0),
                stop_reason=data.get("stop_reason", ""),
                migrated_from=version if version != CHECKPOINT_VERSION else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{source}: checkpoint version {version} is damaged or incomplete ({exc!r}); "
                "use a new run folder"
            ) from exc

    @classmethod
    def load(cls, path: str | Path, state_type: type[OptimizerState]) -> Checkpoint | None:
        """The checkpoint at `path`, or None when there is none yet."""
        if not Path(path).exists():
            return None
        return cls.from_json(storage.read_json(path), state_type, str(path))


def _rng_to_json(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(data: list[Any]) -> tuple[Any, ...]:
    return (data[0], tuple(data[1]), data[2])


__all__ = ["CHECKPOINT_VERSION", "Checkpoint", "CheckpointError"]
