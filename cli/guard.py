"""Prefect's temporary server ends with the `ieflow` process that started it, and only then.

Prefect (3.9) starts its temporary API server as a child process (`SubprocessASGIServer`: uvicorn
under `Popen`) and stops it only from an `atexit` hook. Two things went wrong:

* kill -9 (or the OOM killer, or a crash in C) skips atexit: the server (~230 MB, its port open)
  outlived the command. Every such server now gets a watcher, a tiny process that waits on the CLI
  and on the server through pidfds and ends the server (SIGTERM, then SIGKILL) once the CLI is gone.
  Unlike PR_SET_PDEATHSIG, it does not matter which of the CLI's threads started the server.
* Ctrl-C in a terminal signals the whole process group, so the server stopped at once while the
  flow still needed it to record the interrupted runs: Prefect's client retried for 80 s and more.
  The server now starts in a session of its own; the CLI's atexit (or the watcher) stops it.

Both hook `SubprocessASGIServer._run_uvicorn_command`, which returns the server's `Popen` (the retry
on a taken port included): the wrapper starts the watcher, and the module's `subprocess` name is
given a `Popen` that opens a new session. Both names are Prefect's own, private ones: if an upgrade
moves them, importing Prefect's server fails with a message naming this module, so the guard never
goes missing quietly; tests/reliability/test_signals.py checks the hook and each signal's outcome on
the pinned version. The server module takes seconds to import, so the hook waits for Prefect to.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

SERVER_MODULE = "prefect.server.api.server"
SERVER_CLASS = "SubprocessASGIServer"
SERVER_START = "_run_uvicorn_command"
STOP_GRACE_S = 5.0  # what Prefect's own stop() gives the server before SIGKILL

_WATCHERS: list[subprocess.Popen[bytes]] = []
_WATCHER_CODE = "import sys; from ieflow_cli.guard import watch; watch(int(sys.argv[1]), int(sys.argv[2]))"


def guard_temporary_server() -> None:
    """Give every temporary Prefect server this process starts from now on a watcher (idempotent).

    Only where pidfds exist (Linux 5.3+); elsewhere Ctrl-C and SIGTERM still stop the server."""
    if not hasattr(os, "pidfd_open"):
        return
    module = sys.modules.get(SERVER_MODULE)
    if module is not None:
        _wrap_server_start(module)
    elif not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(SERVER_MODULE, _wrap_server_start))


def end_with_this_process(child: subprocess.Popen[Any]) -> subprocess.Popen[bytes]:
    """Start a watcher that ends `child` once this process has ended; returns the watcher."""
    watcher = subprocess.Popen(
        [sys.executable, "-c", _WATCHER_CODE, str(os.getpid()), str(child.pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # stderr stays: a watcher that cannot start says why
        # Its own session: Ctrl-C or a hang-up meant for the CLI's process group must not end the
        # watcher before the CLI, whose end is what it waits for.
        start_new_session=True,
    )
    _WATCHERS.append(watcher)  # held, so it is not reported as a leaked Popen
    return watcher


def watch(parent_pid: int, child_pid: int) -> None:
    """The watcher's body: wait until `parent_pid` or `child_pid` ends; if the parent went first,
    end the child. Both are held by pidfd, so a reused pid is never signalled."""
    try:
        child = os.pidfd_open(child_pid)
    except ProcessLookupError:
        return
    try:
        parent = os.pidfd_open(parent_pid)
    except ProcessLookupError:
        parent = None
    # Our parent is alive (and so owns its pid) as long as we are still its child.
    if parent is not None and os.getppid() == parent_pid:
        ready, _, _ = select.select([parent, child], [], [])
        if child in ready:
            return  # the server stopped first (Prefect's atexit): nothing left to do
    _end(child)


def _end(pidfd: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        ended, _, _ = select.select([pidfd], [], [], STOP_GRACE_S)
        if not ended:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wrap_server_start(module: ModuleType) -> None:
    server_class = getattr(module, SERVER_CLASS, None)
    start = getattr(server_class, SERVER_START, None)
    if start is None or getattr(module, "subprocess", None) not in (subprocess, _NEW_SESSION):
        raise RuntimeError(
            f"this Prefect's {SERVER_MODULE} has no {SERVER_CLASS}.{SERVER_START} or no `subprocess`: "
            "ieflow_cli.guard cannot make its temporary server end with ieflow; update the guard"
        )
    if getattr(start, "ieflow_guarded", False):
        return

    @functools.wraps(start)
    def start_guarded(self: Any) -> subprocess.Popen[Any]:
        process = start(self)
        end_with_this_process(process)
        return process

    start_guarded.ieflow_guarded = True  # type: ignore[attr-defined]
    setattr(server_class, SERVER_START, start_guarded)
    module.subprocess = _NEW_SESSION  # type: ignore[attr-defined]


class _SubprocessInNewSession:
    """The `subprocess` module as Prefect's server module sees it: `Popen` starts a new session, so
    Ctrl-C at the terminal reaches the CLI (which stops the server at exit) and not the server."""

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("start_new_session", True)
        return subprocess.Popen(*args, **kwargs)


_NEW_SESSION = _SubprocessInNewSession()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls `then(module)` right after the module `name` is first executed, before anyone uses it."""

    def __init__(self, name: str, then: Callable[[ModuleType], None]) -> None:
        self.name, self.then = name, then

    def find_spec(
        self, fullname: str, path: Any, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        # Ask the finders after this one; this one stays in the list (removing it while another
        # thread walks sys.meta_path could skip a finder there) and never matches again.
        self.name = ""
        for finder in sys.meta_path:
            found = None if finder is self else finder.find_spec(fullname, path, target)
            if found is not None:
                if found.loader is not None:
                    found.loader = _ThenLoader(found.loader, self.then)
                return found
        return None


class _ThenLoader(importlib.abc.Loader):
    """A module's own loader, followed by `then(module)`; other attributes are the loader's."""

    def __init__(self, loader: Any, then: Callable[[ModuleType], None]) -> None:
        self.loader, self.then = loader, then

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        self.then(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)
