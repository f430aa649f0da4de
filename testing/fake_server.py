"""A fake OpenAI-compatible chat-completions server for tests and benchmarks.

Tests start it on 127.0.0.1, point litellm at it (``model=server.model_name("m")``,
``api_base=server.base_url``, ``api_key="fake"``) and so exercise the *real* litellm → openai SDK →
HTTP path, including retries, timeouts and error mapping, without a network or a model.

Design choices, and why:

* A raw ASGI app under uvicorn (one worker, asyncio, no access log). No framework routing or
  pydantic validation: benchmarks push hundreds of requests per second through it on two cores,
  and the server shares those cores with the client being measured.
* Latency is ``asyncio.sleep``, so thousands of requests can wait concurrently at no CPU cost.
* Faults are decided per chat request by ``random.Random(seed)``: exactly one ``random()`` draw per
  request, taken in the order requests reach the server. The *sequence* of outcomes is therefore
  deterministic for a seed; which concurrent client call gets which outcome depends on arrival order.
  ``set_faults`` restarts the sequence (new RNG, ``fail_first_n`` counted again).
* 429 and 500 are answered at once (no latency), as real providers reject before doing work.
* Stopping wakes every sleeping request (latency or hang) and answers it 503, so shutdown takes a
  fraction of a second even when a test left hanging requests behind.

What the real litellm (1.110.2, provider ``openai/``) raises for each fault, with ``num_retries=0``
(checked by tests/test_fake_server.py):

* 429 → ``litellm.RateLimitError`` (subclass of ``openai.RateLimitError``, ``status_code`` 429)
* 500 → ``litellm.InternalServerError`` (subclass of ``openai.InternalServerError``, 500)
* hang past ``timeout=`` → ``litellm.Timeout`` (subclass of ``openai.APITimeoutError``)
* malformed / truncated → no exception: HTTP 200, broken JSON content / ``finish_reason="length"``

``num_retries`` is handed to the openai SDK as ``max_retries`` (and overrides a ``max_retries=``
kwarg). Left unset, the SDK retries 429/5xx/timeouts twice on its own: one litellm call = 3 requests.

Also: ``FakeLMServer(process=True)`` serves from a child process (benchmarks: the server's CPU then
does not compete for the client's GIL), and ``python -m ieflow_testing.fake_server --port 8000
--latency 0.1`` runs one standalone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import json
import logging
import os
import pickle
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = [
    "DEFAULT_TEXT",
    "LITELLM_EXCEPTIONS",
    "OUTCOMES",
    "FakeLMServer",
    "FakeStats",
    "FaultConfig",
    "ScriptedAnswers",
    "default_answer",
    "last_user_text",
    "minimal_instance",
    "piece_logprobs",
    "response_schema",
]

log = logging.getLogger(__name__)

#: Every outcome a chat request can have; ``FakeStats.by_outcome`` always holds all of them.
#: "answer_error" means the user's answer callable raised (answered as HTTP 500).
OUTCOMES: tuple[str, ...] = ("ok", "400", "429", "500", "hang", "malformed", "truncated", "answer_error")

#: Fault → what ``litellm.completion``/``acompletion`` raises (litellm 1.110.2, ``num_retries=0``).
#: Names are attributes of the ``litellm`` module. Malformed and truncated are HTTP 200: no exception.
LITELLM_EXCEPTIONS: dict[str, str] = {
    "400": "BadRequestError",
    "429": "RateLimitError",
    "500": "InternalServerError",
    "hang": "Timeout",
}

DEFAULT_TEXT = "This is a fake answer from ieflow's FakeLMServer."
# Realistic damage for the malformed fault when the answer is not JSON to begin with.
MALFORMED_FALLBACK = '{"company": "ACME", "total": '
MAX_BODIES = 1000


@dataclass(frozen=True)
class FaultConfig:
    """Per-request fault rates (probabilities, summing to at most 1) and fault parameters.

    ``fail_first_n``: the first N chat requests after start/``set_faults`` get a 429 regardless of
    the rates (and do not consume RNG draws), for deterministic retry tests.
    ``retry_after_s``: sent with every 429 as ``retry-after`` (and ``retry-after-ms`` when > 0). The
    openai SDK ignores a 0 and backs off 0.5-1 s per retry on its own; a small positive value such as
    0.01 makes SDK-level retries (``num_retries>0``) fast in tests.
    """

    rate_400: float = 0.0  # a request the provider refuses: clients must not retry it
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_hang: float = 0.0
    rate_malformed: float = 0.0
    rate_truncated: float = 0.0
    hang_s: float = 30.0
    seed: int = 0
    fail_first_n: int = 0
    retry_after_s: float = 0.0

    def __post_init__(self) -> None:
        rates = self._rates()
        if any(not 0.0 <= r <= 1.0 for _, r in rates):
            raise ValueError(f"fault rates must lie in [0, 1]: {rates}")
        if sum(r for _, r in rates) > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to more than 1: {rates}")
        if self.hang_s < 0 or self.fail_first_n < 0 or self.retry_after_s < 0:
            raise ValueError("hang_s, fail_first_n and retry_after_s must be >= 0")

    def _rates(self) -> list[tuple[str, float]]:
        # The order fixes how one uniform draw maps to an outcome; keep it stable for reproducibility.
        return [
            ("429", self.rate_429),
            ("500", self.rate_500),
            ("hang", self.rate_hang),
            ("malformed", self.rate_malformed),
            ("truncated", self.rate_truncated),
            ("400", self.rate_400),  # last, so adding it changed no existing seeded sequence
        ]


AnswerText = str | Mapping[str, Any] | list[Any]
AnswerFn = Callable[[dict[str, Any]], AnswerText]


@dataclass(frozen=True)
class ScriptedAnswers:
    """Rules matched against the text of the last user message; the first match answers.

    A rule's pattern is a plain ``str`` (substring match) or a compiled ``re.Pattern`` (``search``).
    Its answer is text, a JSON-able dict/list (sent as JSON), or a callable of the request body.
    ``default=None`` falls back to the server's default behaviour (schema instance or fixed text).
    """

    rules: Sequence[tuple[str | re.Pattern[str], AnswerText | AnswerFn]] = ()
    default: AnswerText | AnswerFn | None = None

    def __call__(self, body: dict[str, Any]) -> AnswerText:
        text = last_user_text(body)
        for pattern, answer in self.rules:
            hit = pattern.search(text) if isinstance(pattern, re.Pattern) else pattern in text
            if hit:
                return answer(body) if callable(answer) else answer
        if self.default is None:
            return default_answer(body)
        return self.default(body) if callable(self.default) else self.default


@dataclass(frozen=True)
class FakeStats:
    """A consistent snapshot of the server's counters (``FakeLMServer.stats`` makes a fresh one)."""

    requests: int  # chat requests received (health, models and unparseable bodies excluded)
    by_outcome: dict[str, int]  # a hang is counted when it starts, the rest when answered
    bodies: list[dict[str, Any]] = field(repr=False)  # the last ``MAX_BODIES`` chat request bodies
    # bearer tokens of chat requests, so a test can prove which key a client really sent
    api_keys: list[str] = field(default_factory=list, repr=False)


