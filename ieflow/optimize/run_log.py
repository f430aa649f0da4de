"""The run log: typed events, kept in order and sent to listeners (a progress display, a flow).

Each event is a dataclass whose fields are its data; `progress` (metric calls spent, the budget,
the best validation score so far, the step) is stamped on by the run when the event is recorded,
and `component` names what the step changed, where it changed something. `to_json` writes the
history entry as result files have always held it: {"step", "event", "metric_calls", **fields},
with the scores rounded as they were; the budget and the best score so far are left out of it
(they are the run's, not the event's, and writing them would change every result file).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Protocol

from ieflow import progress as progress_updates

log = logging.getLogger("ieflow.optimize")


@dataclass(frozen=True)
class Progress:
    """Where the run stood when an event happened (None: not known, e.g. read from a v1 file)."""

    step: int
    metric_calls: int
    max_metric_calls: int | None = None
    best_val_score: float | None = None


def _rounded(digits: int) -> Any:
    return field(metadata={"round": digits})


def _optional(default: Any = None) -> Any:
    return field(default=default, metadata={"omit_none": True})


@dataclass
class RunEvent:
    """Base of every event. `KIND` is the history's "event" value."""

    KIND: ClassVar[str] = "event"
    progress: Progress = field(default=Progress(0, 0), kw_only=True, repr=False)

    @property
    def component(self) -> str | None:
        """The component this step changed or tried to change, if any."""
        return None

    @property
    def label(self) -> str:
        """What happened, in a word or two (for a progress line)."""
        return self.KIND

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "progress":
                continue
            value = getattr(self, f.name)
            if f.metadata.get("omit_none") and value is None:
                continue
            if "round" in f.metadata and value is not None:
                value = round(value, f.metadata["round"])
            out[_json_key(f)] = value
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.progress.step,
            "event": self.KIND,
            "metric_calls": self.progress.metric_calls,
        } | (self.data())


@dataclass
class CandidateAdded(RunEvent):
    KIND: ClassVar[str] = "candidate"
    index: int
    parents: list[int]
    changed_component: str = field(metadata={"key": "changed"})
    val_score: float = _rounded(4)
    tokens_per_doc: float = _rounded(1)
    note: str = ""

    @property
    def component(self) -> str | None:
        return self.changed_component


@dataclass
class Stopped(RunEvent):
    KIND: ClassVar[str] = "stop"
    reason: str
    best: int
    best_val: float


@dataclass
class ReflectionFailed(RunEvent):
    KIND: ClassVar[str] = "reflection_error"
    reason: str


@dataclass
class Skipped(RunEvent):
    KIND: ClassVar[str] = "skip"
    parent: int
    reason: str


@dataclass
class Rejected(RunEvent):
    """A proposal turned down before it cost a metric call."""

    KIND: ClassVar[str] = "rejected"
    component_name: str = field(metadata={"key": "component"})
    reason: str | None
    parent: int | None = _optional()
    round: int | None = _optional()
    text: str | None = _optional()

    @property
    def component(self) -> str | None:
        return self.component_name


@dataclass
class EditTried(RunEvent):
    """A proposed edit scored against its parent on the same minibatch (GEPA, SIMBA)."""

    KIND: ClassVar[str] = "proposal"
    parent: int
    component_name: str = field(metadata={"key": "component"})
    summary: str
    minibatch_before: float = _rounded(4)
    minibatch_after: float = _rounded(4)
    accepted: bool
    hard_example: str | None = _optional()
    spread: float | None = field(default=None, metadata={"omit_none": True, "round": 4})

    @property
    def component(self) -> str | None:
        return self.component_name

    @property
    def label(self) -> str:
        return "accepted" if self.accepted else "not accepted"


@dataclass
class InstructionProposed(RunEvent):
    """A proposed instruction, kept or turned down (`rejected` is the reason) (MIPROv2)."""

    KIND: ClassVar[str] = "proposal"
    component_name: str = field(metadata={"key": "component"})
    text: str
    rejected: str | None

    @property
    def component(self) -> str | None:
        return self.component_name


@dataclass
class InstructionScored(RunEvent):
    """A proposed instruction scored on the fixed training subset (OPRO, APE)."""

    KIND: ClassVar[str] = "proposal"
    component_name: str = field(metadata={"key": "component"})
    text: str
    score: float = _rounded(4)
    improved: bool | None = _optional()
    round: int | None = _optional()

    @property
    def component(self) -> str | None:
        return self.component_name


@dataclass
class MergeTried(RunEvent):
    KIND: ClassVar[str] = "merge"
    parents: list[int]
    ancestor: int
    accepted: bool


