"""The LM client through the real litellm path, against the fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from ieflow.lm import (
    LMClient,
    LMRequestError,
    LMUnavailableError,
    ModelPrice,
    ResponseCache,
    StructuredOutputError,
    set_price,
)
from ieflow_testing.fake_server import FakeLMServer, FaultConfig

SCHEMA = {
    "type": "object",
    "properties": {"company": {"type": ["string", "null"]}, "total": {"type": ["number", "null"]}},
    "required": ["company", "total"],
    "additionalProperties": False,
}
MESSAGES = [{"role": "user", "content": "Receipt: ACME, total 12.50"}]


@pytest.fixture(scope="module")
def server():
    with FakeLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean_server(server):
    server.set_faults(FaultConfig())
    server.set_latency(0.0)
    server.set_answer(None)
    server.reset_stats()
    yield


def client_for(server, tmp_path, **kwargs) -> LMClient:
    kwargs.setdefault("cache", ResponseCache(tmp_path / "cache"))
    kwargs.setdefault("retry_wait_s", (0.01, 0.05))
    return LMClient(server.model_name("m"), api_base=server.base_url, api_key="fake-key", **kwargs)


def test_second_identical_call_is_served_from_the_disk_cache(server, tmp_path) -> None:
    client = client_for(server, tmp_path)
    first = client.complete(MESSAGES)
    second = client_for(server, tmp_path).complete(MESSAGES)  # a new client: the cache is on disk
    assert not first.cached and second.cached
    assert second.text == first.text
    assert server.stats.requests == 1
    # Different parameters or schema are different requests.
    client.complete(MESSAGES, max_tokens=7)
    client.complete(MESSAGES, response_schema=SCHEMA)
    assert server.stats.requests == 3


def test_retries_on_429_and_500_then_succeeds(server, tmp_path) -> None:
    server.set_faults(FaultConfig(fail_first_n=2))
    response = client_for(server, tmp_path, max_retries=3).complete(MESSAGES)
    assert response.text
    assert server.stats.by_outcome.get("429") == 2
    server.reset_stats()
    server.set_faults(FaultConfig(rate_500=1.0))
    with pytest.raises(LMUnavailableError) as info:
        client_for(server, tmp_path, max_retries=2).complete([{"role": "user", "content": "other"}])
    assert server.stats.requests == 3  # one try and two retries
    assert "openai/m" in str(info.value) and "3 attempts" in str(info.value)


def test_no_retry_on_400(server, tmp_path) -> None:
    server.set_faults(FaultConfig(rate_400=1.0))
    with pytest.raises(LMRequestError) as info:
        client_for(server, tmp_path, max_retries=3).complete(MESSAGES)
    assert server.stats.requests == 1
    assert "BadRequestError" in str(info.value)


def test_timeout_is_retried_and_reported(server, tmp_path) -> None:
    server.set_faults(FaultConfig(rate_hang=1.0, hang_s=5.0))
    started = time.perf_counter()
    with pytest.raises(LMUnavailableError) as info:
        client_for(server, tmp_path, timeout_s=0.5, max_retries=1).complete(MESSAGES)
    assert time.perf_counter() - started < 4.0
    assert "Timeout" in str(info.value)


def test_structured_output_is_validated_and_repaired_once(server, tmp_path) -> None:
    answers = iter(['{"company": "ACME", "total": "12,50"}', '{"company": "ACME", "total": 12.5}'])
    server.set_answer(lambda body: next(answers))
    response = client_for(server, tmp_path).complete_json(MESSAGES, SCHEMA)
    assert response.parsed == {"company": "ACME", "total": 12.5}
    repair_request = server.stats.bodies[-1]["messages"][-1]["content"]
    assert "does not match the JSON schema" in repair_request
    # The request carried the schema as an OpenAI response format.
    assert server.stats.bodies[0]["response_format"]["json_schema"]["schema"] == SCHEMA
    assert response.prompt_tokens > 0  # both attempts counted


def test_a_garbled_answer_gets_a_fresh_try_before_any_repair(server, tmp_path) -> None:
    answers = iter(['{"company": "ACME", "total": ', '{"company": "ACME", "total": 12.5}'])
    server.set_answer(lambda body: next(answers))
    response = client_for(server, tmp_path).complete_json([{"role": "user", "content": "garbled"}], SCHEMA)
    assert response.parsed == {"company": "ACME", "total": 12.5}
    # The same request again (no repair turn), sent past the cache.
    assert server.stats.requests == 2
    assert server.stats.bodies[-1]["messages"] == [{"role": "user", "content": "garbled"}]


def test_structured_output_gives_a_typed_error_after_a_failed_repair(server, tmp_path) -> None:
    server.set_answer(lambda body: '{"company": 5}')
    with pytest.raises(StructuredOutputError) as info:
        client_for(server, tmp_path).complete_json([{"role": "user", "content": "bad"}], SCHEMA)
    assert info.value.raw == '{"company": 5}'
    assert any("company" in p for p in info.value.problems)
    assert len(info.value.responses) == 2


def test_tokens_and_cost_are_accounted_with_one_warning_for_unknown_prices(server, tmp_path, caplog) -> None:
    # A model name no other test uses: the warning is once per model and process.
    client = LMClient(
        server.model_name("unpriced"),
        api_base=server.base_url,
        api_key="k",
        cache=ResponseCache(tmp_path / "cache"),
    )
    with caplog.at_level(logging.WARNING, logger="ieflow.lm"):
        client.complete([{"role": "user", "content": "a"}])
        client.complete([{"role": "user", "content": "b"}])
    warnings = [r for r in caplog.records if "No price known" in r.getMessage()]
    assert len(warnings) == 1
    assert client.usage.calls == 2 and client.usage.prompt_tokens > 0 and client.usage.cost_usd == 0.0
    set_price(server.model_name("unpriced"), ModelPrice(input_per_mtok=1_000_000.0, output_per_mtok=0.0))
    priced = client.complete([{"role": "user", "content": "c"}])
    assert priced.cost_usd == pytest.approx(priced.prompt_tokens)
    cached = client.complete([{"role": "user", "content": "c"}])
    assert cached.cached and client.usage.cached_calls == 1


def test_the_api_key_never_reaches_the_cache_or_repr(server, tmp_path) -> None:
    client = LMClient(
        server.model_name("m"),
        api_base=server.base_url,
        api_key="sk-secret-123",
        cache=ResponseCache(tmp_path / "c"),
    )
    client.complete(MESSAGES)
    assert "sk-secret" not in repr(client)
    stored = b"".join(p.read_bytes() for p in (tmp_path / "c").rglob("*") if p.is_file())
    assert b"sk-secret" not in stored


def test_async_calls_respect_the_per_model_concurrency_limit(server, tmp_path) -> None:
    server.set_latency(0.2)
    client = client_for(server, tmp_path, max_concurrency=4, cache=False)
    # A fresh model name gets a fresh limit.
    client.model = server.model_name("limited")

    async def run() -> list:
        return await asyncio.gather(
            *(client.acomplete([{"role": "user", "content": f"doc {i}"}]) for i in range(8))
        )

    started = time.perf_counter()
    results = asyncio.run(run())
    elapsed = time.perf_counter() - started
    assert len(results) == 8
    assert elapsed >= 0.38  # 8 calls, 4 at a time, 0.2 s each: at least two rounds


def test_local_model_format_translation() -> None:
    from ieflow.lm.local import translate_response_format

    openai_style = {"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA}}
    assert translate_response_format(openai_style) == {"type": "json_object", "schema": SCHEMA}
    assert translate_response_format(None) is None


def test_unknown_local_model_names_what_is_known(tmp_path) -> None:
    from ieflow.lm.local import LocalModelError, gguf_path

    with pytest.raises(LocalModelError, match=r"qwen2\.5-coder-0\.5b"):
        gguf_path("no-such-model")
    with pytest.raises(LocalModelError, match="no GGUF file"):
        from ieflow.lm.local import register_local_model

        register_local_model("x", tmp_path / "missing.gguf")


def test_json_parsing_tolerates_fences() -> None:
    from ieflow.lm.structured import parse_and_validate

    value, problems = parse_and_validate('```json\n{"company": "A", "total": 1}\n```', SCHEMA)
    assert value == {"company": "A", "total": 1} and problems == []
    value, problems = parse_and_validate("no json here", SCHEMA)
    assert value is None and "not valid JSON" in problems[0]
    assert json.loads('{"a": 1}')


def test_latency_is_the_calls_own_time_not_the_wait_for_a_concurrency_slot(server, tmp_path) -> None:
    """Four calls through one slot, 0.3 s each: the last waits ~0.9 s for the slot, and that wait
    is the batch's wall time, not the model's (records showed 111-170 s for ~8 s calls)."""
    server.set_latency(0.3)
    # A model name of its own: the per-model slot count is fixed by the first client of a model.
    client = LMClient(
        server.model_name("slot-test"), api_base=server.base_url, api_key="fake-key", max_concurrency=1
    )

    async def four() -> list:
        messages = [[{"role": "user", "content": f"doc {i}"}] for i in range(4)]
        return await asyncio.gather(*(client.acomplete(m) for m in messages))

    started = time.perf_counter()
    responses = asyncio.run(four())
    assert time.perf_counter() - started >= 1.1  # they did queue behind one another
    assert all(0.25 <= r.latency_s < 0.7 for r in responses), [r.latency_s for r in responses]