# --------------------------------------------------------------------------------------------------
# Answers


def _message_text(content: Any) -> str:
    # OpenAI content is a string or a list of parts ({"type": "text", "text": ...}, images, ...).
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def last_user_text(body: Mapping[str, Any]) -> str:
    """The text of the last ``user`` message of a chat request ("" if none)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message.get("content"))
    return ""


def response_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks for, in either OpenAI or llama-cpp style, else None."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        inner = fmt.get("json_schema") or {}
        schema = inner.get("schema") if isinstance(inner, dict) else None
        return schema if isinstance(schema, dict) else {}
    if fmt.get("type") == "json_object":
        schema = fmt.get("schema")
        return schema if isinstance(schema, dict) else {}
    return None


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    merged = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return _resolve(merged, root) if "$ref" in node else merged


def minimal_instance(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
    """A small deterministic instance of a JSON schema: null where null is allowed, "" for strings,
    0 (or the minimum) for numbers, [] (or minItems copies) for arrays, every property for objects.

    Handles $ref/$defs (pydantic), anyOf/oneOf/allOf, enum, const and type lists. It aims at the
    schemas extraction uses, not at every corner of JSON Schema (patterns and formats are ignored).
    """
    root = dict(root if root is not None else schema)
    schema = _resolve(dict(schema), root)
    if depth > 20:  # recursive schemas: stop instead of recursing forever
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return None if None in schema["enum"] else schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            for option in options:
                if isinstance(option, dict) and _resolve(option, root).get("type") == "null":
                    return None
            return minimal_instance(options[0], root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(dict(part), root)
            merged.setdefault("properties", {}).update(part.get("properties", {}))
            merged.setdefault("type", part.get("type"))
        return minimal_instance(merged, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        if "null" in kind:
            return None
        kind = kind[0] if kind else None
    if schema.get("nullable") is True:
        return None
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {name: minimal_instance(sub, root, depth + 1) for name, sub in props.items()}
    if kind == "array":
        items = schema.get("items")
        n = int(schema.get("minItems") or 0)
        return [minimal_instance(items, root, depth + 1) if isinstance(items, dict) else None] * n
    if kind == "string":
        return "a" * int(schema.get("minLength") or 0)
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = 0 if low is None else low + (1 if "minimum" not in schema else 0)
        high = schema.get("maximum")
        if isinstance(high, int | float) and value > high:  # e.g. {"maximum": -1}: 0 would be invalid
            value = high
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    return None


def default_answer(body: Mapping[str, Any]) -> str:
    """No scripted answer: a minimal instance of the requested JSON schema, else a fixed text."""
    schema = response_schema(body)
    if schema is None:
        return DEFAULT_TEXT
    return json.dumps(minimal_instance(schema) if schema else {})


#: The answer's tokens and their log-probabilities, for requests that ask for ``logprobs``
#: (None: a provider that returns none).
TokenLogprobsFn = Callable[[str], list[tuple[str, float]] | None]


def piece_logprobs(text: str) -> list[tuple[str, float]]:
    """The default tokens of a fake answer: words, spaces and marks, each certain (logprob 0)."""
    return [(piece, 0.0) for piece in re.findall(r"\w+|\s+|[^\w\s]", text)]


def _logprobs_payload(tokens: list[tuple[str, float]] | None, body: dict[str, Any]) -> dict[str, Any] | None:
    # OpenAI's shape: choices[0].logprobs.content, one item per token, with its UTF-8 bytes.
    if not body.get("logprobs") or tokens is None:
        return None
    content = [
        {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8")), "top_logprobs": []}
        for token, logprob in tokens
    ]
    return {"content": content}


def _as_text(answer: AnswerText) -> str:
    return answer if isinstance(answer, str) else json.dumps(answer)


def _malformed(text: str) -> str:
    # Cut a JSON container before its closing bracket and leave a dangling key: never parseable.
    stripped = text.rstrip()
    if stripped[:1] in "{[" and stripped[-1:] in "}]":
        return stripped[:-1].rstrip() + (', "_cut": ' if stripped[0] == "{" else ", ")
    return MALFORMED_FALLBACK


def _tokens(text: str) -> int:
    return len(text) // 4 + 1


# --------------------------------------------------------------------------------------------------
# Server state shared between the event-loop thread and the caller's thread


class _Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._outcomes: Counter[str] = Counter()
            self._bodies: deque[dict[str, Any]] = deque(maxlen=MAX_BODIES)
            self._api_keys: set[str] = set()

    def record_api_key(self, headers: list[tuple[bytes, bytes]]) -> None:
        for name, value in headers:
            if name.lower() == b"authorization" and value.startswith(b"Bearer "):
                with self._lock:
                    self._api_keys.add(value[7:].decode("latin-1"))

    def record_request(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._requests += 1
            self._bodies.append(body)

    def record_outcome(self, outcome: str) -> None:
        with self._lock:
            self._outcomes[outcome] += 1

    def snapshot(self) -> FakeStats:
        with self._lock:
            return FakeStats(
                requests=self._requests,
                by_outcome={o: self._outcomes.get(o, 0) for o in OUTCOMES},
                bodies=list(self._bodies),
                api_keys=sorted(self._api_keys),
            )


class _FaultPlan:
    """The fault sequence: FaultConfig + its RNG + the count for fail_first_n, swapped atomically."""

    def __init__(self, faults: FaultConfig) -> None:
        self._lock = threading.Lock()
        self.set(faults)

    def set(self, faults: FaultConfig) -> None:
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)
            self._seen = 0

    def next_outcome(self) -> tuple[str, FaultConfig]:
        """The next request's outcome, with the config it was drawn under (for hang_s, retry_after_s)."""
        with self._lock:
            self._seen += 1
            faults = self.faults
            if self._seen <= faults.fail_first_n:
                return "429", faults
            draw = self._rng.random()
            edge = 0.0
            for outcome, rate in faults._rates():
                edge += rate
                if draw < edge:
                    return outcome, faults
            return "ok", faults


Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class _App:
    """The ASGI application. Runs entirely on the server's event loop thread."""

    def __init__(self, owner: FakeLMServer) -> None:
        self.owner = owner
        self.stop_event: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ids = 0

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"].rstrip("/"), scope["method"]
        if path in ("/v1/chat/completions", "/chat/completions") and method == "POST":
            self.owner._stats.record_api_key(scope.get("headers", []))
            await self._chat(receive, send)
        elif path in ("/v1/embeddings", "/embeddings") and method == "POST":
            await self._embeddings(receive, send)
        elif path in ("/health", "/v1/health") and method == "GET":
            await _send_json(send, 200, {"status": "ok"})
        elif path == "/_fake/stats" and method == "GET":
            # Control endpoints: how a parent process reads/steers a server started with process=True.
            await _send_json(send, 200, dataclasses.asdict(self.owner._stats.snapshot()))
        elif path == "/_fake/control" and method == "POST":
            await self._control(receive, send)
        elif path in ("/v1/models", "/models") and method == "GET":
            model = {"id": "fake", "object": "model", "created": 0, "owned_by": "ieflow"}
            await _send_json(send, 200, {"object": "list", "data": [model]})
        else:
            await _send_json(send, 404, _error(f"no route {method} {path}", "invalid_request_error"))

    async def _control(self, receive: Receive, send: Send) -> None:
        try:
            body = json.loads(await _read_body(receive) or b"{}")
            if "faults" in body:
                self.owner._plan.set(FaultConfig(**body["faults"]))
            if "latency_s" in body:
                self.owner.set_latency(float(body["latency_s"]))
            if body.get("reset_stats"):
                self.owner._stats.reset()
        except (ValueError, TypeError) as exc:
            await _send_json(send, 400, _error(f"bad control request: {exc}", "invalid_request_error"))
            return
        await _send_json(send, 200, {"status": "ok"})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # Capture the loop and make the stop event here, so stop() can wake sleepers thread-safely.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.loop = asyncio.get_running_loop()
                self.stop_event = asyncio.Event()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, but return False at once when the server is stopping."""
        if seconds <= 0:
            return True
        assert self.stop_event is not None
        if self.stop_event.is_set():
            return False
        if seconds <= 0.5:
            # Short latencies: a plain sleep is cheapest, and stop() waits this long at most anyway.
            await asyncio.sleep(seconds)
            return True
        try:
            await asyncio.wait_for(self.stop_event.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    async def _embeddings(self, receive: Receive, send: Send) -> None:
        """OpenAI's embeddings route: a hashed bag of words per input (`hashed_embedding`), so
        texts that share words are near; faults (429/500) follow the plan as for chat."""
        body = json.loads(await _read_body(receive) or b"{}")
        self.owner._stats.record_request(body)
        outcome, _ = self.owner._plan.next_outcome()
        if outcome in ("429", "500"):
            self.owner._stats.record_outcome(outcome)
            await _send_json(send, int(outcome), _error(f"fake {outcome}", "server_error"))
            return
        inputs = body.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else inputs
        data = [
            {"object": "embedding", "index": i, "embedding": hashed_embedding(text)}
            for i, text in enumerate(inputs)
        ]
        self.owner._stats.record_outcome("ok")
        usage = {"prompt_tokens": sum(len(t.split()) for t in inputs), "total_tokens": 0}
        await _send_json(
            send, 200, {"object": "list", "data": data, "model": body.get("model"), "usage": usage}
        )

    async def _chat(self, receive: Receive, send: Send) -> None:
        try:
            body = json.loads(await _read_body(receive) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("request body is not a JSON object")
        except ValueError as exc:
            await _send_json(send, 400, _error(f"invalid JSON body: {exc}", "invalid_request_error"))
            return

        owner = self.owner
        owner._stats.record_request(body)
        outcome, faults = owner._plan.next_outcome()
        if outcome == "429":
            owner._stats.record_outcome(outcome)
            err = _error("Rate limit reached (fake server).", "requests", code="rate_limit_exceeded")
            headers = [(b"retry-after", f"{faults.retry_after_s:g}".encode())]
            if faults.retry_after_s > 0:
                headers.append((b"retry-after-ms", f"{faults.retry_after_s * 1000:g}".encode()))
            await _send_json(send, 429, err, extra_headers=headers)
            return
        if outcome == "400":
            owner._stats.record_outcome(outcome)
            await _send_json(send, 400, _error("Invalid request (fake server).", "invalid_request_error"))
            return
        if outcome == "500":
            owner._stats.record_outcome(outcome)
            await _send_json(send, 500, _error("Internal server error (fake server).", "server_error"))
            return

        if outcome == "hang":
            # Counted when it starts: its client has usually given up before it would be answered.
            owner._stats.record_outcome(outcome)
        awake = await self._sleep(owner._latency_s)
        if awake and outcome == "hang":
            awake = await self._sleep(faults.hang_s)
        if not awake:
            await _send_json(send, 503, _error("Fake server is shutting down.", "server_error"))
            return

        try:
            answer = owner._answer(body) if owner._answer is not None else default_answer(body)
            text = _as_text(answer)
        except Exception as exc:  # a broken test callable must surface, not kill the connection
            log.exception("FakeLMServer answer callable failed")
            owner._stats.record_outcome("answer_error")
            await _send_json(send, 500, _error(f"answer callable failed: {exc!r}", "server_error"))
            return

        finish = "stop"
        if outcome == "malformed":
            text = _malformed(text)
        elif outcome == "truncated":
            text, finish = text[: len(text) // 2], "length"
        if outcome != "hang":
            owner._stats.record_outcome(outcome)

        self._ids += 1
        completion_id = f"chatcmpl-fake-{self._ids}"
        model = str(body.get("model") or "fake")
        prompt_tokens = sum(
            _tokens(_message_text(m.get("content")))
            for m in body.get("messages") or []
            if isinstance(m, dict)
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _tokens(text),
            "total_tokens": prompt_tokens + _tokens(text),
        }
        if body.get("stream"):
            await _send_stream(send, completion_id, model, text, finish, usage, body)
            return
        await _send_json(
            send,
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": _logprobs_payload(owner.token_logprobs(text), body),
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
            },
        )


def hashed_embedding(text: str, size: int = 64) -> list[float]:
    """A deterministic unit vector: counts of words cut to their first 5 letters (a crude stem, so
    "governing" meets "governed") hashed into `size` buckets (crc32, stable across runs)."""
    import zlib

    vector = [0.0] * size
    for word in re.findall(r"\w+", text.lower()):
        vector[zlib.crc32(word[:5].encode()) % size] += 1.0
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


async def _send_json(
    send: Send, status: int, payload: Any, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": data})


async def _send_stream(
    send: Send, completion_id: str, model: str, text: str, finish: str, usage: dict[str, int], body: dict
) -> None:
    # Minimal SSE: one content chunk, one finish chunk, an optional usage chunk, then [DONE].
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    events = [
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
    ]
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append({**base, "choices": [], "usage": usage})
    payload = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


# --------------------------------------------------------------------------------------------------
# The public server


class FakeLMServer:
    """An OpenAI-compatible server on 127.0.0.1, run by uvicorn in a daemon thread (or a child process).

    Use it as a context manager (or call ``start()``/``stop()``). ``answer`` decides the assistant
    content: a callable of the request body, a ``ScriptedAnswers``, or None for the default (a
    minimal instance of the requested JSON schema, else ``DEFAULT_TEXT``). Latency, faults and
    counters can be changed/read from any thread while it runs.

    ``process=True`` runs the server in a child Python process instead of a thread, so that its
    ~0.5 ms of CPU per request does not compete for the GIL with the client being benchmarked. Then
    ``answer`` must be picklable by reference (None, a ``ScriptedAnswers`` of text/regex rules, or a
    module-level function), ``set_answer`` is unavailable, and ``stats``/``set_*`` go over HTTP.
    """

    def __init__(
        self,
        latency_s: float = 0.0,
        faults: FaultConfig | None = None,
        answer: AnswerFn | ScriptedAnswers | None = None,
        port: int = 0,
        process: bool = False,
    ) -> None:
        if latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        self._latency_s = float(latency_s)
        self._plan = _FaultPlan(faults or FaultConfig())
        self._answer = answer
        # what a request asking for `logprobs` gets (thread mode: set it before the requests)
        self.token_logprobs: TokenLogprobsFn = piece_logprobs
        self._requested_port = port
        self._process_mode = process
        self._stats = _Stats()
        self._app = _App(self)
        self._thread: threading.Thread | None = None
        self._uvicorn: Any = None
        self._sock: socket.socket | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    # -- configuration, safe while running (plain attribute swaps are atomic under the GIL) --

    @property
    def latency_s(self) -> float:
        return self._latency_s

    def set_latency(self, latency_s: float) -> None:
        """Change the per-request latency; applies to requests that arrive afterwards."""
        if latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        self._latency_s = float(latency_s)
        if self._child is not None:
            self._control({"latency_s": self._latency_s})

    @property
    def faults(self) -> FaultConfig:
        return self._plan.faults

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault config and restart the fault sequence (fresh RNG, fail_first_n again)."""
        self._plan.set(faults)
        if self._child is not None:
            self._control({"faults": dataclasses.asdict(faults)})

    def set_answer(self, answer: AnswerFn | ScriptedAnswers | None) -> None:
        """Replace the answer policy for requests that arrive afterwards (thread mode only)."""
        if self._process_mode:
            raise RuntimeError("set_answer is not available with process=True; pass answer= at creation")
        self._answer = answer

    @property
    def stats(self) -> FakeStats:
        """A snapshot of the counters since start or the last ``reset_stats()``."""
        if self._child is not None:
            data = json.loads(self._http("GET", "/_fake/stats"))
            return FakeStats(**data)
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters and forget recorded bodies (the fault sequence is not restarted)."""
        self._stats.reset()
        if self._child is not None:
            self._control({"reset_stats": True})

    def _control(self, payload: dict[str, Any]) -> None:
        self._http("POST", "/_fake/control", json.dumps(payload).encode())

    def _http(self, method: str, path: str, body: bytes | None = None, timeout_s: float = 10.0) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request(method, path, body=body, headers={"content-type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"FakeLMServer {method} {path} answered {response.status}: {data[:200]!r}")
        return data

    # -- addresses --

    @property
    def base_url(self) -> str:
        """The ``api_base`` for litellm / the OpenAI SDK, e.g. ``http://127.0.0.1:PORT/v1``."""
        if self.port is None:
            raise RuntimeError("FakeLMServer is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    @staticmethod
    def model_name(name: str = "fake") -> str:
        """The litellm model id routing to an OpenAI-compatible server: ``openai/<name>``."""
        return f"openai/{name}"

    def litellm_kwargs(self, name: str = "fake") -> dict[str, str]:
        """``model``, ``api_base`` and ``api_key`` for ``litellm.completion(**kwargs, messages=...)``."""
        return {"model": self.model_name(name), "api_base": self.base_url, "api_key": "fake"}

    # -- lifecycle --

    def start(self, timeout_s: float = 10.0) -> FakeLMServer:
        """Bind, start serving (thread or child process) and wait until ``/health`` answers."""
        if self._thread is not None or self._child is not None:
            raise RuntimeError("FakeLMServer already started")
        if self._process_mode:
            self._start_child(timeout_s)
        else:
            self._start_thread(timeout_s)
        try:
            self._http("GET", "/health", timeout_s=timeout_s)
        except Exception:
            self.stop()
            raise
        return self

    def _start_thread(self, timeout_s: float) -> None:
        import uvicorn  # lazy: importing this module stays cheap

        # Bind the socket ourselves: port 0 gives a free port we can read back before serving.
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
        # TCP, and with proto 0 every response paid ~40 ms of Nagle + delayed-ACK stall.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._requested_port))
        sock.listen(2048)
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            # A backstop only: stop() already wakes sleeping requests, so nothing should wait this long.
            timeout_graceful_shutdown=2,
            backlog=2048,
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [sock]}, name=f"fake-lm-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._uvicorn.started:
            if not self._thread.is_alive():
                self._cleanup()
                raise RuntimeError("FakeLMServer thread died during start-up (see the log)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"FakeLMServer did not start within {timeout_s} s")
            time.sleep(0.005)

    def _start_child(self, timeout_s: float) -> None:
        # A plain subprocess (not multiprocessing): no re-import of the caller's __main__, and the
        # child notices a dead parent through EOF on its stdin.
        payload = pickle.dumps((self._latency_s, self._plan.faults, self._answer, self._requested_port))
        child = subprocess.Popen(
            [sys.executable, "-m", "ieflow_testing.fake_server", "--child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        assert child.stdin is not None and child.stdout is not None
        self._child = child
        child.stdin.write(struct.pack("!Q", len(payload)) + payload)
        child.stdin.flush()
        ready: list[bytes] = []
        reader = threading.Thread(target=lambda: ready.append(child.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        line = ready[0].decode().split() if ready else []
        if len(line) != 2 or line[0] != "READY":
            self.stop()
            raise RuntimeError(f"FakeLMServer child did not start within {timeout_s} s (got {line})")
        self.port = int(line[1])

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving: wake sleeping requests (they get 503), shut uvicorn down, join the thread."""
        if self._child is not None:
            child, self._child = self._child, None
            with contextlib.suppress(OSError):
                child.stdin.close()  # type: ignore[union-attr]  # EOF = "stop" for the child
            try:
                child.wait(timeout_s)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
            return
        if self._thread is None:
            return
        app, server = self._app, self._uvicorn
        if app.loop is not None and app.stop_event is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                app.loop.call_soon_threadsafe(app.stop_event.set)
        server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            server.force_exit = True
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("FakeLMServer thread on port %s did not stop", self.port)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._thread = None
        self._uvicorn = None
        self._app = _App(self)  # a fresh app (loop, stop event) so the server could be started again

    @property
    def running(self) -> bool:
        if self._child is not None:
            return self._child.poll() is None
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> FakeLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# Command line: a standalone server, and the child side of process=True


def _child_main() -> None:
    stdin = sys.stdin.buffer
    (size,) = struct.unpack("!Q", stdin.read(8))
    latency_s, faults, answer, port = pickle.loads(stdin.read(size))
    server = FakeLMServer(latency_s=latency_s, faults=faults, answer=answer, port=port).start()
    sys.stdout.write(f"READY {server.port}\n")
    sys.stdout.flush()
    # Nobody reads the pipe after READY: send later prints (e.g. from an answer callable) to stderr
    # so that a full pipe can never block the server.
    os.dup2(2, 1)
    stdin.read()  # blocks until the parent closes stdin (stop()) or dies
    server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve: ``python -m ieflow_testing.fake_server [--port 8000] [--faults JSON]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible LM server (Ctrl-C to stop).")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answered request")
    parser.add_argument("--faults", default="{}", help="FaultConfig fields as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child_main()
        return
    import signal

    faults = FaultConfig(**json.loads(args.faults))
    server = FakeLMServer(latency_s=args.latency, faults=faults, port=args.port).start()
    print(f"serving {server.base_url} (model e.g. {server.model_name('fake')}); Ctrl-C stops", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops as cleanly as Ctrl-C
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C (or a process-group SIGINT) must not interrupt the clean shutdown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        server.stop()


if __name__ == "__main__":
    main()
