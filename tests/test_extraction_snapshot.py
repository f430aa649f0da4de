"""A program's path through a document was redesigned (one way down: `ieflow.extraction` runs the
program, `ieflow.longdoc` picks what it reads). The model must be sent byte-identical requests as
before, so that LM cache keys do not change, and the records and traces must be the same: both are
pinned by a snapshot taken on the code before the redesign."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ieflow.extraction import extract
from tests.support.extraction_cases import cases, run_cases

SNAPSHOT = Path(__file__).parent / "fixtures" / "extraction_snapshot.json"


@pytest.fixture(scope="module")
def now() -> dict:
    # Through JSON, as the snapshot was written, so tuples and lists compare alike.
    return json.loads(json.dumps(run_cases(extract), ensure_ascii=False, sort_keys=True))


@pytest.fixture(scope="module")
def before() -> dict:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_every_case_is_in_the_snapshot(before: dict) -> None:
    assert sorted(before) == sorted(cases())


@pytest.mark.parametrize("name", sorted(cases()))
def test_requests_are_byte_identical_so_cache_keys_do_not_change(name: str, now: dict, before: dict) -> None:
    sent, pinned = now[name]["requests"], before[name]["requests"]
    assert [r["key"] for r in sent] == [r["key"] for r in pinned]
    for new, old in zip(sent, pinned, strict=True):
        assert json.dumps(new["messages"], ensure_ascii=False) == json.dumps(
            old["messages"], ensure_ascii=False
        )
        assert new == old


@pytest.mark.parametrize("name", sorted(cases()))
def test_records_traces_and_program_hashes_are_unchanged(name: str, now: dict, before: dict) -> None:
    assert now[name]["program_hash"] == before[name]["program_hash"]
    assert now[name]["record"] == before[name]["record"]
    assert now[name]["trace"] == before[name]["trace"]
