"""Corpus ingestion: the plain pipeline (`ieflow.ingest`), the CLI function and the Prefect flow."""

from __future__ import annotations

import os
import shutil
import signal
import time
from bisect import bisect_right
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import ieflow  # noqa: F401  (offline env defaults first)
from ieflow.ingest import IngestOptions, ParserPool, process_file, run_ingest
from ieflow.ingest import run as ingest_run
from tests.test_ingest_parse import BAD, make_blank_pdf, make_pdf

BAD_REASONS = {
    "corrupt.pdf": "PDF is corrupt",
    "truncated.pdf": "PDF is truncated",
    "junk.pdf": "not a PDF",
    "empty.txt": "file is empty",
    "zero_pages.pdf": "PDF has no pages",
    "latin1.txt": "not UTF-8",
    "notes.xyz": "unsupported file type",
    "encrypted.pdf": "needs a password",
    "binary.txt": "binary content",
    "broken.docx": "not a readable DOCX",
    "broken.png": "not a readable image",
    "huge.pdf": "over the page limit of 50",
}


def build_corpus(root: Path) -> Path:
    """Good documents (one duplicated under a second name), the bad corpus and a long PDF."""
    corpus = root / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "nda.pdf").write_bytes(
        make_pdf(
            [
                "MUTUAL NON-DISCLOSURE AGREEMENT\nBetween ACME Inc. and Bob Ltd.",
                "This agreement is governed by the laws of Oregon.",
            ]
        )
    )
    (corpus / "sub" / "copy-of-nda.pdf").write_bytes((corpus / "nda.pdf").read_bytes())
    (corpus / "receipt.txt").write_text("SHOP SDN BHD\nTOTAL 12.00\n")
    (corpus / "page.html").write_text("<h1>Invoice 7</h1><p>The customer agreed to pay 30 EUR.</p>")
    (corpus / ".DS_Store").write_bytes(b"\x00hidden litter")
    (corpus / ".git").mkdir()
    (corpus / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    for path in BAD.iterdir():
        shutil.copy(path, corpus / path.name)
    (corpus / "huge.pdf").write_bytes(make_blank_pdf(60))
    return corpus


def options(**overrides: Any) -> IngestOptions:
    return IngestOptions(max_pages=50, target_tokens=64, overlap_tokens=8, **overrides)


def check_outputs(
    out: Path, corpus: Path, n_good: int = 3, reasons: dict[str, str] = BAD_REASONS
) -> tuple[pl.DataFrame, pl.DataFrame]:
    docs = pl.read_parquet(out / "documents.parquet")
    chunks = pl.read_parquet(out / "chunks.parquet")
    names = set(docs["file_name"])
    assert ".DS_Store" not in names and "copy-of-nda.pdf" not in names
    assert docs["doc_id"].is_unique().all() and len(docs) == len(BAD_REASONS) + n_good
    by_name = {row["file_name"]: row for row in docs.iter_rows(named=True)}
    nda = by_name["nda.pdf"]
    assert nda["source_uris"] == [str(corpus / "nda.pdf"), str(corpus / "sub" / "copy-of-nda.pdf")]
    assert (nda["status"], nda["method"], nda["n_pages"]) == ("ok", "text_layer", 2)
    assert len(nda["page_offsets"]) == 2 and nda["page_offsets"][0] == 0  # where each page starts
    assert by_name["receipt.txt"]["method"] == "plain"
    assert by_name["page.html"]["method"] == "unstructured"
    for name, reason in reasons.items():
        assert by_name[name]["status"] == "error", name
        assert reason in by_name[name]["error"], (name, by_name[name]["error"])
    ok_ids = set(docs.filter(pl.col("status") == "ok")["doc_id"])
    assert set(chunks["doc_id"]) == ok_ids
    texts = dict(zip(docs["doc_id"], docs["text"], strict=True))
    pages = dict(zip(docs["doc_id"], docs["page_offsets"], strict=True))
    for row in chunks.iter_rows(named=True):
        assert texts[row["doc_id"]][row["char_start"] : row["char_end"]] == row["text"]
        assert row["n_tokens"] <= 64
        # The page offsets place each chunk on the page the chunker gave it.
        assert bisect_right(pages[row["doc_id"]], row["char_start"]) == row["page_start"]
    return docs, chunks


def test_run_ingest_writes_both_tables_and_is_incremental(tmp_path: Path) -> None:
    corpus, out = build_corpus(tmp_path), tmp_path / "out"
    summary = run_ingest(str(corpus), str(out), options=options(), workers=0)
    docs, _ = check_outputs(out, corpus)
    assert summary.n_files == len(BAD_REASONS) + 4
    assert summary.status_counts == {"ok": 3, "empty": 0, "error": len(BAD_REASONS)}
    assert summary.n_parsed == len(docs)
    assert {e["uri"].rsplit("/", 1)[-1] for e in summary.errors} == set(BAD_REASONS)
    first = (out / "documents.parquet").read_bytes()

    # Same corpus again: only the (quick) error rows are parsed again; same bytes out.
    again = run_ingest(str(corpus), str(out), options=options(), workers=0)
    assert again.n_parsed == len(BAD_REASONS)
    assert (out / "documents.parquet").read_bytes() == first
    # One new file: parsed alone. Other options: everything again.
    (corpus / "new.txt").write_text("A new receipt.\n")
    assert run_ingest(str(corpus), str(out), options=options(), workers=0).n_parsed == len(BAD_REASONS) + 1
    assert run_ingest(str(corpus), str(out), options=options(ocr=False), workers=0).n_parsed == len(docs) + 1
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries behind


def test_worker_processes_give_the_same_tables(tmp_path: Path) -> None:
    corpus = build_corpus(tmp_path)
    for path in corpus.glob("*.htm*"):  # unstructured takes seconds to import in each worker
        path.unlink()
    (corpus / "broken.docx").unlink()
    run_ingest(str(corpus), str(tmp_path / "inline"), options=options(), workers=0)
    summary = run_ingest(str(corpus), str(tmp_path / "pool"), options=options(), workers=2)
    assert summary.status_counts["ok"] == 2
    for name in ("documents.parquet", "chunks.parquet"):
        assert pl.read_parquet(tmp_path / "pool" / name).equals(pl.read_parquet(tmp_path / "inline" / name))


def test_glob_and_file_url_sources(tmp_path: Path) -> None:
    corpus = build_corpus(tmp_path)
    summary = run_ingest(f"{corpus}/**/*.pdf", str(tmp_path / "a"), options=options(), workers=0)
    assert summary.n_files == 8  # nda, its copy, corrupt, truncated, junk, zero_pages, encrypted, huge
    url = run_ingest(f"file://{corpus}/sub", str(tmp_path / "b"), options=options(), workers=0)
    assert (url.n_files, url.status_counts["ok"]) == (1, 1)
    with pytest.raises(FileNotFoundError):
        run_ingest(str(tmp_path / "nowhere"), str(tmp_path / "c"), workers=0)


def test_fsspec_url_source_and_output() -> None:
    """Any fsspec URL works for input and output: the same code path as s3:// or gs://."""
    import fsspec

    from ieflow import storage

    fs = fsspec.filesystem("memory")
    fs.pipe("/ieflow-test/corpus/a.txt", b"hello receipt\n")
    fs.pipe("/ieflow-test/corpus/sub/b.pdf", make_pdf(["A PDF kept in memory."]))
    try:
        summary = run_ingest("memory://ieflow-test/corpus", "memory://ieflow-test/out", workers=0)
        assert summary.status_counts == {"ok": 2, "empty": 0, "error": 0}
        docs = storage.read_parquet("memory://ieflow-test/out/documents.parquet")
        assert sorted(docs["source_uri"]) == [
            "memory:///ieflow-test/corpus/a.txt",
            "memory:///ieflow-test/corpus/sub/b.pdf",
        ]
        assert "A PDF kept in memory." in docs.filter(pl.col("file_name") == "b.pdf")["text"][0]
    finally:
        fs.rm("/ieflow-test", recursive=True)


def test_file_vanishing_mid_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "stays.txt").write_text("still here\n")
    (corpus / "goes.txt").write_text("about to vanish\n")
    hash_files = ingest_run.hash_files

    def hash_then_delete(uris: list[str], *args: Any, **kwargs: Any) -> list[Any]:
        refs = hash_files(uris, *args, **kwargs)
        (corpus / "goes.txt").unlink()  # after discovery and hashing, before parsing
        return refs

    monkeypatch.setattr(ingest_run, "hash_files", hash_then_delete)
    summary = run_ingest(str(corpus), str(tmp_path / "out"), workers=0)
    assert summary.status_counts == {"ok": 1, "empty": 0, "error": 1}
    assert "removed or renamed" in summary.errors[0]["error"]


