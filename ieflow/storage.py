"""Parquet and JSON I/O on local paths or fsspec URLs, with atomic writes.

An atomic write goes to a temporary name beside the target and is renamed into place, so a reader
(or a restarted run) never sees half a file. Object stores (s3://, gs://) write objects atomically
by themselves, so there the write goes straight to the target.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import fsspec
import polars as pl


def _is_local(url: str | Path) -> bool:
    text = str(url)
    return "://" not in text or text.startswith("file://")


def _local_path(url: str | Path) -> Path:
    text = str(url)
    return Path(text.removeprefix("file://"))


def join(base: str | Path, *parts: str) -> str:
    """Join path parts onto a local path or URL."""
    text = str(base).rstrip("/")
    return "/".join([text, *parts])


def exists(url: str | Path) -> bool:
    if _is_local(url):
        return _local_path(url).exists()
    fs, path = fsspec.core.url_to_fs(str(url))
    return fs.exists(path)


def makedirs(url: str | Path) -> None:
    if _is_local(url):
        _local_path(url).mkdir(parents=True, exist_ok=True)
    else:
        fs, path = fsspec.core.url_to_fs(str(url))
        fs.makedirs(path, exist_ok=True)


def write_bytes_atomic(url: str | Path, data: bytes) -> None:
    if _is_local(url):
        target = _local_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    else:
        with fsspec.open(str(url), "wb") as handle:
            handle.write(data)


def read_bytes(url: str | Path) -> bytes:
    if _is_local(url):
        return _local_path(url).read_bytes()
    with fsspec.open(str(url), "rb") as handle:
        return handle.read()


def write_parquet(df: pl.DataFrame, url: str | Path) -> None:
    """Write a DataFrame as one Parquet file, atomically."""
    buffer = io.BytesIO()
    df.write_parquet(buffer)
    write_bytes_atomic(url, buffer.getvalue())


def read_parquet(url: str | Path) -> pl.DataFrame:
    if _is_local(url):
        return pl.read_parquet(_local_path(url))
    return pl.read_parquet(io.BytesIO(read_bytes(url)))


def write_json(obj: Any, url: str | Path) -> None:
    """Write JSON (indented, keys sorted, UTF-8) atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    write_bytes_atomic(url, (text + "\n").encode("utf-8"))


def read_json(url: str | Path) -> Any:
    return json.loads(read_bytes(url).decode("utf-8"))
