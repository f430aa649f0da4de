"""Issue 16, the read path: only regular files inside the corpus or dataset folder are read, under a
size cap and a time limit, in every mode; everything else is reported per file or row with its
reason and is never opened. Every hostile file is built here, in the test's own folder."""

from __future__ import annotations

import builtins
import io
import json
import logging
import os
import socket
import time
import zipfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ieflow.documents.source import ReadRules
from ieflow.ingest import IngestOptions, hash_files, run_ingest
from tests.reliability.helpers import files_containing

SECRET = "TOP-SECRET-CANARY-7f3a"
pytestmark = pytest.mark.timeout(300)  # a pipe that is opened, or /dev/zero read, would hang here


def spy_opens(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """From now on, the real paths this process opens by name (os.open, open), for asserting
    what was read. Started after the test has written its files."""
    seen: set[str] = set()
    real_os_open, real_open = os.open, builtins.open

    def note(path: Any) -> None:
        if isinstance(path, str | bytes | os.PathLike):
            seen.add(os.path.realpath(os.fsdecode(path)))

    def spy_os_open(path: Any, *args: Any, **kwargs: Any) -> int:
        note(path)
        return real_os_open(path, *args, **kwargs)

    def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        note(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    return seen


def _outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text(f"{SECRET}\n")
    return folder


def _hostile_corpus(tmp_path: Path) -> tuple[Path, list[str]]:
    """A corpus with one good file and every kind of thing that must not be read; the forbidden
    real paths."""
    outside = _outside(tmp_path)
    corpus = tmp_path / "c"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "good.txt").write_text("Purchase order 1\nTotal: 10.00\n")
    (corpus / "sub" / "real.txt").write_text("Purchase order 2\nTotal: 20.00\n")
    (corpus / "inside.txt").symlink_to(corpus / "sub" / "real.txt")
    (corpus / "passwd.txt").symlink_to("/etc/passwd")
    (corpus / "secret.txt").symlink_to(outside / "secret.txt")
    (corpus / "zero.txt").symlink_to("/dev/zero")
    (corpus / "outdir").symlink_to(outside, target_is_directory=True)
    os.mkfifo(corpus / "pipe.txt")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(corpus / "s.sock"))
    server.close()  # the socket file stays
    (corpus / "big.txt").write_text("x" * 5000)
    forbidden = [str(outside / "secret.txt"), "/etc/passwd", "/dev/zero", str(corpus / "pipe.txt")]
    return corpus, [*forbidden, str(corpus / "s.sock"), str(corpus / "big.txt"), str(outside)]


HOSTILE_REASONS = {
    "good.txt": ("ok", None),
    "inside.txt": ("error", "a symbolic link (or a path through one); not followed, not read"),
    "passwd.txt": ("error", "a symbolic link to a path outside the folder"),
    "secret.txt": ("error", "a symbolic link to a path outside the folder"),
    "zero.txt": ("error", "a symbolic link to a path outside the folder"),
    "outdir": ("error", "a symbolic link to a path outside the folder"),
    "pipe.txt": ("error", "a named pipe (FIFO), not a regular file; not read"),
    "s.sock": ("error", "a socket, not a regular file; not read"),
    "big.txt": ("error", "file is 5,000 bytes, over the size cap of 2,000 bytes (max_file_mb); not read"),
}


def _statuses(out: Path) -> dict[str, tuple[str, str | None]]:
    docs = pl.read_parquet(out / "documents.parquet")
    return {row["file_name"]: (row["status"], row["error"]) for row in docs.iter_rows(named=True)}


