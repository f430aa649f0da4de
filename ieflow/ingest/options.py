"""What changes a parse result (`IngestOptions`) and its fingerprint, the parse cache's key."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field

from ieflow.documents.parse import DEFAULT_MAX_PAGES, PARSER_VERSION
from ieflow.documents.source import DEFAULT_MAX_FILE_MB, ReadRules


@dataclass(frozen=True)
class IngestOptions:
    """Everything that changes what a file parses to (and so belongs in its cache key)."""

    max_pages: int = DEFAULT_MAX_PAGES
    ocr: bool = True
    ocr_lang: str = "eng"
    target_tokens: int = 512
    overlap_tokens: int = 64
    file_timeout_s: float = 600.0
    password: str | None = field(default=None, repr=False)
    max_file_mb: float = DEFAULT_MAX_FILE_MB  # bigger files are error rows, never read
    follow_symlinks: bool = False  # links whose real path stays inside the corpus; others never

    def read_rules(self, root: str | None) -> ReadRules:
        """What a read may touch: regular files inside `root` (None: anywhere), under the size cap
        and the time limit."""
        return ReadRules(
            root=root,
            follow_symlinks=self.follow_symlinks,
            max_bytes=int(self.max_file_mb * 1_000_000),
            timeout_s=self.file_timeout_s,
        )

    def fingerprint(self) -> str:
        """A short stable hash of the options and parser version. The password enters only as a
        slow salted hash, so cache keys and Parquet files never reveal it."""
        return _fingerprint(self)


@functools.lru_cache(maxsize=16)  # the salted hash is deliberately slow: once per options value
def _fingerprint(options: IngestOptions) -> str:
    values = asdict(options)
    for name in ("file_timeout_s", "max_file_mb", "follow_symlinks"):
        values.pop(name)  # limits on what is read do not change what a file parses to
    if options.password is not None:
        values["password"] = hashlib.pbkdf2_hmac(
            "sha256", options.password.encode(), b"ieflow-ingest-cache", 100_000
        ).hex()[:16]
    values["parser_version"] = PARSER_VERSION
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
