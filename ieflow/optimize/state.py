"""Each optimizer's own state: a small typed dataclass per optimizer, checkpointed as JSON.

`OptimizerRun` holds the parts every optimizer shares (candidate pool, run log, lessons, RNG);
whatever else an optimizer must remember to resume (a minibatch position, proposals tried, a
search space) lives in its `State`, which the checkpoint writes with `to_json` and reads back with
`from_json`. `from_v1` reads the untyped dict that checkpoints of version 1 kept under "state".
They live together here, so what every optimizer remembers, and how old checkpoints map onto it,
reads in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Self


class OptimizerState(Protocol):
    """What a checkpoint needs from an optimizer's state.

    `to_json` returns plain JSON types only; `from_json(to_json())` gives an equal state;
    `from_v1` takes the version-1 dict (keys as the old optimizer wrote them, possibly none yet,
    possibly keys that are no longer used) and returns the same position.
    """

    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self: ...

    @classmethod
    def from_v1(cls, state: dict[str, Any]) -> Self: ...


@dataclass
class NoState:
    """For a run with no optimizer-specific state (e.g. one built directly in a test)."""

    def to_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NoState:
        return cls()

    @classmethod
    def from_v1(cls, state: dict[str, Any]) -> NoState:
        return cls()


@dataclass
class MinibatchPosition:
    """Where the epoch-wise shuffled minibatch sampler stands: the current epoch's order of
    training document ids and the next position in it (empty before the first draw)."""

    order: list[str] = field(default_factory=list)
    pos: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"order": list(self.order), "pos": self.pos}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> MinibatchPosition:
        data = data or {}
        return cls(list(data.get("order", [])), int(data.get("pos", 0)))


# -- GEPA and SIMBA --------------------------------------------------------------------------------


@dataclass
class GEPAState:
    minibatch: MinibatchPosition = field(default_factory=MinibatchPosition)
    # proposals tried per parent program hash, per component (the component chooser's damping)
    tried: dict[str, dict[str, int]] = field(default_factory=dict)
    merges_tried: list[tuple[int, int]] = field(default_factory=list)  # candidate index pairs
    formats_tried: list[str] = field(default_factory=list)  # "<parent hash>:<field path>"
    idle: int = 0  # steps in a row that spent no metric call (GEPA's stop when nothing new is scored)

    def tried_on(self, parent_hash: str) -> dict[str, int]:
        """The proposal counts per component for one parent (created empty on first use)."""
        return self.tried.setdefault(parent_hash, {})

    def to_json(self) -> dict[str, Any]:
        return {
            "minibatch": self.minibatch.to_json(),
            "tried": {h: dict(counts) for h, counts in self.tried.items()},
            "merges_tried": [list(pair) for pair in self.merges_tried],
            "formats_tried": list(self.formats_tried),
            "idle": self.idle,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GEPAState:
        return cls(
            minibatch=MinibatchPosition.from_json(data.get("minibatch")),
            tried={h: dict(counts) for h, counts in data.get("tried", {}).items()},
            merges_tried=[(a, b) for a, b in data.get("merges_tried", [])],
            formats_tried=list(data.get("formats_tried", [])),
            idle=int(data.get("idle", 0)),
        )

    @classmethod
    def from_v1(cls, state: dict[str, Any]) -> GEPAState:
        # Same keys; "field_facts" and "suggested_formats" of older runs are recomputed now.
        return cls.from_json(state)


@dataclass
class SIMBAState:
    minibatch: MinibatchPosition = field(default_factory=MinibatchPosition)
    idle: int = 0  # steps in a row that tried no edit

    def to_json(self) -> dict[str, Any]:
        return {"minibatch": self.minibatch.to_json(), "idle": self.idle}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SIMBAState:
        return cls(MinibatchPosition.from_json(data.get("minibatch")), int(data.get("idle", 0)))

    @classmethod
    def from_v1(cls, state: dict[str, Any]) -> SIMBAState:
        return cls.from_json(state)


# -- MIPROv2 and BootstrapFewShot --------------------------------------------------------------------


@dataclass
class MIPROState:
    bootstrap_ids: list[str] | None = None  # training examples the seed runs on (drawn once)
    bootstrap: bool | None = None  # whether bootstrapping was affordable (None: not decided yet)
    instructions: list[str] = field(default_factory=list)  # [seed instruction, proposals kept...]
    attempts: int = 0  # proposal calls made
    demo_sets: list[list[str] | None] | None = None  # None until built; set 0 is the seed's demos
    full_evals: list[int] = field(default_factory=list)  # completed-trial counts with a validation pass
    study: bool = False  # the optuna journal in the run folder belongs to this run
    free_trials: int = 0  # trials in a row that cost no metric call

    def to_json(self) -> dict[str, Any]:
        return {
            "bootstrap_ids": self.bootstrap_ids,
            "bootstrap": self.bootstrap,
            "instructions": list(self.instructions),
            "attempts": self.attempts,
            "demo_sets": self.demo_sets,
            "full_evals": list(self.full_evals),
            "study": self.study,
            "free_trials": self.free_trials,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MIPROState:
        return cls(
            bootstrap_ids=data.get("bootstrap_ids"),
            bootstrap=data.get("bootstrap"),
            instructions=list(data.get("instructions", [])),
            attempts=int(data.get("attempts", 0)),
            demo_sets=data.get("demo_sets"),
            full_evals=list(data.get("full_evals", [])),
            study=bool(data.get("study", False)),
            free_trials=int(data.get("free_trials", 0)),
        )

    @classmethod
    def from_v1(cls, state: dict[str, Any]) -> MIPROState:
        # v1: {"bootstrap_ids": [...], "mipro": {the rest}}
        return cls.from_json({**state.get("mipro", {}), "bootstrap_ids": state.get("bootstrap_ids")})


@dataclass
class BootstrapState:
    bootstrap_ids: list[str] | None = None  # training examples the seed runs on (drawn once)
    affordable: bool | None = None  # whether bootstrapping was affordable (None: not decided yet)
    good: list[str] | None = None  # ids the seed got right (None: not bootstrapped yet)
    made: int = 0  # demo-set candidates made

    def to_json(self) -> dict[str, Any]:
        return {
            "bootstrap_ids": self.bootstrap_ids,
            "affordable": self.affordable,
            "good": self.good,
            "made": self.made,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BootstrapState:
        return cls(
            data.get("bootstrap_ids"), data.get("affordable"), data.get("good"), int(data.get("made", 0))
        )

    @classmethod
    def from_v1(cls, state: dict[str, Any]) -> BootstrapState:
        # v1: {"bootstrap_ids": [...], "bootstrap": {"made", "affordable", "good"}}
        return cls.from_json({**state.get("bootstrap", {}), "bootstrap_ids": state.get("bootstrap_ids")})


# -- OPRO and APE -----------------------------------------------------------------------------------


@dataclass
class ScoredInstruction:
    """An instruction scored on the fixed training subset; `candidate` is its pool index once it
    has had a validation pass; `round` is APE's round (None for OPRO)."""

    text: str
    score: float
    candidate: int | None = None
    round: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "score": self.score, "candidate": self.candidate}
        if self.round is not None:
            out["round"] = self.round
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScoredInstruction:
        return cls(data["text"], data["score"], data.get("candidate"), data.get("round"))