@dataclass
class SearchSpaceBuilt(RunEvent):
    KIND: ClassVar[str] = "search_space"
    instructions: int
    demo_sets: list[list[str] | None]


@dataclass
class TrialScored(RunEvent):
    KIND: ClassVar[str] = "trial"
    trial: int
    instruction: int
    demos: int
    score: float


@dataclass
class Bootstrapped(RunEvent):
    KIND: ClassVar[str] = "bootstrapped"
    good: list[str]


@dataclass
class PairsJudged(RunEvent):
    """An SPO round: the candidate compared with the incumbent on the round's documents by the
    pairwise judge (both orders); `judge_calls` is the run's total so far (metric calls are in the
    entry's progress)."""

    KIND: ClassVar[str] = "judged"
    text: str
    documents: int
    candidate_took: int
    incumbent_took: int
    won: bool
    judge_calls: int

    @property
    def component(self) -> str | None:
        return "instruction"

    @property
    def label(self) -> str:
        return "candidate won" if self.won else "incumbent kept"


@dataclass
class OtherEvent(RunEvent):
    """A history entry of a kind this code does not write (from an older checkpoint), kept as is."""

    kind: str = ""
    entry: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.entry)


EVENT_TYPES: tuple[type[RunEvent], ...] = (
    CandidateAdded,
    Stopped,
    ReflectionFailed,
    Skipped,
    Rejected,
    EditTried,
    InstructionProposed,
    InstructionScored,
    MergeTried,
    SearchSpaceBuilt,
    TrialScored,
    Bootstrapped,
    PairsJudged,
)


def _json_key(f: Any) -> str:
    return f.metadata.get("key", f.name)


def _event_type(entry: dict[str, Any]) -> type[RunEvent] | None:
    """The event class that writes `entry`: by its "event" kind, and for the three kinds of
    proposal by the field that only that kind has (the history layout predates the classes)."""
    kind = entry.get("event")
    if kind == "proposal":
        if "summary" in entry:
            return EditTried
        return InstructionProposed if "rejected" in entry else InstructionScored
    return next((t for t in EVENT_TYPES if kind == t.KIND), None)


def event_from_json(entry: dict[str, Any]) -> RunEvent:
    progress = Progress(entry.get("step", 0), entry.get("metric_calls", 0))
    event_type = _event_type(entry)
    if event_type is None:
        return OtherEvent(kind=str(entry.get("event")), entry=dict(entry), progress=progress)
    values = {f.name: entry[_json_key(f)] for f in fields(event_type) if _json_key(f) in entry}
    values.pop("progress", None)
    return event_type(**values, progress=progress)


class RunListener(Protocol):
    """Receives every event as it is recorded, in order. It must not change the event or the run
    (it observes: a progress bar, a log line, an artifact), and should return quickly."""

    def __call__(self, event: RunEvent) -> None: ...


class PublishProgress:
    """A listener that hands each event to `ieflow.progress` as an `OptimizerStep` (what the CLI's
    progress bar draws); nothing is published for a run with no metric-call budget."""

    def __init__(self, optimizer: str) -> None:
        self.optimizer = optimizer

    def __call__(self, event: RunEvent) -> None:
        at = event.progress
        if at.max_metric_calls is None:
            return
        progress_updates.publish(
            progress_updates.OptimizerStep(
                self.optimizer,
                at.step,
                at.metric_calls,
                at.max_metric_calls,
                at.best_val_score,
                event.label,
                event.component,
            )
        )


class RunLog:
    """The events of a run in order (resumed runs keep the earlier ones) and their listeners."""

    def __init__(self, optimizer: str, listeners: Iterable[RunListener] = ()) -> None:
        self.optimizer = optimizer
        self.events: list[RunEvent] = []
        self.listeners: list[RunListener] = list(listeners)

    def record(self, event: RunEvent) -> None:
        self.events.append(event)
        log.info("%s step %d %s %s", self.optimizer, event.progress.step, event.KIND, event.data())
        for listener in self.listeners:
            listener(event)

    def history(self) -> list[dict[str, Any]]:
        return [event.to_json() for event in self.events]

    def restore(self, history: list[dict[str, Any]]) -> None:
        self.events = [event_from_json(entry) for entry in history]


__all__ = [
    "Bootstrapped",
    "CandidateAdded",
    "EditTried",
    "InstructionProposed",
    "InstructionScored",
    "MergeTried",
    "OtherEvent",
    "Progress",
    "PublishProgress",
    "ReflectionFailed",
    "Rejected",
    "RunEvent",
    "RunListener",
    "RunLog",
    "SearchSpaceBuilt",
    "Skipped",
    "Stopped",
    "TrialScored",
    "event_from_json",
]