@pytest.mark.parametrize("workers", [0, 1])
def test_ingest_reads_only_regular_files_inside_the_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    corpus, forbidden = _hostile_corpus(tmp_path)
    opened = spy_opens(monkeypatch)
    out = tmp_path / "out"
    started = time.perf_counter()
    summary = run_ingest(
        str(corpus), str(out), options=IngestOptions(max_file_mb=0.002, file_timeout_s=60), workers=workers
    )
    assert time.perf_counter() - started < 120
    statuses = _statuses(out)
    assert set(statuses) == {*HOSTILE_REASONS, "real.txt"}  # nothing lost
    for name, (status, reason) in HOSTILE_REASONS.items():
        assert statuses[name][0] == status, (name, statuses[name])
        assert reason is None or (statuses[name][1] or "").startswith(reason), (name, statuses[name])
    assert statuses["real.txt"][0] == "ok"
    assert summary.status_counts == {"ok": 2, "empty": 0, "error": 8}
    assert sorted(e["uri"].rsplit("/", 1)[-1] for e in summary.errors) == sorted(
        name for name, (status, _) in HOSTILE_REASONS.items() if status == "error"
    )
    assert not opened & set(forbidden), sorted(opened & set(forbidden))
    assert str(corpus / "good.txt") in opened  # the spy sees this process's reads
    assert files_containing(out, SECRET) == [] and files_containing(out, "root:x:0:0") == []


@pytest.mark.slow
def test_the_ingest_flow_reads_only_regular_files_inside_the_corpus(
    tmp_path: Path, prefect_harness: None
) -> None:
    """The Prefect flow hashes in a task and parses in tasks on a worker pool: the same rules."""
    from ieflow_flows.ingest import IngestParams, ingest

    corpus, _ = _hostile_corpus(tmp_path)
    out = tmp_path / "out"
    params = IngestParams(
        source=str(corpus), out=str(out), workers=1, max_file_mb=0.002, cache_dir=str(tmp_path / "cache")
    )
    summary = ingest(params)
    statuses = _statuses(out)
    for name, (status, reason) in HOSTILE_REASONS.items():
        assert statuses[name][0] == status, (name, statuses[name])
        assert reason is None or (statuses[name][1] or "").startswith(reason), (name, statuses[name])
    assert summary["status_counts"] == {"ok": 2, "empty": 0, "error": 8}
    assert files_containing(out, SECRET) == [] and files_containing(tmp_path / "cache", SECRET) == []


def test_follow_symlinks_reads_links_that_stay_inside_and_no_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, forbidden = _hostile_corpus(tmp_path)
    opened = spy_opens(monkeypatch)
    out = tmp_path / "out"
    options = IngestOptions(max_file_mb=0.002, follow_symlinks=True)
    run_ingest(str(corpus), str(out), options=options, workers=0)
    docs = pl.read_parquet(out / "documents.parquet")
    linked = docs.filter(pl.col("source_uris").list.contains(str(corpus / "inside.txt")))
    assert linked["status"].to_list() == ["ok"] and "Purchase order 2" in linked["text"][0]
    statuses = _statuses(out)
    for name in ("passwd.txt", "secret.txt", "zero.txt", "outdir"):
        assert statuses[name] == ("error", f"a symbolic link to a path outside the folder {corpus}; not read")
    assert not opened & set(forbidden)
    assert files_containing(out, SECRET) == []


def test_hashing_stops_at_the_size_cap_and_the_deadline(tmp_path: Path) -> None:
    path = tmp_path / "three_mb.txt"
    path.write_bytes(b"a" * 3_000_000)
    [slow] = hash_files([str(path)], rules=ReadRules(timeout_s=1e-6))
    assert slow.sha256 is None and slow.error == "reading took longer than 1e-06 s (file_timeout_s); skipped"
    [capped] = hash_files([str(path)], rules=ReadRules(max_bytes=1_000_000))
    assert (
        capped.error
        == "file is 3,000,000 bytes, over the size cap of 1,000,000 bytes (max_file_mb); not read"
    )
    [fine] = hash_files([str(path)], rules=ReadRules())
    assert fine.error is None and fine.size == 3_000_000


def many_paragraphs_docx(path: Path, paragraphs: int) -> Path:
    """A small DOCX (zip) that expands into `paragraphs` paragraphs: slow to parse, cheap to build."""
    body = "<w:p><w:r><w:t>Line of text</w:t></w:r></w:p>" * paragraphs
    namespace = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
            'package/2006/content-types"><Default Extension="rels" ContentType="application/'
            'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            'ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType='
            '"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.'
            'org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
            'openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
            'Target="word/document.xml"/></Relationships>'
        ),
        "word/document.xml": (
            f'<?xml version="1.0"?><w:document {namespace}><w:body>{body}</w:body></w:document>'
        ),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return path


