"""Per-field confidence through the real litellm path (fake OpenAI-compatible server): the client
asks for log-probabilities where litellm lists them, keeps them in its cache, and extraction turns
them into `Trace.field_confidence` for whole, select and map_merge readings."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import pytest

from ieflow.extraction import extract
from ieflow.lm import LMClient, ResponseCache
from ieflow.lm.logprobs import NOT_KEPT_IN_CACHE, NOT_RETURNED, asks_logprobs, read_logprobs
from ieflow.program import ExtractionProgram, LongDocStrategy
from ieflow_testing.fake_server import FakeLMServer, ScriptedAnswers, piece_logprobs

SCHEMA = {
    "type": "object",
    "properties": {
        "company": {"type": ["string", "null"], "description": "Seller."},
        "total": {"type": ["number", "null"], "description": "Amount paid."},
        "items": {"type": "array", "items": {"type": "string"}, "description": "Items bought."},
    },
    "required": ["company", "total", "items"],
    "additionalProperties": False,
}
MESSAGES = [{"role": "user", "content": "Receipt: ACME, total 12.50"}]


@pytest.fixture(scope="module")
def server():
    with FakeLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def clean_server(server):
    server.set_answer(None)
    server.token_logprobs = piece_logprobs
    server.reset_stats()
    yield


def client_for(server, tmp_path) -> LMClient:
    cache = ResponseCache(tmp_path / "cache")
    return LMClient(server.model_name("m"), api_base=server.base_url, api_key="fake", cache=cache)


def weakest(word: str, logprob: float):
    """Token log-probabilities in which `word` is the only doubtful token."""

    def tokens(text: str) -> list[tuple[str, float]]:
        return [(piece, logprob if piece == word else -0.01) for piece, _ in piece_logprobs(text)]

    return tokens


def test_the_client_asks_only_providers_that_litellm_lists_logprobs_for() -> None:
    assert asks_logprobs("openai/gpt-4o-mini")
    assert not asks_logprobs("ollama/qwen2.5")  # litellm lists no `logprobs` for ollama
    assert not asks_logprobs("local/qwen2.5-coder-0.5b")  # records them unasked
    unasked = read_logprobs("ollama/qwen2.5", SimpleNamespace(logprobs=None), asked=False)
    assert unasked.tokens is None and "litellm lists no `logprobs`" in (unasked.note or "")


def test_logprobs_come_back_and_are_kept_in_the_cache(server, tmp_path) -> None:
    server.set_answer(lambda body: {"company": "ACME", "total": 12.5, "items": []})
    server.token_logprobs = weakest("ACME", -1.0)
    first = client_for(server, tmp_path).complete_json(MESSAGES, SCHEMA)
    assert server.stats.bodies[-1]["logprobs"] is True
    assert "".join(t.token for t in first.logprobs.tokens) == first.text
    again = client_for(server, tmp_path).complete_json(MESSAGES, SCHEMA)
    assert again.cached and server.stats.requests == 1
    assert again.logprobs == first.logprobs


def test_an_old_cache_entry_without_logprobs_loads_with_a_note(server, tmp_path) -> None:
    client = client_for(server, tmp_path)
    first = client.complete_json(MESSAGES, SCHEMA)
    store = client.cache._store
    for key in list(store):  # as the cache was written before log-probabilities were kept
        entry = store[key]
        del entry["logprobs"], entry["logprobs_note"]
        store[key] = entry
    again = client_for(server, tmp_path).complete_json(MESSAGES, SCHEMA)
    assert again.cached and again.text == first.text and first.logprobs.tokens is not None
    assert again.logprobs.tokens is None and again.logprobs.note == NOT_KEPT_IN_CACHE


def test_extraction_gives_each_leaf_its_weakest_tokens_probability(server, tmp_path) -> None:
    server.set_answer(lambda body: {"company": "ACME Trading", "total": 12.5, "items": ["tea", "rice"]})
    server.token_logprobs = weakest("Trading", -0.7)
    program = ExtractionProgram.from_schema(SCHEMA, model=server.model_name("m"))
    text = "ACME Trading\ntea 2.50\nrice 10.00\nTOTAL 12.50"
    record, trace = extract(program, text, client_for(server, tmp_path))
    assert record["company"] == "ACME Trading" and trace.confidence_note is None
    assert trace.field_confidence == {
        "company": round(math.exp(-0.7), 4),
        "total": round(math.exp(-0.01), 4),
        "items[0]": round(math.exp(-0.01), 4),
        "items[1]": round(math.exp(-0.01), 4),
    }


def test_a_provider_that_returns_no_logprobs_gives_null_confidences_and_says_why(server, tmp_path) -> None:
    server.set_answer(lambda body: {"company": "ACME", "total": None, "items": ["tea"]})
    server.token_logprobs = lambda text: None
    program = ExtractionProgram.from_schema(SCHEMA, model=server.model_name("m"))
    _, trace = extract(program, "ACME\ntea", client_for(server, tmp_path))
    assert trace.field_confidence == {"company": None, "items[0]": None}  # null values have none
    assert trace.confidence_note == NOT_RETURNED


def long_receipt() -> str:
    filler = " ".join(f"line{i} of the receipt." for i in range(300))
    return f"ACME Trading receipt\n{filler}\nTOTAL 5.00 paid for tea and rice\n{filler}"


def test_map_merge_takes_each_values_confidence_from_the_chunk_it_came_from(server, tmp_path) -> None:
    server.set_answer(
        ScriptedAnswers(
            rules=[
                ("ACME Trading", {"company": "ACME", "total": None, "items": ["tea"]}),
                ("TOTAL 5.00", {"company": "ACME", "total": 5.0, "items": ["rice", "tea"]}),
            ],
            default={"company": None, "total": None, "items": []},
        )
    )
    # Each chunk's answer is doubtful in its own way, so the merged confidences show their source.
    server.token_logprobs = lambda text: [
        (piece, -0.4 if "5.0" in text else -0.2) for piece, _ in piece_logprobs(text)
    ]
    strategy = LongDocStrategy(kind="map_merge", max_input_tokens=500, chunk_tokens=400)
    program = ExtractionProgram.from_schema(SCHEMA, model=server.model_name("m"), strategy=strategy)
    record, trace = extract(program, long_receipt(), client_for(server, tmp_path))
    assert trace.strategy == "map_merge" and trace.calls > 3
    assert record == {"company": "ACME", "total": 5.0, "items": ["tea", "rice"]}
    first, second = round(math.exp(-0.2), 4), round(math.exp(-0.4), 4)
    # "rice" was item 0 of the second chunk's answer; in the union it is item 1.
    expected = {"company": first, "total": second, "items[0]": first, "items[1]": second}
    assert trace.field_confidence == expected


def test_select_reading_gets_confidences_too(server, tmp_path) -> None:
    server.set_answer(lambda body: {"company": "ACME", "total": 5.0, "items": []})
    server.token_logprobs = weakest("5", -0.3)
    strategy = LongDocStrategy(kind="select", max_input_tokens=500, chunk_tokens=200)
    program = ExtractionProgram.from_schema(SCHEMA, model=server.model_name("m"), strategy=strategy)
    _, trace = extract(program, long_receipt(), client_for(server, tmp_path))
    assert trace.strategy == "select"
    assert trace.field_confidence == {"company": round(math.exp(-0.01), 4), "total": round(math.exp(-0.3), 4)}
    assert re.fullmatch(r"5\.0", trace.raw.split('"total":')[1].split(",")[0].strip())


def test_field_grouped_readings_keep_each_groups_confidences(server, tmp_path) -> None:
    """One call per field group (`fields_per_call`): each field's number comes from its group's call."""

    full = {"company": "ACME Trading", "total": 12.5, "items": ["tea"]}

    def answer(body: dict) -> dict:
        asked = json.dumps(body.get("response_format", {}))
        return {name: value for name, value in full.items() if f'"{name}"' in asked}

    server.set_answer(answer)
    server.token_logprobs = weakest("Trading", -0.7)
    program = ExtractionProgram.from_schema(
        SCHEMA, model=server.model_name("m"), strategy=LongDocStrategy(fields_per_call=1)
    )
    record, trace = extract(program, "ACME Trading\ntea 2.50\nTOTAL 12.50", client_for(server, tmp_path))
    assert trace.error is None and trace.calls == 3, trace.error
    assert record == {"company": "ACME Trading", "total": 12.5, "items": ["tea"]}
    assert trace.field_confidence["company"] == round(math.exp(-0.7), 4)
    assert trace.field_confidence["total"] == round(math.exp(-0.01), 4)
    assert set(trace.field_confidence) == {"company", "total", "items[0]"}