@dataclass
class OPROState:
    subset: list[str] | None = None  # the fixed training subset (drawn once)
    history: list[ScoredInstruction] = field(default_factory=list)  # in the order proposed
    idle: int = 0  # rejected proposals in a row

    def to_json(self) -> dict[str, Any]:
        return {"subset": self.subset, "history": [h.to_json() for h in self.history], "idle": self.idle}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OPROState:
        history = [ScoredInstruction.from_json(h) for h in data.get("history") or []]
        return cls(data.get("subset"), history, int(data.get("idle", 0)))

    @classmethod
    def from_v1(cls, state: dict[str, Any]) -> OPROState:
        return cls.from_json(state.get("opro", {}))  # v1: {"opro": {"subset", "history", "idle"}}


@dataclass
class APEState:
    subset: list[str] | None = None  # the fixed training subset (drawn once)
    round: int = 0
    attempts: int = 0  # proposal calls made in this round
    pool: list[ScoredInstruction] = field(default_factory=list)  # every scored proposal, all rounds

    def to_json(self) -> dict[str, Any]:
        return {
            "subset": self.subset,
            "round": self.round,
            "attempts": self.attempts,
            "pool": [e.to_json() for e in self.pool],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> APEState:
        pool = [ScoredInstruction.from_json(e) for e in data.get("pool", [])]
        return cls(data.get("subset"), int(data.get("round", 0)), int(data.get("attempts", 0)), pool)

    @classmethod
    def from_v1(cls, state: dict[str, Any]) -> APEState:
        return cls.from_json(state.get("ape", {}))  # v1: {"ape": {"subset", "round", "attempts", "pool"}}


# -- SPO -------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """One pairwise judgement of a round: on `doc_id`, with the candidate shown first or second;
    `vote` is "candidate", "incumbent" or "tie"."""

    doc_id: str
    candidate_first: bool
    vote: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "candidate_first": self.candidate_first,
            "vote": self.vote,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Comparison:
        return cls(data["doc_id"], bool(data["candidate_first"]), data["vote"], data["reason"])


@dataclass
class SPORound:
    """A round in flight or done: the candidate instruction, the training documents it is compared
    on, the comparisons made so far, and (when done) whether the candidate won."""

    step: int
    text: str
    doc_ids: list[str]
    comparisons: list[Comparison] = field(default_factory=list)
    won: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "text": self.text,
            "doc_ids": list(self.doc_ids),
            "comparisons": [c.to_json() for c in self.comparisons],
            "won": self.won,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SPORound:
        comparisons = [Comparison.from_json(c) for c in data.get("comparisons", [])]
        return cls(int(data["step"]), data["text"], list(data["doc_ids"]), comparisons, data.get("won"))


@dataclass
class SPOState:
    incumbent: int = 0  # pool index of the incumbent program (the seed until a candidate wins)
    judge_calls: int = 0  # pairwise judge requests recorded (repair turns count)
    rounds: list[SPORound] = field(default_factory=list)  # the last one may be in flight
    idle: int = 0  # rejected proposals in a row

    def to_json(self) -> dict[str, Any]:
        return {
            "incumbent": self.incumbent,
            "judge_calls": self.judge_calls,
            "rounds": [r.to_json() for r in self.rounds],
            "idle": self.idle,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SPOState:
        rounds = [SPORound.from_json(r) for r in data.get("rounds", [])]
        return cls(
            int(data.get("incumbent", 0)), int(data.get("judge_calls", 0)), rounds, int(data.get("idle", 0))
        )

    @classmethod
    def from_v1(cls, state: dict[str, Any]) -> SPOState:
        return cls.from_json(state.get("spo", {}))  # SPO came after v1: never in a v1 checkpoint


__all__ = [
    "APEState",
    "BootstrapState",
    "Comparison",
    "GEPAState",
    "MIPROState",
    "MinibatchPosition",
    "NoState",
    "OPROState",
    "OptimizerState",
    "SIMBAState",
    "SPORound",
    "SPOState",
    "ScoredInstruction",
]