def test_the_time_limit_holds_with_workers_0(tmp_path: Path) -> None:
    """In-process parsing runs on the caller's threads, where SIGALRM cannot reach."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    many_paragraphs_docx(corpus / "long.docx", 200_000)
    (corpus / "ok.txt").write_text("fine\n")
    started = time.perf_counter()
    run_ingest(str(corpus), str(tmp_path / "out"), options=IngestOptions(file_timeout_s=1), workers=0)
    assert time.perf_counter() - started < 60
    statuses = _statuses(tmp_path / "out")
    assert statuses["long.docx"] == ("error", "parsing took longer than 1 s (file_timeout_s); skipped")
    assert statuses["ok.txt"][0] == "ok"


def test_deeply_nested_html_is_an_error_with_the_parser_limit(tmp_path: Path) -> None:
    from ieflow.documents.parse import parse_file

    path = tmp_path / "deep.html"
    path.write_text("<html><body>" + "<div>" * 100_000 + "Deep text" + "</div>" * 100_000 + "</body></html>")
    doc = parse_file(path)
    assert doc.status == "error"
    assert doc.error == (
        "HTML beyond the parser's limits (Excessive depth in document: 256): "
        "its text cannot be extracted in full; not parsed"
    )
    shallow = tmp_path / "shallow.html"
    shallow.write_text("<html><body>" + "<div>" * 100 + "Deep text" + "</div>" * 100 + "</body></html>")
    assert parse_file(shallow).text == "Deep text"


# -- extract-file ---------------------------------------------------------------------------------


def _extract_file(*args: str) -> Any:
    from typer.testing import CliRunner

    from ieflow_cli import main as cli
    from tests.reliability.helpers import PO_SCHEMA

    return CliRunner().invoke(cli.app, ["extract-file", *args, "--schema", str(PO_SCHEMA)])


def test_extract_file_reads_under_the_time_limit_and_the_size_cap(tmp_path: Path) -> None:
    long_docx = many_paragraphs_docx(tmp_path / "long.docx", 200_000)
    started = time.perf_counter()
    result = _extract_file(str(long_docx), "--file-timeout", "1")
    assert time.perf_counter() - started < 60
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: cannot read {long_docx}: parsing took longer than 1 s (file_timeout_s); skipped"
    )
    big = tmp_path / "big.txt"
    big.write_text("y" * 5000)
    result = _extract_file(str(big), "--max-file-mb", "0.001")
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: cannot read {big}: file is 5,000 bytes, over the size cap of 1,000 bytes "
        "(max_file_mb); not read"
    )


def test_extract_file_never_opens_a_pipe_or_a_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    opened = spy_opens(monkeypatch)
    for name, reason in [
        ("pipe.txt", "a named pipe (FIFO), not a regular file; not read"),
        ("zero.txt", "a character device, not a regular file; not read"),
    ]:
        result = _extract_file(str(tmp_path / name))
        assert result.exit_code == 2
        assert result.output.strip() == f"error: cannot read {tmp_path / name}: {reason}"
    assert not opened & {str(tmp_path / "pipe.txt"), "/dev/zero"}


# -- label files ----------------------------------------------------------------------------------


def _hostile_dataset(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """A receipts dataset: 16 good rows, then rows whose `file` must never be read; the reason
    expected for each bad row, by line."""
    from tests.reliability.helpers import RECEIPT_SCHEMA, make_receipts

    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    # Shaped like a receipt, so that if it leaked, the run would go on and carry it everywhere.
    secret.write_text(f"Receipt\n{SECRET}\nDate: 01/02/2021\nTOTAL: 9.50")
    root = tmp_path / "ds"
    (root / "documents").mkdir(parents=True)
    (root / "schema.json").write_text(json.dumps(RECEIPT_SCHEMA))
    rows = []
    for i, example in enumerate(make_receipts(16)):
        (root / "documents" / f"{example.doc_id}.txt").write_text(f"Receipt\n{example.text}")
        split = "train" if i < 8 else "dev"
        rows.append({"doc_id": example.doc_id, "file": f"documents/{example.doc_id}.txt", "split": split})
        rows[-1]["record"] = example.gold
    gold = make_receipts(1)[0].gold
    (root / "documents" / "link.txt").symlink_to(secret)
    latin1 = "Receipt\nCaf\xe9 1\nDate: 01/02/2021\nTOTAL: 1.50"
    (root / "documents" / "latin1.txt").write_bytes(latin1.encode("latin-1"))
    os.mkfifo(root / "documents" / "pipe.txt")
    not_read = "; not read"
    hostile = {
        "../outside/secret.txt": "'file' '../outside/secret.txt' leads outside the dataset folder" + not_read,
        # Names are shown up to 80 characters (a label file may hold a name of any length).
        str(secret): f"'file' {str(secret)[:80]!r} is an absolute path, not one inside the dataset folder"
        + not_read,
        "documents/link.txt": (
            f"document documents/link.txt: a symbolic link to a path outside the folder {root}" + not_read
        ),
        "documents/missing.txt": "document file not found: documents/missing.txt",
        "documents/latin1.txt": (
            "document could not be parsed: text is not UTF-8 (invalid byte 0xe9 at offset 11); "
            "re-save it as UTF-8"
        ),
        "documents/pipe.txt": "document documents/pipe.txt: a named pipe (FIFO), not a regular file"
        + not_read,
    }
    expected = {}
    for i, (file_name, reason) in enumerate(hostile.items()):
        rows.append({"doc_id": f"bad{i}", "file": file_name, "split": "train", "record": gold})
        expected[len(rows)] = reason
    (root / "labels.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root, expected


def test_label_rows_naming_files_outside_are_reported_and_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from ieflow.datasets import load_corpus

    root, expected = _hostile_dataset(tmp_path)
    opened = spy_opens(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="ieflow"):
        corpus = load_corpus(root)
    assert {e.line: e.reason for e in corpus.errors} == expected
    assert len(corpus.examples) == 16 and all(ex.doc_id.startswith("d") for ex in corpus.examples)
    assert not opened & {str(tmp_path / "outside" / "secret.txt"), str(root / "documents" / "pipe.txt")}
    assert SECRET not in json.dumps([ex.text for ex in corpus.examples])
    warned = [r.getMessage() for r in caplog.records if r.name == "ieflow.labels"]
    assert warned == [
        f"{root / 'labels.jsonl'} line {line} (bad{i}): {reason}; row skipped"
        for i, (line, reason) in enumerate(expected.items())
    ]


def test_split_labels_refuse_paths_that_leave_the_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ieflow.labels import load_labels

    root, expected = _hostile_dataset(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ieflow"):
        records, errors = load_labels(root / "labels.jsonl", root / "schema.json")
    lexical = {line: reason for line, reason in expected.items() if reason.startswith("'file'")}
    assert {e.line: e.reason for e in errors} == lexical  # the rest are checked where files are read
    assert len(records) == 16 + len(expected) - len(lexical)
    assert len([r for r in caplog.records if r.name == "ieflow.labels"]) == len(lexical)


def test_an_optimizer_run_never_sees_a_file_outside_the_dataset(tmp_path: Path) -> None:
    """The labels' hostile rows must not reach model requests, checkpoints, ledgers or results."""
    from ieflow.optimize import Budget
    from ieflow.optimize.gepa import GEPA, GEPAConfig
    from ieflow.optimize.split_scoring import load_split_examples
    from ieflow.program import ExtractionProgram
    from tests.support.scripted_lm import ScriptedLM
    from tests.test_gepa import reflector, student

    root, _ = _hostile_dataset(tmp_path)
    schema, splits = load_split_examples(root)
    student_lm, reflector_lm = ScriptedLM(student), ScriptedLM(reflector, "scripted/reflector")
    run_dir = tmp_path / "run"
    optimizer = GEPA(
        GEPAConfig(minibatch_size=3, merge_every=0),
        run_dir=run_dir,
        reflection_model=reflector_lm,
        student_client=student_lm,
        seed=1,
    )
    program = ExtractionProgram.from_schema(schema, model="scripted/lm")
    result = optimizer.compile(program, splits["train"], splits["val"], Budget(max_metric_calls=30))
    assert student_lm.calls and reflector_lm.calls  # the run did call the models
    assert SECRET not in json.dumps([student_lm.calls, reflector_lm.calls])
    assert files_containing(run_dir, SECRET) == []
    assert files_containing(run_dir, "Receipt")  # the grep does see document text in the run's files
    assert SECRET not in json.dumps(result.best_program.to_dict())
