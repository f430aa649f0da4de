"""The program registry: named extraction programs, numbered versions, and one champion per name.

Plain JSON files next to the data, on a local path or any fsspec URL, readable without ieflow:

    <root>/<name>/versions/<n>.json   one version: the program JSON plus hash, scores, cost, lineage,
                                      created_at and the run that produced it (written once)
    <root>/<name>/champion.json       {"champion": n, "hash": ..., "history": [promotions, rollbacks]}
    <root>/<name>/nightly.json        the nightly flow's state (labels already used, past decisions)

Versions are immutable and content-addressed: registering a program whose hash is already a version
returns that version, so a re-run never piles up copies. Every change of champion is appended to the
history with who did it and why; a rollback goes back along the champions in that history.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec

from ieflow import storage
from ieflow.errors import RegistryError  # defined with the other user errors; importable here too
from ieflow.program import ExtractionProgram

FORMAT = 1
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
LAYOUT_NOTE = """ieflow program registry (plain JSON; no ieflow needed to read it)

<name>/versions/<n>.json  one program version: "program" is the extraction program, plus "hash",
                          "scores", "cost", "lineage", "created_at", "source_run"
<name>/champion.json      "champion" is the version number in use; "history" lists every change
<name>/nightly.json       state of the nightly re-optimization (labels seen, decisions)
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


