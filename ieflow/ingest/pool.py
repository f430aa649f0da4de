"""The parser process pool: spawned workers, and a dead worker costs only the file that killed it.

Parsing is CPU-bound, so it runs in a process pool (spawned, not forked: the parent may run
Prefect's threads and event loop, which do not survive a fork). A worker that dies (a native crash,
the OOM killer) breaks the whole pool; the files that were in flight are then retried one at a
time in a fresh single-use process, so only the file that really kills its parser gets an error.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ieflow.ingest.options import IngestOptions
from ieflow.ingest.process import error_result, process_file


def _init_worker() -> None:
    # Ctrl-C is the parent's to handle; workers printing KeyboardInterrupt tracebacks is noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")


class ParserPool:
    """A process pool for `process_file`, callable from many threads (Prefect tasks or ours)."""

    def __init__(self, workers: int, max_tasks_per_child: int | None = 200) -> None:
        self.workers = max(0, workers)
        self._max_tasks = max_tasks_per_child
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _new_executor(self, workers: int, max_tasks: int | None) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            max_tasks_per_child=max_tasks,
        )

    def _start(self, workers: int, max_tasks: int | None) -> ProcessPoolExecutor:
        """A new pool, checked: workers that cannot even start are a setup problem to raise, not
        a reason to mark every file as an error."""
        executor = self._new_executor(workers, max_tasks)
        try:
            executor.submit(os.getpid).result(timeout=300)
        except BrokenProcessPool as exc:
            executor.shutdown(wait=False)
            raise RuntimeError(
                "parser worker processes could not start (see their traceback "
                "above); run with workers=0 to parse in-process"
            ) from exc
        return executor

    def _ensure(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = self._start(self.workers, self._max_tasks)
            return self._executor

    def run(
        self,
        uri: str,
        options: IngestOptions,
        storage_options: dict[str, Any] | None = None,
        root: str | None = None,
    ) -> dict[str, Any]:
        """Process one file (only if it really lies inside `root`), blocking; never raises for a
        bad file."""
        if self.workers == 0:  # in-process (the time limit still applies): debugging, tiny corpora
            return process_file(uri, options, storage_options, root)
        executor = self._ensure()
        try:
            return executor.submit(process_file, uri, options, storage_options, root).result()
        except BrokenProcessPool:
            with self._lock:
                if self._executor is executor:
                    self._executor = None
            executor.shutdown(wait=False, cancel_futures=True)
        # Alone in its own process, only a file that itself kills the parser fails.
        solo = self._new_executor(1, None)
        try:
            return solo.submit(process_file, uri, options, storage_options, root).result()
        except BrokenProcessPool:
            return error_result(
                uri,
                "the parser process died on this file (out of memory, or a crash in a native library)",
                options,
            )
        finally:
            solo.shutdown(wait=True)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __getstate__(self) -> dict[str, Any]:
        # Sent to another process (a Dask worker, say), a pool becomes "parse in-process there".
        return {"workers": 0}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["workers"])  # type: ignore[misc]

    def __enter__(self) -> ParserPool:
        if self.workers:  # start the workers (seconds: spawn + imports) while the caller lists files
            threading.Thread(target=self._ensure, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
