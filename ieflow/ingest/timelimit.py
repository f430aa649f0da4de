"""The per-file time limit, in any thread: SIGALRM in the main thread, an asynchronous exception in
any other (in-process parsing with `workers=0` runs on the caller's task threads).

Both stop Python code between bytecodes and re-fire every second, so a library that swallows the
first `FileTimeout` gets another. SIGALRM also interrupts a blocking system call; the other threads
never block on one, because the read path opens only regular files (`ieflow.documents.source`).
No maintained library does the thread case (stopit and func-timeout are unmaintained since 2019),
and it is CPython's documented `PyThreadState_SetAsyncExc`.
"""

from __future__ import annotations

import ctypes
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_REFIRE_S = 1.0


class FileTimeout(BaseException):
    """Raised by the time limit. A BaseException so that no `except Exception` in a parsing
    library (pypdf has several) can swallow it and carry on."""

    def __str__(self) -> str:
        # Raised asynchronously in a thread it has no arguments; `time_limit` adds the message.
        return str(self.args[0]) if self.args else "the per-file time limit (file_timeout_s) was reached"


@contextmanager
def time_limit(seconds: float, what: str = "parsing") -> Iterator[None]:
    """Raise `FileTimeout("<what> took longer than N s (file_timeout_s); skipped")` in this thread
    when the block runs past `seconds` (0: no limit)."""
    if seconds <= 0:
        yield
        return
    message = f"{what} took longer than {seconds:g} s (file_timeout_s); skipped"
    if threading.current_thread() is threading.main_thread():
        limit = _signal_limit(seconds, message)
    else:
        limit = _thread_limit(seconds)
    try:
        with limit:
            yield
    except FileTimeout as exc:
        if exc.args:
            raise
        raise FileTimeout(message) from None


@contextmanager
def _signal_limit(seconds: float, message: str) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise FileTimeout(message)

    previous = signal.signal(signal.SIGALRM, expire)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds, _REFIRE_S)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay > 0:  # an outer alarm (a caller's, pytest-timeout's) keeps its time
            remaining = max(outer_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, remaining, outer_interval)


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )


@contextmanager
def _thread_limit(seconds: float) -> Iterator[None]:
    target = threading.get_ident()
    lock, done = threading.Lock(), threading.Event()

    def fire() -> None:
        wait = seconds
        while not done.wait(wait):
            with lock:  # the block's end sets `done`, then clears under this lock
                if done.is_set():
                    return
                _set_async_exc(target, FileTimeout)
            wait = _REFIRE_S

    timer = threading.Thread(target=fire, name="ieflow-file-time-limit", daemon=True)
    timer.start()
    try:
        yield
    finally:
        while True:  # a timeout that lands here, after the block, must not skip the cleanup
            try:
                done.set()
                with lock:
                    _set_async_exc(target, None)  # drop one set but not yet raised
                break
            except FileTimeout:
                continue
        timer.join()