@dataclass
class ProgramVersion:
    """One registered version of a named program."""

    name: str
    version: int
    hash: str
    program: dict[str, Any]
    created_at: str = field(default_factory=now)
    scores: dict[str, Any] = field(default_factory=dict)  # e.g. holdout score, per_field, n
    cost: dict[str, Any] = field(default_factory=dict)  # serving cost per document
    lineage: dict[str, Any] = field(default_factory=dict)  # parent version/hash, optimizer, steps
    source_run: dict[str, Any] = field(default_factory=dict)  # the flow run (or CLI user) behind it
    dataset: str | None = None  # the labelled data it is reviewed on
    note: str = ""

    def load_program(self) -> ExtractionProgram:
        return ExtractionProgram.from_dict(self.program)

    def to_dict(self) -> dict[str, Any]:
        return {"ieflow_registry": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgramVersion:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Registry:
    """Named programs under `root` (a folder or an fsspec URL such as s3://bucket/registry)."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root).rstrip("/") or "/"

    # -- reading ------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Registered program names (folders that hold a champion.json or versions)."""
        return sorted(n for n in _listdir(self.root) if NAME_PATTERN.match(n) and self._has_versions(n))

    def versions(self, name: str) -> list[ProgramVersion]:
        self._check_name(name)
        return [self.get(name, n) for n in self._numbers(name)]

    def get(self, name: str, version: int | None = None) -> ProgramVersion:
        """A version by number; `None` means the current champion."""
        self._check_name(name)
        if version is None:
            state = self.champion_state(name)
            if state.get("champion") is None:
                raise RegistryError(f"program {name!r} has no champion in {self.root}")
            version = int(state["champion"])
        url = self._version_url(name, version)
        if not storage.exists(url):
            known = ", ".join(str(v) for v in self._numbers(name)) or "none"
            raise RegistryError(f"program {name!r} has no version {version} (versions: {known})")
        return ProgramVersion.from_dict(storage.read_json(url))

    def champion(self, name: str) -> ProgramVersion | None:
        state = self.champion_state(name)
        return None if state.get("champion") is None else self.get(name, int(state["champion"]))

    def champion_state(self, name: str) -> dict[str, Any]:
        self._check_name(name)
        url = storage.join(self.root, name, "champion.json")
        if not storage.exists(url):
            if not self._has_versions(name):
                known = ", ".join(self.names()) or "none"
                raise RegistryError(f"no program named {name!r} in {self.root} (registered: {known})")
            return {"name": name, "champion": None, "history": []}
        return storage.read_json(url)

    def find_hash(self, name: str, program_hash: str) -> ProgramVersion | None:
        return next((v for v in self.versions(name) if v.hash == program_hash), None)

    # -- writing ------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        program: ExtractionProgram,
        *,
        scores: dict[str, Any] | None = None,
        cost: dict[str, Any] | None = None,
        lineage: dict[str, Any] | None = None,
        source_run: dict[str, Any] | None = None,
        dataset: str | None = None,
        note: str = "",
        promote: bool | None = None,
        by: str | None = None,
    ) -> ProgramVersion:
        """Add `program` as the next version of `name` (or return the version with its hash).

        `promote=None` makes it the champion only when `name` has none yet."""
        self._check_name(name)
        if not self._has_versions(name):
            self._write_layout_note()
        existing = self.find_hash(name, program.hash) if self._has_versions(name) else None
        version = existing
        while version is None:
            number = max(self._numbers(name), default=0) + 1
            candidate = ProgramVersion(
                name=name,
                version=number,
                hash=program.hash,
                program=program.to_dict(),
                scores=scores or {},
                cost=cost or {},
                lineage=lineage or {},
                source_run=source_run or {"kind": "cli", "user": current_user()},
                dataset=dataset,
                note=note,
            )
            # Two writers racing for the same number: the loser sees the file and takes the next.
            if _create_new(self._version_url(name, number), candidate.to_dict()):
                version = candidate
        has_champion = self.champion_state(name).get("champion") is not None
        if promote or (promote is None and not has_champion):
            self.promote(name, version.version, reason=note or "first version", by=by)
        return version

    def promote(self, name: str, version: int, *, reason: str = "", by: str | None = None) -> dict[str, Any]:
        """Make `version` the champion of `name`; returns the new champion.json content."""
        target = self.get(name, version)
        state = self.champion_state(name)
        if state.get("champion") == target.version:
            return state
        return self._set_champion(name, target, "promote", reason, by, state)

    def rollback(
        self, name: str, to: int | None = None, *, reason: str = "", by: str | None = None
    ) -> dict[str, Any]:
        """Go back to the champion before the current one (or to version `to`)."""
        state = self.champion_state(name)
        if state.get("champion") is None:
            raise RegistryError(f"program {name!r} has no champion to roll back")
        if to is None:
            stack = champion_stack(state.get("history", []))
            if len(stack) < 2:
                raise RegistryError(f"program {name!r} has no earlier champion to roll back to")
            to = stack[-2]
        if to == state["champion"]:
            raise RegistryError(f"version {to} is already the champion of {name!r}")
        return self._set_champion(name, self.get(name, to), "rollback", reason, by, state)

    def read_state(self, name: str, kind: str) -> dict[str, Any]:
        """A flow's state file beside the versions (e.g. kind="nightly"); {} when there is none."""
        self._check_name(name)
        url = storage.join(self.root, name, f"{kind}.json")
        return storage.read_json(url) if storage.exists(url) else {}

    def write_state(self, name: str, kind: str, state: dict[str, Any]) -> None:
        self._check_name(name)
        storage.write_json(state, storage.join(self.root, name, f"{kind}.json"))

    # -- internals ----------------------------------------------------------------------------

    def _set_champion(
        self,
        name: str,
        target: ProgramVersion,
        action: str,
        reason: str,
        by: str | None,
        state: dict[str, Any],
    ) -> dict[str, Any]:
        entry = {
            "at": now(),
            "action": action,
            "version": target.version,
            "hash": target.hash,
            "previous": state.get("champion"),
            "reason": reason,
            "by": by or current_user(),
        }
        new_state = {
            "ieflow_registry": FORMAT,
            "name": name,
            "champion": target.version,
            "hash": target.hash,
            "updated_at": entry["at"],
            "history": [*state.get("history", []), entry],
        }
        storage.write_json(new_state, storage.join(self.root, name, "champion.json"))
        return new_state

    def _check_name(self, name: str) -> None:
        if not NAME_PATTERN.match(name or ""):
            raise RegistryError(
                f"bad program name {name!r}: use 1-64 lowercase letters, digits, '-', '_' or '.', "
                "starting with a letter or digit"
            )

    def _versions_dir(self, name: str) -> str:
        return storage.join(self.root, name, "versions")

    def _version_url(self, name: str, version: int) -> str:
        return storage.join(self._versions_dir(name), f"{version}.json")

    def _numbers(self, name: str) -> list[int]:
        entries = _listdir(self._versions_dir(name))
        return sorted(int(e[:-5]) for e in entries if e.endswith(".json") and e[:-5].isdigit())

    def _has_versions(self, name: str) -> bool:
        return bool(self._numbers(name))

    def _write_layout_note(self) -> None:
        url = storage.join(self.root, "README.txt")
        if not storage.exists(url):
            storage.write_bytes_atomic(url, LAYOUT_NOTE.encode("utf-8"))


def champion_stack(history: list[dict[str, Any]]) -> list[int]:
    """The champions still standing, oldest first: a promotion pushes, a rollback pops back to its
    target, so rolling back twice walks two steps back instead of toggling between two versions."""
    stack: list[int] = []
    for entry in history:
        version = int(entry["version"])
        if entry["action"] == "rollback" and version in stack:
            del stack[stack.index(version) + 1 :]
        elif not stack or stack[-1] != version:
            stack.append(version)
    return stack


def _listdir(url: str) -> list[str]:
    """Entry names of a folder; [] when it does not exist."""
    if "://" not in url or url.startswith("file://"):
        path = Path(url.removeprefix("file://"))
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        return []
    return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False))


def _create_new(url: str, data: dict[str, Any]) -> bool:
    """Write `data` as JSON at `url` only if nothing is there; False if something already was.

    Locally the file is written beside the target and hard-linked into place, which fails when the
    target exists (atomic, unlike exists-then-write). Object stores have no such primitive: there
    an exists check has to do, and two registrations racing in the same second may collide."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    if "://" in url and not url.startswith("file://"):
        if storage.exists(url):
            return False
        storage.write_bytes_atomic(url, text.encode("utf-8"))
        return True
    target = Path(url.removeprefix("file://"))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True
