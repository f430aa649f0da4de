"""Rich progress bars for the long commands, fed by `ieflow.progress` updates.

`extract` shows documents done of the total, the rate of this start (documents finished by an
earlier start are counted as done but not in the rate) and an ETA; `optimize` shows metric calls
spent of the budget, the best validation score so far and the component the last step changed.
Bars go to stderr, so the JSON summary on stdout stays machine-readable; with stderr not a
terminal (CI, a pipe) nothing is drawn unless asked for.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ieflow.progress import BatchStarted, DocumentsFinished, OptimizerStep, ProgressUpdate, listening


class ProgressDisplay:
    """A `ieflow.progress` listener drawing one bar per batch run and one per optimization."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=console,
        )
        self._batch: TaskID | None = None
        self._counted = 0  # documents done, resumed included
        self._total = 0
        self._processed = 0  # documents finished by this start: what the rate counts
        self._started = time.monotonic()
        self._optimizers: dict[str, TaskID] = {}

    def __call__(self, update: ProgressUpdate) -> None:
        if isinstance(update, BatchStarted):
            self._start_batch(update)
        elif isinstance(update, DocumentsFinished):
            self._documents(update)
        elif isinstance(update, OptimizerStep):
            self._optimizer_step(update)

    def _start_batch(self, update: BatchStarted) -> None:
        self._total, self._counted, self._processed = update.total, update.already_done, 0
        self._started = time.monotonic()
        # The bar's own total is what this start has left, so rich's ETA is not skewed by work an
        # earlier start did in no time.
        self._batch = self.progress.add_task(
            f"extract {update.run_id[:8]}",
            total=max(update.total - update.already_done, 0),
            count=self._count_text(),
            note="",
        )

    def _documents(self, update: DocumentsFinished) -> None:
        if self._batch is None:
            return
        self._counted += update.done + update.resumed
        self._processed += update.done
        task = self.progress.tasks[self._batch]
        if update.resumed:
            self.progress.update(self._batch, total=max((task.total or 0) - update.resumed, 0))
        elapsed = max(time.monotonic() - self._started, 1e-9)
        note = f"{self._processed / elapsed:.2f} docs/s"
        if update.unavailable:
            note += f", {update.unavailable} unavailable"
        self.progress.update(self._batch, advance=update.done, count=self._count_text(), note=note)

    def _count_text(self) -> str:
        return f"{self._counted}/{self._total} docs"

    def _optimizer_step(self, update: OptimizerStep) -> None:
        task = self._optimizers.get(update.optimizer)
        if task is None:
            task = self.progress.add_task(
                f"optimize {update.optimizer}", total=update.max_metric_calls, count="", note=""
            )
            self._optimizers[update.optimizer] = task
        best = "-" if update.best_val is None else f"{update.best_val:.3f}"
        where = f" {update.component}" if update.component else ""
        self.progress.update(
            task,
            completed=min(update.metric_calls, update.max_metric_calls),
            count=f"{update.metric_calls}/{update.max_metric_calls} metric calls",
            note=f"best val {best} | step {update.step} {update.event}{where}",
        )


@contextmanager
def show_progress(enabled: bool | None = None, console: Console | None = None) -> Iterator[None]:
    """Draw progress for the block. `enabled=None`: only where stderr is a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield
        return
    display = ProgressDisplay(console or Console(stderr=True))
    with display.progress, listening(display):
        yield
