"""Finding the corpus's files (folder, glob or fsspec URL), hashing them under the read rules
(regular files inside the corpus, size cap, deadline), grouping equal contents."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ieflow.documents.parse import ParseError, doc_id_for
from ieflow.documents.source import ReadRules, iter_source, read_source_bytes
from ieflow.ingest.options import IngestOptions


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


def _is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _locate(source: str, storage_options: dict[str, Any] | None) -> tuple[Any, str, str, bool]:
    """(filesystem, path, the folder the corpus's files lie in, whether local)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    if _is_glob(path):
        root = path[: min(path.find(ch) for ch in "*?[" if ch in path)].rsplit("/", 1)[0]
    elif fs.isdir(path):
        root = path
    elif fs.isfile(path) or (local and os.path.lexists(path)):  # a lone pipe or link: reported
        root = path.rsplit("/", 1)[0]
    else:
        raise FileNotFoundError(f"ingest source not found: {source}")
    return fs, path, root, local


def discover(source: str, *, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Files under a folder (recursive), matching a glob, or one file; local or any fsspec URL.

    Hidden files and folders (".name") below the source are skipped: OS litter, temporary files,
    version control, not documents. Links, pipes and devices are listed: hashing reports them.
    """
    fs, path, root, local = _locate(source, storage_options)
    if _is_glob(path):
        paths = [p for p in fs.glob(path) if not fs.isdir(p)]  # a pipe or device is kept: reported
    elif root == path:
        paths = fs.find(path)  # lists links to folders without entering them
    else:
        paths = [path]
    paths = [p for p in paths if not any(part.startswith(".") for part in p[len(root) :].split("/"))]
    return sorted(p if local else fs.unstrip_protocol(p) for p in paths)


def corpus_root(source: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """The local folder every file of the corpus must really lie inside; None for a remote source
    (it has no links, pipes or devices)."""
    _, _, root, local = _locate(source, storage_options)
    return root if local else None


def hash_files(
    uris: list[str],
    storage_options: dict[str, Any] | None = None,
    threads: int = 8,
    *,
    rules: ReadRules | None = None,
) -> list[FileRef]:
    """Content hashes, read under `rules` (default: `IngestOptions().read_rules(None)`): a link,
    pipe, device or oversized file is a FileRef with the reason, never opened; a slow read stops
    at the deadline. Threads suffice: hashlib and file reads release the GIL."""
    rules = rules or IngestOptions().read_rules(None)

    def one(uri: str) -> FileRef:
        digest, size = hashlib.sha256(), 0
        try:
            for chunk in iter_source(uri, rules, storage_options):
                digest.update(chunk)
                size += len(chunk)
        except ParseError as exc:
            return FileRef(uri, error=str(exc))
        except OSError as exc:
            return FileRef(uri, error=f"could not read the file: {exc.strerror or exc}")
        return FileRef(uri, size=size, sha256=digest.hexdigest())

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, uris))


def read_file(uri: str, storage_options: dict[str, Any] | None, rules: ReadRules | None = None) -> bytes:
    """The file's bytes under `rules` (as `hash_files`); a ParseError says why it cannot be read."""
    try:
        return read_source_bytes(uri, rules or IngestOptions().read_rules(None), storage_options)
    except PermissionError as exc:
        raise ParseError("permission denied when reading the file") from exc


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
