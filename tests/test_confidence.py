"""Per-field confidence from token log-probabilities: the weakest token of each value, or a reason."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from ieflow.confidence import (
    TokenLogprob,
    confidence_by_leaf,
    field_confidence,
    logprobs_from_openai,
    merged_confidence,
    value_spans,
)
from ieflow.lm.token_logprobs import TokenLogprobRecorder


def _tokens(pieces: list[tuple[str, float]]) -> list[TokenLogprob]:
    return [TokenLogprob(t, lp, len(t.encode("utf-8"))) for t, lp in pieces]


def test_each_leaf_gets_the_probability_of_its_weakest_token() -> None:
    # Token pieces as the local 0.5B student wrote them for a receipt (logprobs measured there).
    pieces = [('{"', -5.67), ("company", -0.21), ('":"', -0.618), ("ABC", -0.011), (" HO", -0.179)]
    pieces += [(" TR", -0.236), ("ADING", -0.001), ('","', -0.153), ("total", -0.002), ('":', -0.103)]
    pieces += [("3", -0.008), ("1", -0.0), (".", -0.028), ("0", -0.0), ("0", -0.017), ("}", -0.018)]
    answer = "".join(t for t, _ in pieces)
    confidence = field_confidence(answer, _tokens(pieces))
    assert confidence.note is None
    assert confidence.values["company"] == round(math.exp(-0.236), 4)  # " TR", not the quotes around it
    assert confidence.values["total"] == round(math.exp(-0.028), 4)  # the "." of 31.00


def test_nested_paths_match_the_evidence_rows_and_nulls_are_left_out() -> None:
    answer = '{"lines": [{"name": "Widget", "amount": 1.5}, {"name": null}], "parties": ["Acme", "Beta"]}'
    spans = value_spans(answer)
    assert set(spans) == {"lines[0].name", "lines[0].amount", "parties[0]", "parties[1]"}
    start, end = spans["parties[1]"]
    assert answer[start:end] == "Beta"


def test_no_number_is_made_up_where_the_model_gave_none() -> None:
    assert field_confidence('{"a": 1}', None).note == "the model returned no token log-probabilities"
    assert field_confidence('{"a": 1}', _tokens([('{"a"', -0.1)])).values == {}
    assert (
        field_confidence("not json", _tokens([("not json", -0.1)])).note == "the answer is not a JSON object"
    )
    assert logprobs_from_openai(None) is None


def test_multibyte_characters_split_across_tokens_map_to_the_right_field() -> None:
    answer = '{"city": "Zürich"}'
    raw = answer.encode("utf-8")
    cut = raw.index("ü".encode()) + 1  # a token boundary inside the two bytes of ü
    tokens = [
        TokenLogprob("a", -0.01, cut),
        TokenLogprob("b", -2.0, 3),
        TokenLogprob("c", -0.01, len(raw) - cut - 3),
    ]
    assert field_confidence(answer, tokens).values["city"] == round(math.exp(-2.0), 4)
    items = [{"token": "x", "logprob": -0.5, "bytes": [120]}, {"token": "é", "logprob": -1.0, "bytes": None}]
    assert [t.n_bytes for t in logprobs_from_openai(items)] == [1, 2]


def test_merged_values_keep_the_confidence_of_the_chunk_they_came_from() -> None:
    records = [
        {"title": "NDA", "lines": [{"name": "a", "amount": 1}], "date": None},
        {"title": "NDA", "lines": [{"name": "b", "amount": 2}, {"name": "a", "amount": 1}], "date": "2020"},
    ]
    confidences = [
        {"title": 0.9, "lines[0].name": 0.8, "lines[0].amount": 0.7},
        {"title": 0.5, "lines[0].name": 0.4, "lines[0].amount": 0.3, "lines[1].name": 0.2, "date": 0.6},
    ]
    merged = {
        "title": "NDA",
        "lines": [{"name": "a", "amount": 1}, {"name": "b", "amount": 2}],
        "date": "2020",
    }
    assert merged_confidence(merged, records, confidences) == {
        "title": 0.9,  # the first chunk that holds the value
        "lines[0].name": 0.8,
        "lines[0].amount": 0.7,
        "lines[1].name": 0.4,  # item 0 of the second chunk, item 1 of the union
        "lines[1].amount": 0.3,
        "date": 0.6,
    }


def test_every_leaf_is_listed_with_none_and_the_clients_reason_when_there_are_no_logprobs() -> None:
    values, note = confidence_by_leaf('{"a": "x", "b": null, "c": [1]}', None, "cached before logprobs")
    assert values == {"a": None, "c[0]": None} and note == "cached before logprobs"


def test_the_llama_recorder_reads_each_token_once_it_has_been_evaluated() -> None:
    vocab = {7: b'{"', 8: b"a", 9: b'"}', 2: b""}
    logits = [
        np.log(np.array(p)) for p in ([0.1, 0.6, 0.3], [0.5, 0.25, 0.25], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05])
    ]
    chosen = [7, 8, 9, 2]  # the last one (end of text) is never evaluated
    recorder = TokenLogprobRecorder()
    ids = [1, 1, 1]  # the prompt
    for step, row in enumerate(logits):
        full = np.full(10, -np.inf, dtype=np.float32)
        full[[chosen[step], 0, 1] if chosen[step] > 1 else [2, 0, 1]] = row
        recorder(np.array(ids), full)
        ids.append(chosen[step])
    llama = SimpleNamespace(_input_ids=np.array(ids[:-1]), detokenize=lambda toks: vocab[toks[0]])
    items = recorder.openai_logprobs(llama, '{"a"}')
    assert [bytes(i["bytes"]) for i in items] == [b'{"', b"a", b'"}']
    assert [round(i["logprob"], 4) for i in items] == [round(math.log(p), 4) for p in (0.1, 0.5, 0.2)]
    assert recorder.openai_logprobs(llama, '{"a", "b"}') is None  # tokens that do not spell the text
