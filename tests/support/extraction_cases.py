"""Fixed programs and documents whose every model request, record and trace are pinned in a snapshot
(tests/fixtures/extraction_snapshot.json), so a change to how a program is run cannot change what
the model is sent: the LM cache key is derived from the request, so identical requests are
identical keys and old cache entries keep serving.

`run_cases(extract)` runs each case through `extract(program, text, client)` and returns what a
recording client saw; the snapshot was taken with the code before the extraction redesign."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ieflow.lm import LMUnavailableError
from ieflow.lm.cache import request_key
from ieflow.program import Demo, ExtractionProgram, LongDocStrategy
from tests.support.scripted_lm import ScriptedLM

NDA = {
    "title": "NDA",
    "type": "object",
    "properties": {
        "effective_date": {"type": ["string", "null"], "format": "date", "description": "Start date."},
        "jurisdiction": {"type": ["string", "null"], "description": "Governing law."},
        "party": {"type": "array", "items": {"type": "string"}, "description": "Parties."},
    },
    "required": ["effective_date", "jurisdiction", "party"],
}

RECEIPT = {
    "title": "Receipt",
    "type": "object",
    "properties": {
        "date": {"type": ["string", "null"], "format": "date", "description": "Purchase date."},
        "total": {"type": ["number", "null"], "description": "Amount paid."},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "price": {"type": ["number", "null"]}},
                "required": ["name", "price"],
            },
        },
    },
    "required": ["date", "total", "items"],
}

RECEIPT_TEXT = "SHOP 12\nDate: 02/01/2020\nCoffee 3.50\nCake 1,234.50\nTOTAL 1,238.00\n"


def long_nda() -> str:
    filler = " ".join(f"clause{i} of the agreement text." for i in range(400))
    return (
        "MUTUAL NONDISCLOSURE AGREEMENT between Acme Corp and Beta LLC.\n"
        + filler
        + "\nThis agreement is governed by the laws of the State of Ohio.\n"
        + filler
    )


def _answer(messages: list[dict], params: dict) -> str:
    """A deterministic answer from the document: garbage when it asks for it, else a record."""
    document = next(m["content"] for m in reversed(messages) if m["content"].startswith("Document:"))
    if "UNAVAILABLE" in document:
        raise LMUnavailableError("scripted/lm", "503 three times")
    if "GARBAGE" in document:
        return "I cannot help with that"
    if "total" in json.dumps(params.get("response_schema") or {}):
        return json.dumps(
            {"date": "02/01/2020", "total": "1,238.00", "items": [{"name": "Cake", "price": "1,234.50"}]}
        )
    clause = re.search(r"clause(\d+)", document)
    return json.dumps(
        {
            "effective_date": None,
            "jurisdiction": "Ohio" if "Ohio" in document else None,
            "party": ["Acme Corp"] + ([f"P{clause.group(1)}"] if clause else []),
        }
    )


class RecordingLM(ScriptedLM):
    """A scripted LM that keeps each request's cache key, messages, schema and parameters."""

    def __init__(self) -> None:
        super().__init__(_answer)
        self.requests: list[dict[str, Any]] = []

    def complete(self, messages: list[dict], *, response_schema: dict | None = None, **params: Any):
        use_cache = params.pop("use_cache", True)
        request = self._request(messages, response_schema, params)
        self.requests.append(
            {
                "key": request_key(self.model, messages, request["params"], response_schema),
                "messages": messages,
                "schema": response_schema,
                "params": request["params"],
                "use_cache": use_cache,
            }
        )
        return super().complete(messages, response_schema=response_schema, **params)


def cases() -> dict[str, tuple[ExtractionProgram, str]]:
    nda = ExtractionProgram.from_schema(NDA, model="scripted/lm")
    demo = Demo(
        "d1",
        "Demo NDA between X and Y under Texas law.",
        {"effective_date": None, "jurisdiction": "Texas", "party": ["X", "Y"]},
    )
    receipt = ExtractionProgram.from_schema(RECEIPT, model="scripted/lm").replace(
        formats={"date": "date:day-first", "total": "amount:printed", "items[].price": "amount:printed"},
        demos=[
            Demo("r1", "Date: 03/04/2021 TOTAL 12.50", {"date": "2021-04-03", "total": 12.5, "items": []})
        ],
    )
    select = LongDocStrategy(kind="select", max_input_tokens=900, chunk_tokens=300, overlap_tokens=30)
    mapped = LongDocStrategy(kind="map_merge", max_input_tokens=500, chunk_tokens=400, merge="majority")
    long_text = long_nda()
    return {
        "short": (nda, "NDA between A and B, governed by Ohio law."),
        "short_with_demo": (nda.replace(demos=[demo]), "NDA between A and B."),
        "garbage": (nda, "GARBAGE please"),
        "formats": (receipt, RECEIPT_TEXT),
        "select": (nda.replace(strategy=select), long_text),
        "select_with_demo": (nda.replace(strategy=select, demos=[demo]), long_text),
        "truncate": (nda.replace(strategy=LongDocStrategy(kind="truncate", max_input_tokens=200)), long_text),
        "map_merge": (nda.replace(strategy=mapped), long_text),
        "map_merge_one_bad_chunk": (
            nda.replace(strategy=mapped),
            long_text.replace("clause300 ", "GARBAGE "),
        ),
        "map_merge_one_unavailable": (
            nda.replace(strategy=mapped),
            long_text.replace("clause300 ", "UNAVAILABLE "),
        ),
        "unavailable": (nda, "UNAVAILABLE now"),
        "map_merge_all_bad": (
            nda.replace(strategy=mapped),
            "GARBAGE " + long_text.replace("clause", "GARBAGE"),
        ),
    }


Extract = Callable[[ExtractionProgram, str, Any], tuple[dict | None, Any]]


def run_cases(extract: Extract) -> dict[str, Any]:
    """Each case's requests, record and trace (latency dropped: it is the only unstable part)."""
    out: dict[str, Any] = {}
    for name, (program, text) in cases().items():
        client = RecordingLM()
        record, trace = extract(program, text, client)
        trace_dict = {k: v for k, v in trace.to_dict().items() if k != "latency_s"}
        out[name] = {
            "program_hash": program.hash,
            "record": record,
            "trace": trace_dict,
            "requests": client.requests,
        }
    return out