def test_time_limit_and_transient_errors(tmp_path: Path) -> None:
    path = tmp_path / "slow.pdf"
    path.write_bytes(make_pdf(["A line of text that takes time to lay out. " * 4] * 400))
    result = process_file(str(path), IngestOptions(file_timeout_s=0.05))
    assert result["transient"] and "longer than 0.05 s" in result["document"]["error"], result["document"]
    assert process_file(str(path), IngestOptions(max_pages=10))["transient"] is False


def test_pool_survives_a_dead_worker(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("fine\n")
    with ParserPool(1) as pool:
        assert pool.run(str(good), IngestOptions())["document"]["status"] == "ok"
        for pid in list(pool._executor._processes):  # simulate the OOM killer
            os.kill(pid, signal.SIGKILL)
        result = pool.run(str(good), IngestOptions())
        assert result["document"]["status"] == "ok"  # retried alone in a fresh process
        assert pool.run(str(good), IngestOptions())["document"]["status"] == "ok"  # new pool


def test_cli_function(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from ieflow_cli.ingest import ingest_command

    app = typer.Typer()
    app.command()(ingest_command)
    corpus = build_corpus(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            str(corpus),
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "0",
            "--max-pages",
            "50",
            "--fail-on-error",
        ],
    )
    assert result.exit_code == 1, result.output  # the bad corpus has errors
    assert (tmp_path / "out" / "documents.parquet").exists()
    assert "Ingest summary" in result.output


# --- the Prefect flow ---------------------------------------------------------------------------


@pytest.mark.slow
def test_ingest_flow(tmp_path: Path, prefect_harness: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.utilities.callables import parameter_schema

    from ieflow_flows.ingest import IngestParams, ingest

    corpus, out = build_corpus(tmp_path), tmp_path / "out"
    (corpus / "locked.pdf").write_bytes(
        make_pdf(["Payroll: 1,234,567"], password="hunter22", user_password="hunter22")
    )
    params = IngestParams(
        source=str(corpus),
        out=str(out),
        workers=2,
        max_pages=50,
        target_tokens=64,
        overlap_tokens=8,
        pdf_password="hunter22",
        cache_dir=str(tmp_path / "cache"),
    )
    summary = ingest(params)
    docs, _ = check_outputs(
        out, corpus, n_good=4, reasons={**BAD_REASONS, "encrypted.pdf": "password given is wrong"}
    )
    locked = docs.filter(pl.col("file_name") == "locked.pdf")
    assert locked["status"][0] == "ok" and "1,234,567" in locked["text"][0]
    assert summary["status_counts"] == {"ok": 4, "empty": 0, "error": len(BAD_REASONS)}
    assert summary["n_parsed"] == len(docs)
    assert b"hunter22" not in (out / "documents.parquet").read_bytes()
    assert not any(b"hunter22" in p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
        runs = client.read_flow_runs()
    assert runs and not any("hunter22" in str(run.parameters) for run in runs)
    markdown = next(a for a in artifact if a.key == "ingest-summary").data
    assert "# Ingest summary" in markdown and "PDF is truncated" in markdown
    assert "hunter22" not in markdown

    # Second run: nothing parsed (errors cached too); one new file: one parse.
    assert ingest(params)["n_parsed"] == 0
    (corpus / "new.md").write_text("# New\n\nA paragraph that was added later.\n")
    assert ingest(params)["n_parsed"] == 1

    schema = parameter_schema(ingest).model_dump()
    fields = schema["definitions"]["IngestParams"]["properties"]
    assert {"source", "out", "workers", "max_pages", "ocr", "target_tokens"} <= set(fields)
    with pytest.raises(ValueError):
        IngestParams(source="x", out="y", target_tokens=64, overlap_tokens=64)


def test_largest_files_are_parsed_first() -> None:
    from ieflow.ingest import FileRef, largest_first

    groups = {"a": [FileRef("a", size=5)], "b": [FileRef("b", size=50)], "c": [FileRef("c")]}
    assert largest_first(groups) == ["b", "a", "c"]
    assert largest_first(groups, ["c", "a"]) == ["a", "c"]


def test_time_limit_in_a_thread_fires_and_leaves_nothing_behind() -> None:
    """Off the main thread the limit is an asynchronous exception: it must stop a pure-Python loop,
    and a block that ends in time must not get a late one."""
    from concurrent.futures import ThreadPoolExecutor

    from ieflow.ingest import FileTimeout, time_limit

    def spin() -> str:
        try:
            with time_limit(0.2):
                while True:
                    pass
        except FileTimeout as exc:
            return str(exc)

    def quick_then_wait() -> str:
        with time_limit(0.2):
            total = sum(range(1000))
        time.sleep(1.5)  # past the limit and one re-fire: nothing may arrive now
        return f"done {total}"

    with ThreadPoolExecutor(1) as pool:
        assert (
            pool.submit(spin).result(timeout=30) == "parsing took longer than 0.2 s (file_timeout_s); skipped"
        )
        assert pool.submit(quick_then_wait).result(timeout=30) == "done 499500"
