"""Progress of long runs, for whoever shows it (the CLI's progress bars, a notebook, a log).

The core publishes small typed updates here; a front end subscribes with `listening(listener)`
for the length of one command. Listeners are process-wide, not per thread: a Prefect flow runs its
tasks on worker threads, and their updates must reach the bar the command drew. Nothing here
draws, and with no listener publishing costs one list check.

Contract for a listener: it is called from any thread, possibly from several at once, so it must
be quick, must not block and must not raise (an exception is logged and the listener dropped, so
a broken display never fails a run).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchStarted:
    """A batch run planned `total` documents; `already_done` were finished by an earlier start."""

    run_id: str
    total: int
    already_done: int


@dataclass(frozen=True)
class DocumentsFinished:
    """`done` documents finished now, `resumed` found finished in staging, `unavailable` could not
    reach the model (their shard fails; a later start redoes them). Counts, not totals."""

    done: int = 0
    resumed: int = 0
    unavailable: int = 0


@dataclass(frozen=True)
class OptimizerStep:
    """Where an optimization stands after one step: the budget spent, the best validation score
    so far, and what the step did (`event`, e.g. 'accepted', 'rejected') to which component."""

    optimizer: str
    step: int
    metric_calls: int
    max_metric_calls: int
    best_val: float | None
    event: str
    component: str | None = None


ProgressUpdate = BatchStarted | DocumentsFinished | OptimizerStep
Listener = Callable[[ProgressUpdate], None]

_lock = threading.Lock()
_listeners: list[Listener] = []


def publish(update: ProgressUpdate) -> None:
    """Hand `update` to every listener (none: nothing happens)."""
    if not _listeners:
        return
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(update)
        except Exception:  # a display must never fail the run it shows
            log.warning("progress listener %r failed; dropped", listener, exc_info=True)
            _remove(listener)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Subscribe `listener` to every update published until the block ends."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        _remove(listener)


def _remove(listener: Listener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)
