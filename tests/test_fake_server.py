"""The fake OpenAI-compatible server, exercised through the real litellm → openai SDK → HTTP path.

One server is shared by the module (start/stop costs ~0.2 s each); every test gets it back in its
default state. `num_retries=0` everywhere unless a test is about retries: otherwise the openai SDK
retries 429/500/timeouts twice on its own, with 0.5-1 s backoff.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest

# isort: off
import ieflow  # noqa: F401  (sets offline env vars; must come before litellm's import)
import litellm

# isort: on
from ieflow_testing.fake_server import (
    DEFAULT_TEXT,
    LITELLM_EXCEPTIONS,
    FakeLMServer,
    FaultConfig,
    ScriptedAnswers,
    minimal_instance,
)

litellm.suppress_debug_info = True  # no "Give Feedback" banner on every expected exception

MESSAGES = [{"role": "user", "content": "Extract the fields from: ACME Corp, total 12.50"}]

INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "company": {"type": "string"},
        "date": {"type": ["string", "null"], "format": "date"},
        "total": {"type": "number"},
        "count": {"type": "integer", "minimum": 1},
        "paid": {"type": "boolean"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}},
        "address": {"$ref": "#/$defs/Address"},
        "currency": {"enum": ["EUR", "USD"]},
    },
    "required": ["company", "date", "total", "count", "paid", "note", "lines", "address", "currency"],
    "additionalProperties": False,
    "$defs": {
        "Line": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        "Address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "null"]}},
            "required": ["city", "zip"],
        },
    },
}


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeLMServer]:
    with FakeLMServer() as server:
        yield server


@pytest.fixture
def server(shared_server: FakeLMServer) -> FakeLMServer:
    shared_server.set_faults(FaultConfig())
    shared_server.set_latency(0.0)
    shared_server.set_answer(None)
    shared_server.reset_stats()
    return shared_server


def call(server: FakeLMServer, **kwargs: Any) -> Any:
    params: dict[str, Any] = {"messages": MESSAGES, "num_retries": 0, **server.litellm_kwargs("m"), **kwargs}
    return litellm.completion(**params)


# -- answers ---------------------------------------------------------------------------------------


def test_plain_answer_is_a_real_chat_completion(server: FakeLMServer) -> None:
    response = call(server)
    assert response.choices[0].message.content == DEFAULT_TEXT
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.completion_tokens == len(DEFAULT_TEXT) // 4 + 1
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    stats = server.stats
    assert stats.requests == 1 and stats.by_outcome["ok"] == 1
    assert stats.bodies[-1]["messages"] == MESSAGES and stats.bodies[-1]["model"] == "m"


def test_schema_answer_is_a_valid_minimal_instance(server: FakeLMServer) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "invoice", "schema": INVOICE_SCHEMA, "strict": True},
    }
    content = call(server, response_format=fmt).choices[0].message.content
    data = json.loads(content)
    jsonschema.validate(data, INVOICE_SCHEMA)
    assert data == {
        "company": "",
        "date": None,
        "total": 0,
        "count": 1,
        "paid": False,
        "note": None,
        "lines": [],
        "address": {"city": "", "zip": None},
        "currency": "EUR",
    }
    # llama-cpp style {"type": "json_object", "schema": ...} is understood too, and answers are stable.
    again = call(server, response_format={"type": "json_object", "schema": INVOICE_SCHEMA})
    assert again.choices[0].message.content == content


def test_pydantic_response_format_through_litellm(server: FakeLMServer) -> None:
    # litellm turns a pydantic model into an OpenAI json_schema response_format; the answer must parse.
    from pydantic import BaseModel

    class Receipt(BaseModel):
        company: str
        total: float | None
        items: list[str]

    content = call(server, response_format=Receipt).choices[0].message.content
    assert Receipt.model_validate_json(content) == Receipt(company="", total=None, items=[])


def test_minimal_instance_edge_cases() -> None:
    assert minimal_instance({"type": "array", "items": {"type": "integer"}, "minItems": 2}) == [0, 0]
    assert minimal_instance({"type": "string", "minLength": 3}) == "aaa"
    assert minimal_instance({"type": "number", "exclusiveMinimum": 5}) == 6
    assert minimal_instance({"type": "integer", "maximum": -2}) == -2
    assert minimal_instance({"const": "x"}) == "x"
    assert minimal_instance({"type": "string", "nullable": True}) is None
    assert minimal_instance({"oneOf": [{"type": "integer"}, {"type": "string"}]}) == 0
    both = {"allOf": [{"properties": {"a": {"type": "string"}}}, {"properties": {"b": {"type": "integer"}}}]}
    assert minimal_instance(both) == {"a": "", "b": 0}
    tree = {
        "$ref": "#/$defs/Node",
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#"}}}},
    }
    assert minimal_instance(tree) is not None  # recursive schemas terminate


def test_scripted_answers_and_callables(server: FakeLMServer) -> None:
    server.set_answer(
        ScriptedAnswers(
            rules=[
                ("ACME", {"company": "ACME Corp"}),
                (re.compile(r"total \d+\.\d\d"), "a total"),
                ("echo", lambda body: body["messages"][-1]["content"].upper()),
            ],
            default="nothing matched",
        )
    )

    def ask(text: str) -> str:
        return call(server, messages=[{"role": "user", "content": text}]).choices[0].message.content

    assert json.loads(ask("Invoice from ACME, total 3.00")) == {"company": "ACME Corp"}  # first rule wins
    assert ask("total 3.00") == "a total"
    assert ask("echo me") == "ECHO ME"
    assert ask("hello") == "nothing matched"
    server.set_answer(lambda body: f"{len(body['messages'])} messages")
    assert ask("x") == "1 messages"


def test_answer_callable_error_is_a_500_with_the_reason(server: FakeLMServer) -> None:
    def broken(body: dict[str, Any]) -> str:
        raise KeyError("no such field")

    server.set_answer(broken)
    with pytest.raises(litellm.InternalServerError, match="answer callable failed"):
        call(server)
    assert server.stats.by_outcome["answer_error"] == 1


def test_streaming(server: FakeLMServer) -> None:
    chunks = list(call(server, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == DEFAULT_TEXT


def test_health_and_models(server: FakeLMServer) -> None:
    root = server.base_url.removesuffix("/v1")
    assert httpx.get(f"{root}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.base_url}/models").json()["data"][0]["id"] == "fake"
    assert httpx.post(f"{server.base_url}/chat/completions", content=b"{not json").status_code == 400
    assert server.stats.requests == 0  # neither health nor a broken body counts as a chat request


def test_recorded_bodies_are_bounded(server: FakeLMServer) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        for i in range(1005):
            client.post("/chat/completions", json={"messages": [], "i": i})
    stats = server.stats
    assert stats.requests == 1005 and len(stats.bodies) == 1000 and stats.bodies[-1]["i"] == 1004


# -- faults, through litellm -------------------------------------------------------------------------


def test_429_raises_rate_limit_error(server: FakeLMServer) -> None:
    server.set_faults(FaultConfig(rate_429=1.0))
    with pytest.raises(litellm.RateLimitError) as info:
        call(server)
    assert isinstance(info.value, openai.RateLimitError) and info.value.status_code == 429
    assert server.stats.requests == 1  # num_retries=0 really means one attempt
    raw = httpx.post(f"{server.base_url}/chat/completions", json={"messages": MESSAGES})
    assert raw.status_code == 429 and raw.headers["retry-after"] == "0"
    assert raw.json()["error"]["code"] == "rate_limit_exceeded"


def test_500_raises_internal_server_error(server: FakeLMServer) -> None:
    server.set_faults(FaultConfig(rate_500=1.0))
    with pytest.raises(litellm.InternalServerError) as info:
        call(server)
    # Not litellm.APIError: litellm maps a 500 to its InternalServerError, an openai.APIStatusError.
    assert isinstance(info.value, openai.InternalServerError) and info.value.status_code == 500
    assert not isinstance(info.value, litellm.APIError)
    assert server.stats.by_outcome["500"] == 1


def test_hang_times_out_and_stop_is_quick(server: FakeLMServer) -> None:
    server.set_faults(FaultConfig(rate_hang=1.0, hang_s=30.0))
    start = time.perf_counter()
    with pytest.raises(litellm.Timeout) as info:
        call(server, timeout=0.5)
    assert isinstance(info.value, openai.APITimeoutError)
    assert time.perf_counter() - start < 2.0
    assert server.stats.by_outcome["hang"] == 1


def test_exception_table_matches_litellm() -> None:
    # The documented mapping names real litellm classes (others code against this table).
    for name in LITELLM_EXCEPTIONS.values():
        assert issubclass(getattr(litellm, name), Exception)


def test_malformed_content_is_broken_json(server: FakeLMServer) -> None:
    server.set_faults(FaultConfig(rate_malformed=1.0))
    fmt = {"type": "json_schema", "json_schema": {"name": "invoice", "schema": INVOICE_SCHEMA}}
    response = call(server, response_format=fmt)
    assert response.choices[0].finish_reason == "stop"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.choices[0].message.content)
    plain = call(server).choices[0].message.content  # not JSON to begin with: a canned broken object
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain)


def test_truncated_answer_has_finish_reason_length(server: FakeLMServer) -> None:
    server.set_faults(FaultConfig(rate_truncated=1.0))
    response = call(server)
    assert response.choices[0].finish_reason == "length"
    assert response.choices[0].message.content == DEFAULT_TEXT[: len(DEFAULT_TEXT) // 2]


def test_fail_first_n_then_sdk_retries_succeed(server: FakeLMServer) -> None:
    # A small retry-after keeps the openai SDK from its default 0.5-1 s backoff per retry.
    server.set_faults(FaultConfig(fail_first_n=2, retry_after_s=0.01))
    response = call(server, num_retries=2)
    assert response.choices[0].message.content == DEFAULT_TEXT
    assert server.stats.by_outcome == {**server.stats.by_outcome, "429": 2, "ok": 1}


def outcome_sequence(server: FakeLMServer, faults: FaultConfig, n: int) -> list[str]:
    """Outcomes of n sequential raw requests (raw httpx: litellm would add ~4 ms each)."""
    server.set_faults(faults)
    seen = []
    with httpx.Client(base_url=server.base_url, timeout=5.0) as client:
        for _ in range(n):
            r = client.post("/chat/completions", json={"model": "m", "messages": MESSAGES})
            if r.status_code != 200:
                seen.append(str(r.status_code))
                continue
            choice = r.json()["choices"][0]
            if choice["finish_reason"] == "length":
                seen.append("truncated")
            else:
                seen.append("ok" if choice["message"]["content"] == DEFAULT_TEXT else "malformed")
    return seen


def test_fault_rates_are_honoured_and_deterministic(server: FakeLMServer) -> None:
    rates = FaultConfig(rate_429=0.1, rate_500=0.1, rate_malformed=0.1, rate_truncated=0.1, seed=7)
    n = 500
    first = outcome_sequence(server, rates, n)
    for outcome in ("429", "500", "malformed", "truncated"):
        assert 0.06 * n <= first.count(outcome) <= 0.14 * n, (outcome, first.count(outcome))
    assert first.count("ok") >= 0.5 * n
    assert outcome_sequence(server, rates, 100) == first[:100]  # set_faults restarts the same sequence
    other_seed = FaultConfig(rate_429=0.1, rate_500=0.1, rate_malformed=0.1, rate_truncated=0.1, seed=8)
    assert outcome_sequence(server, other_seed, 100) != first[:100]
    assert server.stats.requests == n + 200


def test_invalid_fault_configs_are_rejected() -> None:
    with pytest.raises(ValueError):
        FaultConfig(rate_429=0.7, rate_500=0.5)
    with pytest.raises(ValueError):
        FaultConfig(rate_hang=-0.1)


# -- concurrency, lifecycle, process mode ------------------------------------------------------------


def test_async_calls_run_concurrently(server: FakeLMServer) -> None:
    server.set_latency(0.1)

    async def run() -> float:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(
                litellm.acompletion(messages=MESSAGES, num_retries=0, **server.litellm_kwargs("m"))
                for _ in range(32)
            )
        )
        assert all(r.choices[0].message.content == DEFAULT_TEXT for r in results)
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    assert elapsed < 1.2, elapsed  # serial would be 3.2 s; litellm costs ~4 ms CPU per call here
    assert server.stats.requests == 32


def test_stop_is_quick_with_hanging_requests() -> None:
    server = FakeLMServer(faults=FaultConfig(rate_hang=1.0, hang_s=60.0)).start()
    statuses: list[int] = []

    def hang() -> None:
        statuses.append(httpx.post(f"{server.base_url}/chat/completions", json={}, timeout=30).status_code)

    threads = [threading.Thread(target=hang) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while server.stats.requests < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.perf_counter()
    server.stop()
    assert time.perf_counter() - start < 1.5
    for t in threads:
        t.join(5)
    assert statuses == [503] * 4  # woken and told the server is going away
    assert not server.running


def test_process_mode() -> None:
    answers = ScriptedAnswers(rules=[("ACME", "scripted")])
    with FakeLMServer(answer=answers, process=True, faults=FaultConfig(fail_first_n=1)) as server:
        with pytest.raises(litellm.RateLimitError):
            call(server)
        assert call(server).choices[0].message.content == "scripted"
        server.set_faults(FaultConfig(rate_truncated=1.0))
        assert call(server).choices[0].finish_reason == "length"
        stats = server.stats
        assert stats.requests == 3 and stats.by_outcome["429"] == 1 and stats.by_outcome["truncated"] == 1
        server.reset_stats()
        assert server.stats.requests == 0
        with pytest.raises(RuntimeError):
            server.set_answer(None)
    assert not server.running
