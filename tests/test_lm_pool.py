"""ieflow.lm.pool: one client per distinct spec, shared by batch, the evaluator and extract-file."""

from __future__ import annotations

import pytest

import ieflow  # noqa: F401  (offline env defaults first)
from ieflow.batch import BatchSettings, batch_client
from ieflow.extraction import default_client
from ieflow.lm.pool import SHARED_POOL, ClientPool, ClientSpec, shared_client
from ieflow.program import ExtractionProgram

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


def test_the_same_spec_gets_the_same_client() -> None:
    pool = ClientPool()
    first = pool.client(ClientSpec("openai/a", {"temperature": 0.0, "top_p": 1}))
    # Parameters are compared as canonical JSON: their order does not matter.
    assert pool.client(ClientSpec("openai/a", {"top_p": 1, "temperature": 0.0})) is first
    assert len(pool) == 1


@pytest.mark.parametrize(
    "other",
    [
        ClientSpec("openai/b"),
        ClientSpec("openai/a", {"temperature": 0.5}),
        ClientSpec("openai/a", api_base="http://localhost:1/v1"),
        ClientSpec("openai/a", api_key_source="OTHER_KEY"),
        ClientSpec("openai/a", use_cache=False),
        ClientSpec("openai/a", max_concurrency=3),
        ClientSpec("openai/a", timeout_s=5.0),
        ClientSpec("openai/a", max_retries=0),
    ],
)
def test_a_spec_that_differs_in_anything_gets_its_own_client(other: ClientSpec) -> None:
    pool = ClientPool()
    assert pool.client(other) is not pool.client(ClientSpec("openai/a"))
    assert len(pool) == 2


def test_a_client_is_built_from_its_spec_and_its_key_resolved_once() -> None:
    pool = ClientPool()
    asked: list[int] = []

    def key() -> str:
        asked.append(1)
        return "sk-secret"

    spec = ClientSpec(
        "openai/a",
        {"seed": 1},
        api_base="http://x/v1",
        api_key_source="ENV",
        use_cache=False,
        max_concurrency=3,
        timeout_s=5.0,
        max_retries=1,
    )
    client = pool.client(spec, key)
    assert pool.client(spec, key) is client and asked == [1]
    assert (client.model, client.api_base, client.max_concurrency) == ("openai/a", "http://x/v1", 3)
    assert (client.timeout_s, client.max_retries, client.cache) == (5.0, 1, None)
    assert client.params == {"temperature": 0.0, "seed": 1}
    assert "sk-secret" not in repr(client) and "sk-secret" not in repr(spec)
    # The defaults are LMClient's own: 8 in flight for a remote model, the shared disk cache.
    plain = pool.client(ClientSpec("openai/a"))
    assert plain.max_concurrency == 8 and plain.cache is not None and plain.timeout_s == 300.0


def test_extraction_evaluation_and_batch_share_the_process_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IEFLOW_TEST_POOL_KEY", "fake")
    program = ExtractionProgram.from_schema(SCHEMA, model="openai/pool-test")
    plain = default_client(program)
    assert plain is shared_client(ClientSpec(program.model, program.model_params))
    assert plain is SHARED_POOL.client(ClientSpec("openai/pool-test", program.model_params))
    conf = BatchSettings(output_dir="unused", concurrency=5, api_key_env="IEFLOW_TEST_POOL_KEY")
    batched = batch_client(program, conf)
    assert batched is batch_client(program, conf) and batched is not plain
    assert batched.max_concurrency == 5
    assert batch_client(program, BatchSettings(output_dir="unused", concurrency=6)) is not batched


def test_the_evaluator_asks_again_on_the_pool_client_without_its_cache() -> None:
    from ieflow.optimize.evaluator import Budget, BudgetTracker, Evaluator
    from ieflow.scoring import Scorer

    program = ExtractionProgram.from_schema(SCHEMA, model="openai/pool-eval")
    twin = Evaluator(Scorer(program.schema), BudgetTracker(Budget()))._uncached(program)
    plain = default_client(program)
    assert twin is not plain and twin.cache is None and plain.cache is not None
    assert {**vars(twin), "cache": None} == {**vars(plain), "cache": None}
