"""The real embedded 0.5B model (slow: seconds per call). Few tests, and they still run in CI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from ieflow.extraction import extract
from ieflow.lm import LMClient, ResponseCache
from ieflow.program import ExtractionProgram
from ieflow.schema import validate_record

DATA = Path(__file__).resolve().parent.parent / "data" / "receipts"
MODEL = "local/qwen2.5-coder-0.5b"


@pytest.mark.slow
def test_local_model_extracts_a_schema_valid_record_from_a_sample_receipt(tmp_path) -> None:
    program = ExtractionProgram.from_schema(DATA / "schema.json", model=MODEL)
    client = LMClient(MODEL, params=program.model_params, cache=ResponseCache(tmp_path / "cache"))
    text = (DATA / "documents" / "005.txt").read_text()
    record, trace = extract(program, text, client)
    assert trace.error is None, trace.error
    assert validate_record(program.schema, record) == []
    assert record["company"] and "TRADING" in record["company"].upper()
    assert record["total"] == pytest.approx(31.0)
    assert trace.prompt_tokens > 100 and trace.cost_usd == 0.0


@pytest.mark.slow
def test_the_json_schema_grammar_is_really_applied(tmp_path) -> None:
    """Asked for prose, the model must still answer with the schema's shape: only the grammar can
    force an enum value and an ISO date pattern on a 0.5B model told to do otherwise."""
    schema = {
        "type": "object",
        "properties": {
            "mood": {"type": "string", "enum": ["zebra-alpha", "zebra-beta"]},
            "day": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
        },
        "required": ["mood", "day"],
        "additionalProperties": False,
    }
    client = LMClient(MODEL, params={"max_tokens": 60}, cache=ResponseCache(tmp_path / "cache"))
    messages = [{"role": "user", "content": "Write a short poem about the sea. Do not use JSON."}]
    response = client.complete(messages, response_schema=schema)
    assert response.text.lstrip().startswith("{")
    value = __import__("json").loads(response.text)
    assert value["mood"] in ("zebra-alpha", "zebra-beta")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", value["day"])


def test_a_prompt_over_the_context_window_fails_once_with_a_clear_error(monkeypatch) -> None:
    """llama.cpp raises ValueError for a prompt longer than n_ctx; it must reach the caller as a
    request error (not retried as transient, which made the evaluator give up a whole run)."""
    import threading
    from types import SimpleNamespace

    from ieflow.lm import local
    from ieflow.lm.errors import LMRequestError

    calls = []

    def too_long(**kwargs: object) -> dict:
        calls.append(kwargs)
        raise ValueError("Requested tokens (4153) exceed context window of 4096")

    fake = SimpleNamespace(lock=threading.Lock(), llama=SimpleNamespace(create_chat_completion=too_long))
    monkeypatch.setattr(local, "load_model", lambda alias: fake)
    client = LMClient(MODEL, cache=False, retry_wait_s=(0.0, 0.0))
    with pytest.raises(LMRequestError, match="exceed context window") as caught:
        client.complete([{"role": "user", "content": "a long document"}])
    assert len(calls) == 1 and "IEFLOW_N_CTX" in str(caught.value)
    program = ExtractionProgram.from_schema(DATA / "schema.json", model=MODEL)
    record, trace = extract(program, "a long document", client)
    assert record is None and "exceed context window" in (trace.error or "")


@pytest.mark.slow
def test_the_local_model_gives_each_leaf_a_confidence_not_set_by_grammar_forced_tokens(tmp_path) -> None:
    from ieflow.confidence import TokenLogprob, field_confidence

    program = ExtractionProgram.from_schema(DATA / "schema.json", model=MODEL)
    client = LMClient(MODEL, params=program.model_params, cache=ResponseCache(tmp_path / "cache"))
    text = (DATA / "documents" / "005.txt").read_text()
    _, trace = extract(program, text, client)
    assert trace.error is None and trace.confidence_note is None, trace.confidence_note
    answer = json.loads(trace.raw)
    assert set(trace.field_confidence) == {k for k, v in answer.items() if v is not None}
    assert all(0.0 <= c <= 1.0 for c in trace.field_confidence.values())
    # The same call again, from the cache, with its tokens: the first one ('{"') is forced by the
    # grammar (the model alone would not open with it: a low logprob). It lies outside every value,
    # so making it certain changes no confidence.
    response = client.complete_json(program.messages(text), program.response_schema(text))
    tokens = response.logprobs.tokens
    assert response.cached and "".join(t.token for t in tokens) == trace.raw
    assert tokens[0].token.startswith("{") and tokens[0].logprob < -1.0
    certain_start = [TokenLogprob(tokens[0].token, 0.0, tokens[0].n_bytes), *tokens[1:]]
    assert field_confidence(trace.raw, certain_start).values == trace.field_confidence
    assert max(trace.field_confidence.values()) > math.exp(tokens[0].logprob)
