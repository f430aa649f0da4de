"""Labelled corpora, label files (JSONL / CSV) with row errors, and deterministic splits."""

from __future__ import annotations

import json
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ieflow import datasets
from ieflow.datasets import holdout_split, load_corpus
from ieflow.labelfree.drafts import DraftRecord, human_row, teacher_row
from ieflow.labels import LabelError, load_labels, read_label_splits
from ieflow.splits import assign_splits, find_leaks

DATASETS = Path("/work/shared/datasets")
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "date": {"type": ["string", "null"], "format": "date"},
        "total": {"type": ["number", "null"]},
        "party": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["date", "total", "party"],
    "additionalProperties": False,
}
GOOD = {"date": "2020-01-02", "total": 3.5, "party": ["A"]}


def make_dataset(root: Path, rows: list[str], files: dict[str, str]) -> Path:
    (root / "documents").mkdir(parents=True)
    (root / "schema.json").write_text(json.dumps(SCHEMA))
    (root / "labels.jsonl").write_text("\n".join(rows) + "\n")
    for name, text in files.items():
        (root / "documents" / name).write_text(text)
    return root


def row(doc_id: object, record: object = GOOD, file: str = "documents/a.txt", split: str = "train") -> str:
    return json.dumps({"doc_id": doc_id, "file": file, "split": split, "record": record})


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IEFLOW_HOME", str(tmp_path / "home"))


def test_load_corpus_reports_bad_rows_and_keeps_good_ones(tmp_path: Path) -> None:
    rows = [
        row("a"),
        "{not json",
        row(None),
        row("a"),  # duplicate
        row("c", {**GOOD, "date": "02/01/2020"}),
        row("d", file="documents/missing.txt"),
        json.dumps([1, 2]),
        row("e", {"date": None, "total": None}, file="documents/e.txt", split="dev"),  # party absent
    ]
    root = make_dataset(tmp_path / "ds", rows, {"a.txt": "receipt A", "e.txt": "receipt E"})
    corpus = load_corpus(root)
    assert [ex.doc_id for ex in corpus.examples] == ["a"]
    reasons = {e.line: e.reason for e in corpus.errors}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8]
    assert reasons[2].startswith("invalid JSON")
    assert reasons[3] == "missing or empty doc_id"
    assert reasons[4] == "duplicate doc_id (first on line 1)"
    assert "'02/01/2020' is not a 'date'" in reasons[5]
    assert "document file not found" in reasons[6]
    assert "'party' is a required property" in reasons[8]  # arrays are not nullable: no fill
    example = corpus.examples[0]
    assert example.text == "receipt A" and example.split == "train" and len(example.content_hash or "") == 64
    assert corpus.by_split("train") == [example] and corpus.split_sizes() == {"train": 1}
    assert str(LabelError(3, None, "x")) == "line 3: x"


def test_label_rows_keep_their_source_and_agreement(tmp_path: Path) -> None:
    draft = DraftRecord("t", GOOD, agreement={"date": 1.0, "total": 0.5}, file="documents/a.txt")
    rows = [
        row("g"),
        json.dumps(teacher_row(draft).to_json()),
        json.dumps(human_row(draft, {**GOOD, "total": 4.0}).to_json() | {"doc_id": "h"}),
        json.dumps({"doc_id": "x", "file": "documents/a.txt", "record": GOOD, "source": "robot"}),
        json.dumps({"doc_id": "y", "file": "documents/a.txt", "record": GOOD, "agreement": {"total": 2}}),
    ]
    corpus = load_corpus(make_dataset(tmp_path / "ds", rows, {"a.txt": "receipt A"}))
    by_id = {ex.doc_id: ex for ex in corpus.examples}
    assert [(d, by_id[d].label_source) for d in "gth"] == [("g", "gold"), ("t", "teacher"), ("h", "human")]
    assert [e.reason for e in corpus.errors] == [
        "source must be one of gold, teacher, human, got 'robot'",
        "agreement must map fields to numbers between 0 and 1",
    ]
    assert by_id["t"].agreement == {"date": 1.0, "total": 0.5} and by_id["t"].gold == GOOD
    assert by_id["h"].gold["total"] == 4.0 and by_id["h"].agreement is None
    assert (
        not draft.needs_review
        and DraftRecord("p", GOOD, problems={"total": "not in the document"}).needs_review
    )


def test_absent_nullable_fields_become_null(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", [row("a", {"party": []})], {"a.txt": "x"})
    assert load_corpus(root).examples[0].gold == {"party": [], "date": None, "total": None}


def test_shared_sroie_loads_with_text_and_splits() -> None:
    corpus = load_corpus(DATASETS / "sroie", limit=20)
    assert len(corpus) == 20 and not corpus.errors
    assert all(ex.text.strip() and ex.split in ("train", "dev") for ex in corpus.examples)


def test_parsed_text_is_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def parse_file(path: Path, data: bytes | None = None) -> types.SimpleNamespace:
        calls.append(Path(path))
        return types.SimpleNamespace(text=f"parsed {Path(path).name}", status="ok", error=None)

    fake = types.ModuleType("ieflow.documents.parse")
    fake.parse_file = parse_file  # type: ignore[attr-defined]
    fake.PARSER_VERSION = "7"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ieflow.documents.parse", fake)
    monkeypatch.setattr(datasets, "_parser", lambda: fake)
    root = make_dataset(tmp_path / "ds", [row("a", file="documents/a.pdf")], {"a.pdf": "%PDF-fake"})
    first = load_corpus(root)
    second = load_corpus(root)
    assert first.examples[0].text == second.examples[0].text == "parsed a.pdf"
    assert len(calls) == 1
    sha = first.examples[0].content_hash
    assert (tmp_path / "home" / "text-cache" / "v7" / f"{sha}.txt").exists()

    fake.parse_file = lambda path, data=None: types.SimpleNamespace(
        text="", status="error", error="encrypted"
    )  # type: ignore[attr-defined]
    root2 = make_dataset(tmp_path / "ds2", [row("b", file="documents/b.pdf")], {"b.pdf": "other bytes"})
    broken = load_corpus(root2)
    assert broken.examples == [] and "encrypted" in broken.errors[0].reason


def test_load_labels_jsonl_both_shapes(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"doc_id": "a", "record": GOOD}),
                json.dumps({"doc_id": "b", **GOOD, "split": "val"}),
                json.dumps({"doc_id": "c", **GOOD, "bogus": 1}),
                "",
            ]
        )
    )
    records, errors = load_labels(path, SCHEMA)
    assert records == {"a": GOOD, "b": GOOD}
    assert errors[0].line == 3 and "bogus" in errors[0].reason
    assert read_label_splits(path) == {"b": "val"}


