"""Reading a document's bytes from a folder someone else filled: only regular files inside it, under
a size cap and a deadline.

A corpus or dataset is untrusted. A symbolic link in it may point at /etc/passwd or /dev/zero, a
named pipe blocks forever when opened, a device never ends. So a local file is checked with lstat
before anything opens it (a link is followed only when allowed, and then only to a regular file
whose real path stays inside the folder), opened without following links and without blocking,
checked again on the open descriptor (the same file, still regular) and read in chunks, stopping at
the size cap and at the deadline. Every refusal is a `ParseError` whose message says why.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ieflow.documents.parsed import ParseError

DEFAULT_MAX_FILE_MB = 200.0
_CHUNK_BYTES = 1 << 20
NOT_FOUND = "file not found: it was removed or renamed before it could be read"

_KINDS = (
    (stat.S_ISDIR, "a folder, not a file"),
    (stat.S_ISFIFO, "a named pipe (FIFO), not a regular file; not read"),
    (stat.S_ISCHR, "a character device, not a regular file; not read"),
    (stat.S_ISBLK, "a block device, not a regular file; not read"),
    (stat.S_ISSOCK, "a socket, not a regular file; not read"),
)


class SourceNotFound(ParseError):
    """The file (or a link's target) does not exist."""


@dataclass(frozen=True)
class ReadRules:
    """What may be read. `root`: the folder every file's real path must lie inside (None: no such
    folder, for a file a person named). `follow_symlinks`: whether a link (or a linked folder on
    the path) is followed at all; followed links must still stay inside `root`. `max_bytes`: the
    size cap. `timeout_s`: the deadline for one file's read (0: none)."""

    root: str | None = None
    follow_symlinks: bool = False
    max_bytes: int = int(DEFAULT_MAX_FILE_MB * 1_000_000)
    timeout_s: float = 0.0


def is_local(source: str) -> bool:
    return "://" not in source or source.startswith("file://")


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _size_reason(size: int, cap: int) -> str:
    return f"file is {size:,} bytes, over the size cap of {cap:,} bytes (max_file_mb); not read"


def check_local_file(path: str, rules: ReadRules) -> tuple[str, os.stat_result]:
    """(the real path to open, its stat) when `path` may be read; otherwise a ParseError saying
    why. Opens nothing."""
    try:
        status = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise SourceNotFound(NOT_FOUND) from exc
    real = os.path.realpath(path)
    linked = stat.S_ISLNK(status.st_mode)
    if rules.root is not None:
        real_root = os.path.realpath(rules.root)
        # A linked folder on the way also makes the real path differ from the written one.
        written = os.path.normpath(
            os.path.join(real_root, os.path.relpath(os.path.abspath(path), os.path.abspath(rules.root)))
        )
        linked = linked or real != written
        if not _inside(real, real_root):
            where = "a symbolic link to a path" if linked else "a path"
            raise ParseError(f"{where} outside the folder {rules.root}; not read")
    if linked and not rules.follow_symlinks:
        raise ParseError("a symbolic link (or a path through one); not followed, not read")
    if linked:
        try:
            status = os.stat(real)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise SourceNotFound("a symbolic link to nothing (its target is missing); not read") from exc
    for is_kind, reason in _KINDS:
        if is_kind(status.st_mode):
            raise ParseError(reason)
    if not stat.S_ISREG(status.st_mode):
        raise ParseError("not a regular file; not read")
    if status.st_size > rules.max_bytes:
        raise ParseError(_size_reason(status.st_size, rules.max_bytes))
    return real, status


def _bounded_chunks(read: Any, rules: ReadRules) -> Iterator[bytes]:
    """Chunks from `read(n)` until the end, the size cap or the deadline."""
    deadline = time.monotonic() + rules.timeout_s if rules.timeout_s > 0 else None
    total = 0
    while chunk := read(_CHUNK_BYTES):
        total += len(chunk)
        if total > rules.max_bytes:  # the file grew after the check, or a remote size was wrong
            raise ParseError(_size_reason(total, rules.max_bytes))
        if deadline is not None and time.monotonic() > deadline:
            raise ParseError(f"reading took longer than {rules.timeout_s:g} s (file_timeout_s); skipped")
        yield chunk


def _local_chunks(path: str, rules: ReadRules) -> Iterator[bytes]:
    real, checked = check_local_file(path, rules)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(real, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise SourceNotFound(NOT_FOUND) from exc
    except PermissionError as exc:
        raise ParseError("permission denied when reading the file") from exc
    except OSError as exc:  # ELOOP: swapped for a link after the check
        raise ParseError(f"the file changed while it was being opened ({exc.strerror}); not read") from exc
    with open(descriptor, "rb", buffering=0) as handle:
        opened = os.fstat(descriptor)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            checked.st_dev,
            checked.st_ino,
        ):
            raise ParseError("the file changed while it was being opened; not read")
        yield from _bounded_chunks(handle.read, rules)


def _remote_chunks(url: str, rules: ReadRules, storage_options: dict[str, Any] | None) -> Iterator[bytes]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    try:
        info = fs.info(path)
        if info.get("type") not in (None, "file"):
            raise ParseError(f"not a file (a {info.get('type')}); not read")
        if (info.get("size") or 0) > rules.max_bytes:
            raise ParseError(_size_reason(int(info["size"]), rules.max_bytes))
        with fs.open(path, "rb") as handle:
            yield from _bounded_chunks(handle.read, rules)
    except FileNotFoundError as exc:
        raise SourceNotFound(NOT_FOUND) from exc


def iter_source(
    source: str, rules: ReadRules, storage_options: dict[str, Any] | None = None
) -> Iterator[bytes]:
    """The bytes of a local path or fsspec URL, in chunks, under `rules` (a ParseError says why not)."""
    if is_local(source):
        return _local_chunks(source.removeprefix("file://"), rules)
    return _remote_chunks(source, rules, storage_options)


def read_source_bytes(source: str, rules: ReadRules, storage_options: dict[str, Any] | None = None) -> bytes:
    """All the bytes of `source` under `rules` (see `iter_source`)."""
    return b"".join(iter_source(source, rules, storage_options))
