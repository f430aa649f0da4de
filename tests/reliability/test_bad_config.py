"""Issue 7, bad configuration: one clear line from `ieflow.preflight` before any work starts."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from ieflow.preflight import ConfigError, preflight
from ieflow_testing.fake_server import FakeLMServer
from tests.reliability.helpers import GOLD, PO, PO_SCHEMA

SECRET = "sk-preflight-never-shown-1234"


@pytest.fixture(scope="module")
def server() -> FakeLMServer:
    with FakeLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IEFLOW_PREFLIGHT_KEY", SECRET)


def fails(**kwargs) -> str:
    args = {
        "model": "openai/po",
        "api_base": None,
        "api_key_env": "IEFLOW_PREFLIGHT_KEY",
        "schema_path": str(PO_SCHEMA),
        "labels_path": str(PO / "labels.jsonl"),
        **kwargs,
    }
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        preflight(**args)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and 10 < len(message) < 400
    assert "Traceback" not in message and SECRET not in message
    assert time.perf_counter() - started < 5  # before any work: no model call, no long wait
    return message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_good_configuration_passes(server: FakeLMServer) -> None:
    preflight(
        server.model_name("po"),
        server.base_url,
        "IEFLOW_PREFLIGHT_KEY",
        str(PO_SCHEMA),
        str(PO / "labels.jsonl"),
    )
    assert server.stats.requests == 0  # the endpoint check is not a chat request


@pytest.mark.parametrize("model", ["nosuchprovider/x", "gpt-nonexistent-9", ""])
def test_unknown_model(model: str) -> None:
    assert "model" in fails(model=model)


def test_missing_api_key_named_by_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IEFLOW_PREFLIGHT_KEY")
    assert "IEFLOW_PREFLIGHT_KEY is not set" in fails()


def test_missing_provider_api_key() -> None:
    message = fails(model="anthropic/claude-3-5-haiku-latest", api_key_env=None)
    assert "ANTHROPIC_API_KEY" in message


def test_unreachable_endpoint() -> None:
    message = fails(api_base=f"http://127.0.0.1:{free_port()}/v1")
    assert "unreachable" in message
    assert "not an http" in fails(api_base="ftp://example.invalid")


def test_schema_that_is_not_json_schema(tmp_path: Path) -> None:
    bad = tmp_path / "schema.json"
    bad.write_text(json.dumps({"type": "object", "properties": {"x": {"type": "strang"}}}))
    assert "invalid JSON Schema" in fails(schema_path=str(bad))
    bad.write_text("{not json")
    assert "not valid JSON" in fails(schema_path=str(bad))
    assert "not found" in fails(schema_path=str(tmp_path / "missing.json"))


def test_labels_that_do_not_match_the_schema(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    good = next(iter(GOLD.values()))
    rows = [good, {**good, "doc_id": "x2", "record": {**good["record"], "total": "a lot"}}, "{broken"]
    labels.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    message = fails(labels_path=str(labels))
    assert "line 2" in message and "line 3" in message and "total" in message
    assert "not found" in fails(labels_path=str(tmp_path / "nope.jsonl"))


def test_a_program_file_is_checked_through_its_schema(tmp_path: Path) -> None:
    from ieflow.program import ExtractionProgram

    program = ExtractionProgram.from_schema(json.loads(PO_SCHEMA.read_text()), model="openai/po")
    program.save(tmp_path / "program.json")
    preflight("openai/po", None, "IEFLOW_PREFLIGHT_KEY", str(tmp_path / "program.json"), None)
    data = json.loads((tmp_path / "program.json").read_text())
    data["schema"] = {"type": "object", "properties": {"x": {"type": 7}}}
    (tmp_path / "program.json").write_text(json.dumps(data))
    assert "invalid JSON Schema" in fails(schema_path=str(tmp_path / "program.json"), labels_path=None)
