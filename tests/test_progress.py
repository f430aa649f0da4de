"""Progress updates (ieflow.progress) and the CLI's rich display of them (cli/progress.py)."""

from __future__ import annotations

import io
import threading

from rich.console import Console

from ieflow.progress import BatchStarted, DocumentsFinished, OptimizerStep, listening, publish
from ieflow_cli.progress import ProgressDisplay, show_progress


def test_listeners_hear_updates_from_every_thread_only_while_listening() -> None:
    heard: list[object] = []
    publish(DocumentsFinished(done=1))  # nobody listens: nothing happens
    with listening(heard.append):
        threads = [threading.Thread(target=publish, args=(DocumentsFinished(done=1),)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    publish(DocumentsFinished(done=1))
    assert heard == [DocumentsFinished(done=1)] * 8


def test_a_failing_listener_is_dropped_and_the_others_go_on(caplog) -> None:
    heard: list[object] = []

    def broken(update: object) -> None:
        raise RuntimeError("display gone")

    with listening(broken), listening(heard.append):
        publish(DocumentsFinished(done=1))
        publish(DocumentsFinished(done=2))
    assert heard == [DocumentsFinished(done=1), DocumentsFinished(done=2)]
    assert sum("progress listener" in r.message for r in caplog.records) == 1  # dropped after one failure


def render(display: ProgressDisplay) -> str:
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(display.progress.make_tasks_table(display.progress.tasks))
    return console.file.getvalue()


def test_the_batch_bar_counts_resumed_documents_as_done_but_not_in_its_rate() -> None:
    display = ProgressDisplay(Console(file=io.StringIO()))
    display(BatchStarted("abcdef123456", total=10, already_done=4))
    display(DocumentsFinished(resumed=1))
    display(DocumentsFinished(done=3, unavailable=1))
    task = display.progress.tasks[0]
    # 4 done before and 1 resumed took no time now: the bar (and rich's ETA) covers the other 5.
    assert (task.total, task.completed) == (5, 3)
    text = render(display)
    assert "extract abcdef12" in text and "8/10 docs" in text and "1 unavailable" in text
    assert "docs/s" in text


def test_the_optimizer_bar_shows_budget_best_score_and_component() -> None:
    display = ProgressDisplay(Console(file=io.StringIO()))
    display(OptimizerStep("gepa", 1, 12, 40, None, "rejected", "instruction"))
    display(OptimizerStep("gepa", 2, 20, 40, 0.5321, "accepted", "field:total"))
    [task] = display.progress.tasks
    assert (task.total, task.completed) == (40, 20)
    text = render(display)
    assert "20/40 metric calls" in text and "best val 0.532" in text and "accepted field:total" in text


def test_show_progress_draws_only_when_asked_or_on_a_terminal() -> None:
    out = io.StringIO()
    with show_progress(False):
        publish(DocumentsFinished(done=1))  # no listener was added
    with show_progress(True, Console(file=out, force_terminal=True, width=120)):
        publish(BatchStarted("run1", 2, 0))
        publish(DocumentsFinished(done=2))
    assert "2/2 docs" in out.getvalue()
