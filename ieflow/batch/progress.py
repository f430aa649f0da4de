"""Progress of a batch run, for a caller that shows it (a progress bar with rate and ETA).

The run reports each finished document and each finished or failed shard to a `ProgressMeter`,
which hands a `BatchProgress` snapshot to the caller's callback after every change. Nothing here
draws anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ieflow.batch.plan import RunPlan, Shard
from ieflow.progress import BatchStarted, DocumentsFinished, publish


@dataclass(frozen=True)
class BatchProgress:
    """Where a run stands. `resumed` documents were done by an earlier start (they are in `done`
    but took no time now: leave them out of a rate). `unavailable` documents could not reach the
    model; their shard fails, and a later start redoes them."""

    total: int
    done: int
    resumed: int
    unavailable: int
    shards_total: int
    shards_done: int
    shards_failed: int

    @property
    def processed(self) -> int:
        """Documents finished by this start (what a rate and an ETA count)."""
        return self.done - self.resumed


ProgressCallback = Callable[[BatchProgress], None]


class ProgressMeter:
    """Counts a run's documents and shards; thread-safe. Documents are reported from the model
    event loop's thread and shards from the caller's, so the callback must be quick and must not
    block (it runs while the meter's lock is held, which keeps the snapshots in order)."""

    def __init__(
        self,
        callback: ProgressCallback | None,
        total: int,
        shards_total: int,
        *,
        done_documents: int = 0,
        done_shards: int = 0,
    ) -> None:
        self._callback = callback
        self._lock = threading.Lock()
        self._state = BatchProgress(total, done_documents, done_documents, 0, shards_total, done_shards, 0)

    @property
    def progress(self) -> BatchProgress:
        return self._state

    def start(self) -> None:
        """Tell the callback where the run starts (what an earlier start already did)."""
        self._move()

    def documents(self, done: int = 0, *, resumed: int = 0, unavailable: int = 0) -> None:
        """`done` documents finished now, `resumed` found finished, `unavailable` gave up on."""
        self._move(done=done + resumed, resumed=resumed, unavailable=unavailable)
        # Also to the process-wide listeners: under Prefect each shard task has its own meter,
        # and a command's progress bar wants the sum of them all.
        publish(DocumentsFinished(done=done, resumed=resumed, unavailable=unavailable))

    def shard(self, *, failed: bool = False) -> None:
        self._move(shards_done=0 if failed else 1, shards_failed=1 if failed else 0)

    def _move(self, **steps: int) -> None:
        with self._lock:
            state = self._state
            fields = {name: getattr(state, name) + steps.get(name, 0) for name in state.__dataclass_fields__}
            self._state = BatchProgress(**fields)
            if self._callback is not None:
                self._callback(self._state)


def announce_start(plan: RunPlan, pending: list[Shard]) -> None:
    """Tell the process-wide listeners (a CLI progress bar) that the run starts with `pending` to do."""
    already_done = plan.n_documents - sum(len(s.doc_ids) for s in pending)
    publish(BatchStarted(plan.run_id, plan.n_documents, already_done))
