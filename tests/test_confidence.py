"""Per-field confidence from token log-probabilities: the weakest token of each value, or a reason."""

from __future__ import annotations

import math

from ieflow.confidence import TokenLogprob, field_confidence, logprobs_from_openai, value_spans


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