def test_load_labels_csv_columns_and_record_column(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        'doc_id,date,total,party,split\na,2020-01-02,3.5,A;B,train\nb,,,"[""X""]",\nc,2020-01-02,three,,\n'
    )
    records, errors = load_labels(path, SCHEMA)
    assert records == {"a": {**GOOD, "party": ["A", "B"]}, "b": {"date": None, "total": None, "party": ["X"]}}
    assert [(e.line, e.doc_id) for e in errors] == [(4, None)] and "expected a number" in errors[0].reason
    assert read_label_splits(path) == {"a": "train"}
    path2 = tmp_path / "record.csv"
    path2.write_text('doc_id,record\nz,"{""date"": null, ""total"": 1, ""party"": []}"\n')
    assert load_labels(path2, SCHEMA)[0] == {"z": {"date": None, "total": 1, "party": []}}
    with pytest.raises(ValueError, match=r"\.jsonl or \.csv"):
        load_labels(tmp_path / "labels.xlsx", SCHEMA)


def test_assign_splits_is_deterministic_and_follows_ratios() -> None:
    ids = [f"doc-{i}" for i in range(3000)]
    first = assign_splits(ids, seed=3)
    assert first == assign_splits(list(reversed(ids)), seed=3)
    counts = Counter(first.values())
    assert abs(counts["train"] / 3000 - 0.8) < 0.03 and abs(counts["test"] / 3000 - 0.1) < 0.02
    assert first != assign_splits(ids, seed=4)
    only = assign_splits(ids[:50], ratios={"train": 0, "val": 1, "test": 0})
    assert set(only.values()) == {"val"}
    with pytest.raises(ValueError, match="non-negative"):
        assign_splits(ids, ratios={"train": -1, "val": 1})


@settings(max_examples=60, deadline=None)
@given(
    st.sets(st.text(min_size=1, max_size=8), min_size=1, max_size=40),
    st.sets(st.text(min_size=1, max_size=8), max_size=40),
    st.integers(0, 5),
)
def test_adding_documents_never_moves_one(old: set[str], new: set[str], seed: int) -> None:
    before = assign_splits(sorted(old), seed=seed)
    after = assign_splits(sorted(old | new), seed=seed)
    assert all(after[d] == before[d] for d in old)


def test_same_content_same_split_and_existing_respected() -> None:
    ids = [f"d{i}" for i in range(200)]
    hashes = {d: f"h{i % 50}" for i, d in enumerate(ids)}  # four copies of each content
    result = assign_splits(ids, seed=1, content_hashes=hashes)
    assert find_leaks(result, hashes) == {}
    existing = {"d0": "test", "d7": "custom"}
    kept = assign_splits(ids, seed=1, content_hashes=hashes, existing=existing)
    assert kept["d0"] == "test" and kept["d7"] == "custom"
    assert kept["d50"] == kept["d100"] == "test"  # same content as d0 joins its split
    assert find_leaks({"a": "train", "b": "test"}, {"a": "h", "b": "h"}) == {
        "h": {"train": ["a"], "test": ["b"]}
    }


def test_stratified_splits_balance_each_stratum_and_keep_existing() -> None:
    ids = [f"d{i}" for i in range(400)]
    strata = {d: ("rare" if i % 20 == 0 else "common") for i, d in enumerate(ids)}
    result = assign_splits(ids, seed=0, strata=strata)
    rare = Counter(result[d] for d in ids if strata[d] == "rare")
    assert rare == {"train": 16, "val": 2, "test": 2}
    common = Counter(result[d] for d in ids if strata[d] == "common")
    assert common == {"train": 304, "val": 38, "test": 38}
    grown = [*ids, *(f"n{i}" for i in range(40))]
    strata.update({f"n{i}": "rare" for i in range(40)})
    again = assign_splits(grown, seed=0, strata=strata, existing=result)
    assert all(again[d] == result[d] for d in ids)
    assert Counter(again[d] for d in grown if strata[d] == "rare") == {"train": 48, "val": 6, "test": 6}


def test_holdout_split_turns_dev_into_val_and_test() -> None:
    corpus = load_corpus(DATASETS / "deepform_adbuy", with_text=False)
    held = holdout_split(corpus, seed=0)
    assert len(held.by_split("train")) == 140
    assert len(held.by_split("val")) + len(held.by_split("test")) == 60
    assert 15 <= len(held.by_split("val")) <= 45
    assert [ex.split for ex in holdout_split(corpus, seed=0).examples] == [ex.split for ex in held.examples]
    assert {ex.doc_id for ex in held.by_split("train")} == {ex.doc_id for ex in corpus.by_split("train")}
    with pytest.raises(ValueError):
        holdout_split(corpus, val_fraction=1.0)
