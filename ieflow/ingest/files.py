"""Finding the corpus's files (folder, glob or fsspec URL), hashing them, grouping equal contents."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ieflow.documents.parse import ParseError, doc_id_for, read_source


@dataclass
class FileRef:
    uri: str
    size: int | None = None
    sha256: str | None = None
    error: str | None = None  # set when the file could not be read at all

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def doc_id(self) -> str:
        # Unreadable files have no content hash; their id hashes the name so it is still stable.
        return doc_id_for(self.sha256 or hashlib.sha256(b"unreadable:" + self.uri.encode()).hexdigest())


def discover(source: str, *, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Files under a folder (recursive), matching a glob, or one file; local or any fsspec URL.

    Hidden files and folders (".name") below the source are skipped: OS litter, temporary files,
    version control, not documents.
    """
    import fsspec

    fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
    root = path
    if any(ch in path for ch in "*?["):
        root = path[: min(path.find(ch) for ch in "*?[" if ch in path)].rsplit("/", 1)[0]
        paths = [p for p in fs.glob(path) if fs.isfile(p)]
    elif fs.isdir(path):
        paths = fs.find(path)
    elif fs.isfile(path):
        root, paths = path.rsplit("/", 1)[0], [path]
    else:
        raise FileNotFoundError(f"ingest source not found: {source}")
    paths = [p for p in paths if not any(part.startswith(".") for part in p[len(root) :].split("/"))]
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    return sorted(p if local else fs.unstrip_protocol(p) for p in paths)


def hash_files(
    uris: list[str], storage_options: dict[str, Any] | None = None, threads: int = 8
) -> list[FileRef]:
    """Content hashes. Threads suffice: hashlib and file reads release the GIL."""

    def one(uri: str) -> FileRef:
        try:
            data = read_file(uri, storage_options)
        except ParseError as exc:
            return FileRef(uri, error=str(exc))
        return FileRef(uri, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, uris))


def read_file(uri: str, storage_options: dict[str, Any] | None) -> bytes:
    """The file's bytes (fsspec with options when given); a vanished file is a ParseError."""
    if not storage_options:
        return read_source(uri)
    import fsspec

    try:
        with fsspec.open(uri, "rb", **storage_options) as handle:
            return bytes(handle.read())
    except FileNotFoundError as exc:
        raise ParseError("file not found: it was removed or renamed before it could be read") from exc


def group_by_content(refs: list[FileRef]) -> tuple[dict[str, list[FileRef]], list[FileRef]]:
    """(sha256 -> the files with those bytes, in name order; files that could not be read)."""
    groups: dict[str, list[FileRef]] = {}
    for ref in sorted(refs, key=lambda r: r.uri):
        if ref.sha256:
            groups.setdefault(ref.sha256, []).append(ref)
    return groups, [ref for ref in refs if not ref.sha256]


def largest_first(groups: dict[str, list[FileRef]], shas: Iterable[str] | None = None) -> list[str]:
    """Content hashes (all of `groups`, or `shas`) biggest file first: a large file started last
    would leave the other workers idle at the end."""
    return sorted(groups if shas is None else shas, key=lambda sha: -(groups[sha][0].size or 0))
