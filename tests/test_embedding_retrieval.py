"""Issue 18: embedding retrieval through litellm embeddings, with BM25 as the offline default.

The embedding model is the fake OpenAI-compatible server's /v1/embeddings (a hashed bag of words,
so a chunk that shares words with a field's query is near it), asked through real litellm calls."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ieflow.extraction import extract
from ieflow.lm import LMRequestError
from ieflow.lm import embeddings as embeddings_module
from ieflow.lm.embeddings import Embedder
from ieflow.lm.errors import LMUnavailableError
from ieflow.longdoc import EmbeddingRanker, plan_reading, split_windows
from ieflow.program import LongDocStrategy
from ieflow_testing.fake_server import FakeLMServer, FaultConfig, hashed_embedding
from tests.support.scripted_lm import ScriptedLM
from tests.test_longdoc import answer_from, asked_fields, long_nda, nda

EMBEDDING_MODEL = "openai/fake-embedding"
WINDOW = {"max_input_tokens": 600, "chunk_tokens": 300, "overlap_tokens": 0, "top_k": 1}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IEFLOW_HOME", str(tmp_path / "home"))  # a fresh embedding cache per test
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    monkeypatch.setattr(embeddings_module, "_BUILT", {})


def embeddings_asked(server: FakeLMServer) -> list[list[str]]:
    return [body["input"] for body in server.stats.bodies if "input" in body]


def test_vectors_are_cached_per_text_and_only_the_new_texts_are_asked() -> None:
    with FakeLMServer() as server:
        embedder = Embedder(EMBEDDING_MODEL, api_base=server.base_url)
        first = embedder.embed(["governed by the laws of Ohio", "the parties"])
        again = embedder.embed(["the parties", "a non-compete clause", "governed by the laws of Ohio"])
        assert embeddings_asked(server) == [
            ["governed by the laws of Ohio", "the parties"],
            ["a non-compete clause"],
        ]
    assert first[0] == again[2] == pytest.approx(hashed_embedding("governed by the laws of Ohio"))
    assert embedder.calls == 2


def test_a_rate_limit_is_retried_and_a_server_that_stays_down_is_an_error_naming_the_model() -> None:
    with FakeLMServer(faults=FaultConfig(fail_first_n=1)) as server:
        embedder = Embedder(EMBEDDING_MODEL, api_base=server.base_url, retry_wait_s=(0.01, 0.02))
        assert len(embedder.embed(["text"])[0]) == 64
        assert server.stats.by_outcome["429"] == 1 and server.stats.by_outcome["ok"] == 1
    closed = Embedder(
        EMBEDDING_MODEL, api_base="http://127.0.0.1:9", max_retries=1, retry_wait_s=(0.01, 0.02)
    )
    with pytest.raises(LMUnavailableError, match="fake-embedding"):
        closed.embed(["text"])


def test_an_embedding_answer_with_too_few_vectors_is_a_request_error() -> None:
    short = SimpleNamespace(data=[{"index": 0, "embedding": [1.0]}])
    with pytest.raises(LMRequestError, match="1 vectors for 2 texts"):
        embeddings_module._vectors(EMBEDDING_MODEL, short, 2)


def test_each_field_gets_the_chunk_nearest_its_query() -> None:
    program = nda(kind="retrieve_merge", **WINDOW)
    chunks = split_windows(long_nda(), 300, 0, program.model)
    ranker = EmbeddingRanker(chunks, lambda texts: [hashed_embedding(t) for t in texts])
    [law] = ranker.retrieve(program, ["jurisdiction"])
    [flag] = ranker.retrieve(program, ["non_compete"])
    assert "governed by the laws" in chunks[law] and "non-compete" in chunks[flag]


def test_the_strategy_asks_for_an_embedding_model_and_bm25_programs_keep_their_json() -> None:
    with pytest.raises(ValueError, match="needs embedding_model"):
        LongDocStrategy(retriever="embedding")
    with pytest.raises(ValueError, match="unknown retriever"):
        LongDocStrategy(retriever="tfidf")
    assert "retriever" not in LongDocStrategy().to_dict()
    assert LongDocStrategy(retriever="embedding", embedding_model="m").to_dict()["retriever"] == "embedding"
    with pytest.raises(ValueError, match="needs an embed function"):
        plan_reading(
            nda(kind="retrieve_merge", retriever="embedding", embedding_model="m", **WINDOW), long_nda()
        )


def answering_script(seen: dict[str, list[str]]):
    def script(messages, params):
        fields = asked_fields(params)
        seen.setdefault(",".join(fields), []).append(messages[-1]["content"])
        return answer_from(messages[-1]["content"], fields)

    return script


def test_extraction_reads_the_embedding_retrievers_chunks() -> None:
    seen: dict[str, list[str]] = {}
    with FakeLMServer() as server:
        strategy = {
            "retriever": "embedding",
            "embedding_model": EMBEDDING_MODEL,
            "embedding_api_base": server.base_url,
        }
        program = nda(
            kind="retrieve_merge", merge="typed", field_groups=[["jurisdiction"]], **strategy, **WINDOW
        )
        record, trace = extract(program, long_nda(), ScriptedLM(answering_script(seen)))
        assert embeddings_asked(server)  # the chunks and the queries were embedded by the server
    assert record["jurisdiction"] == "Ohio" and trace.retrieval_note is None
    assert all("governed by the laws" in part for part in seen["jurisdiction"])


def test_an_embedding_outage_falls_back_to_bm25_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = "http://127.0.0.1:9"
    down = Embedder(EMBEDDING_MODEL, api_base=dead, max_retries=0)
    monkeypatch.setattr(embeddings_module, "_BUILT", {(EMBEDDING_MODEL, dead): down})
    seen: dict[str, list[str]] = {}
    strategy = {"retriever": "embedding", "embedding_model": EMBEDDING_MODEL, "embedding_api_base": dead}
    program = nda(kind="retrieve_merge", merge="typed", field_groups=[["jurisdiction"]], **strategy, **WINDOW)
    record, trace = extract(program, long_nda(), ScriptedLM(answering_script(seen)))
    assert record["jurisdiction"] == "Ohio"  # the document was still read, by BM25's chunks
    assert trace.retrieval_note.startswith("embedding retrieval failed, BM25 used instead:")
    assert "retrieval_note" in trace.to_dict()
