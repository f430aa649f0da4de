"""Issue 16, schemas from strangers: nothing fetched, no recursion, no regex that hangs, and a
model answer nested without end is an error like any other bad answer."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ieflow.lm.structured import parse_and_validate
from ieflow.schema import SchemaError, load_schema, validate_record
from ieflow.schema_safety import make_validator
from ieflow_cli import main as cli


class Canary:
    """A listener on 127.0.0.1 that counts connections: any fetch of a remote $ref lands here."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    listener = Canary()
    yield listener
    listener.close()


def record_schema(**properties: dict) -> dict:
    return {"type": "object", "properties": properties, "$defs": {"s": {"type": "string"}}}


def remote_ref_schemas(url: str) -> dict[str, dict]:
    return {
        "at a property": record_schema(name={"$ref": f"{url}/name.json"}),
        "nested under not": record_schema(name={"type": "string", "not": {"$ref": f"{url}/x.json"}}),
        "through $id and a relative ref": {
            "$id": f"{url}/root.json",
            **record_schema(name={"$ref": "other.json#/s"}),
        },
        "a dynamic ref": record_schema(name={"$dynamicRef": f"{url}/d.json"}),
    }


def test_a_remote_ref_anywhere_is_refused_at_load_and_nothing_is_fetched(canary: Canary) -> None:
    for case, schema in remote_ref_schemas(canary.url).items():
        with pytest.raises(SchemaError) as info:
            load_schema(schema)
        message = str(info.value)
        assert "is not local" in message and "ieflow fetches nothing" in message, case
        assert "\n" not in message, case
    # A schema that skipped the load check still cannot make a validation fetch.
    unchecked = remote_ref_schemas(canary.url)["at a property"]
    with pytest.raises(Exception, match=r"name\.json"):
        list(make_validator(unchecked).iter_errors({"name": "x"}))
    time.sleep(0.3)  # give a stray connection time to arrive
    assert canary.connections == 0


def test_local_refs_and_pydantic_optionals_still_load() -> None:
    schema = record_schema(
        name={"$ref": "#/$defs/s"},
        when={"anyOf": [{"$ref": "#/$defs/s"}, {"type": "null"}]},
        lines={"type": "array", "items": {"$ref": "#/$defs/line"}},
    )
    schema["$defs"]["line"] = {"type": "object", "properties": {"sku": {"$ref": "#/$defs/s"}}}
    assert load_schema(schema) is schema
    assert validate_record(schema, {"name": "a", "when": None, "lines": [{"sku": "b"}]}) == []


NODE = {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}
RECURSIVE = {
    "self": {"type": "object", "properties": {"top": {"$ref": "#/$defs/node"}}, "$defs": {"node": NODE}},
    "mutual": {
        "type": "object",
        "properties": {"top": {"$ref": "#/$defs/a"}},
        "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"type": "array", "items": {"$ref": "#/$defs/a"}}},
    },
    "root": {"type": "object", "properties": {"again": {"$ref": "#"}}},
}


@pytest.mark.parametrize("case", sorted(RECURSIVE))
def test_a_recursive_ref_is_one_error(case: str) -> None:
    with pytest.raises(SchemaError, match="is recursive: a record must have a finite shape"):
        load_schema(RECURSIVE[case])


def test_a_catastrophic_pattern_is_matched_in_linear_time() -> None:
    """`^(a+)+$` on 40 a's and a b takes Python's re hours; with RE2 it is one quick error."""
    schema = load_schema(record_schema(code={"type": "string", "pattern": "^(a+)+$"}))
    answer = json.dumps({"code": "a" * 40 + "b"})
    result: list = []
    worker = threading.Thread(target=lambda: result.append(parse_and_validate(answer, schema)), daemon=True)
    worker.start()
    worker.join(timeout=30)  # a bound on a hang, not a speed claim
    assert result, "validation did not finish"
    _, problems = result[0]
    assert problems == ["code: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab' does not match '^(a+)+$'"]
    assert validate_record(schema, {"code": "aaa"}) == []
    assert validate_record(schema, {"code": "a" * 40 + "b"})[0].startswith("code: ")


@pytest.mark.parametrize("pattern", [r"^(?=a)\w+$", r"(a)\1"])
def test_a_pattern_re2_cannot_run_is_refused_at_load_naming_where(pattern: str) -> None:
    with pytest.raises(SchemaError) as info:
        load_schema(record_schema(code={"type": "string", "pattern": pattern}))
    assert str(info.value).startswith(f"pattern {pattern!r} at properties/code/pattern is not supported")


def test_an_answer_nested_without_end_is_a_bad_answer_not_a_crash() -> None:
    schema = load_schema(record_schema(name={"type": "string"}))
    for answer in ["[" * 100_000, '{"name": ' * 5_000 + '"x"' + "}" * 5_000]:
        value, problems = parse_and_validate(answer, schema)
        assert value is None and "nested more than 64 levels deep" in problems[0]


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["ieflow", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code, capsys.readouterr().err


def test_the_cli_says_a_bad_schema_in_one_line_with_exit_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    document = tmp_path / "doc.txt"
    document.write_text("Total: 3.00\n")
    recursive = {"type": "object", "properties": {"n": {"$ref": "#"}}}
    remote = record_schema(name={"type": "string", "not": {"$ref": "http://127.0.0.1:9/x.json"}})
    for name, schema in {"recursive": recursive, "remote": remote}.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(schema))
        code, err = run_cli(monkeypatch, capsys, "extract-file", str(document), "--schema", str(path))
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
