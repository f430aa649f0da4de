"""documents.parquet and chunks.parquet: their columns, their rows from parse results, writing
them, and reading an earlier run's back (to skip re-parsing)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ieflow.ingest.files import FileRef

if TYPE_CHECKING:
    import polars as pl

# Column: polars dtype name (polars is imported lazily: worker processes never need it).
DOCUMENT_COLUMNS = {
    "doc_id": "String",
    "sha256": "String",
    "source_uri": "String",
    "source_uris": "List[String]",
    "file_name": "String",
    "size_bytes": "Int64",
    "n_pages": "Int32",
    "n_chars": "Int64",
    "method": "String",
    "status": "String",
    "error": "String",
    "ocr_pages": "List[Int32]",
    "warnings": "List[String]",
    "parse_options": "String",
    "text": "String",
    "page_offsets": "List[Int64]",  # start of each page in `text`: where grounded values are
}
CHUNK_COLUMNS = {
    "doc_id": "String",
    "chunk_id": "String",
    "chunk_index": "Int32",
    "page_start": "Int32",
    "page_end": "Int32",
    "char_start": "Int64",
    "char_end": "Int64",
    "n_tokens": "Int32",
    "text": "String",
}


def assemble(
    groups: dict[str, list[FileRef]], results: dict[str, dict[str, Any]], unreadable: list[FileRef]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Document and chunk rows from per-content results (sha256 -> process_file result)."""
    documents, chunks = [], []
    for sha, refs in sorted(groups.items(), key=lambda item: item[1][0].uri):
        result, first = results[sha], refs[0]
        doc_id = first.doc_id
        documents.append(
            {
                **result["document"],
                "doc_id": doc_id,
                "sha256": sha,
                "size_bytes": first.size,
                "source_uri": first.uri,
                "source_uris": [r.uri for r in refs],
                "file_name": first.name,
            }
        )
        for chunk in result["chunks"]:
            chunks.append(
                {
                    **chunk,
                    "doc_id": doc_id,
                    "chunk_index": chunk["index"],
                    "chunk_id": f"{doc_id}-{chunk['index']:04d}",
                }
            )
    for ref in unreadable:
        documents.append(
            {
                "doc_id": ref.doc_id,
                "sha256": None,
                "source_uri": ref.uri,
                "source_uris": [ref.uri],
                "file_name": ref.name,
                "size_bytes": None,
                "n_pages": 0,
                "n_chars": 0,
                "method": None,
                "status": "error",
                "error": ref.error,
                "ocr_pages": [],
                "warnings": [],
                "parse_options": None,
                "text": "",
                "page_offsets": [],
            }
        )
    return documents, chunks


def to_frames(
    documents: list[dict[str, Any]], chunks: list[dict[str, Any]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    import polars as pl

    def schema(columns: dict[str, str]) -> dict[str, Any]:
        return {
            name: pl.List(getattr(pl, kind[5:-1])) if kind.startswith("List[") else getattr(pl, kind)
            for name, kind in columns.items()
        }

    def frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pl.DataFrame:
        return pl.DataFrame([{k: row[k] for k in columns} for row in rows], schema=schema(columns))

    return frame(documents, DOCUMENT_COLUMNS), frame(chunks, CHUNK_COLUMNS)


def write_tables(documents: pl.DataFrame, chunks: pl.DataFrame, out: str) -> dict[str, str]:
    """Write both tables atomically (each file appears whole or not at all)."""
    from ieflow import storage

    paths = {
        "documents": storage.join(out, "documents.parquet"),
        "chunks": storage.join(out, "chunks.parquet"),
    }
    storage.write_parquet(chunks, paths["chunks"])
    storage.write_parquet(documents, paths["documents"])  # last: its presence marks a full run
    return paths


def load_previous(out: str, fingerprint: str) -> dict[str, dict[str, Any]]:
    """Results of an earlier run into `out` with the same options, by sha256 (to skip re-parsing)."""
    import polars as pl

    from ieflow import storage

    docs_url = storage.join(out, "documents.parquet")
    if not storage.exists(docs_url):
        return {}
    try:
        docs = storage.read_parquet(docs_url)
        chunks = storage.read_parquet(storage.join(out, "chunks.parquet"))
    except Exception:  # an unreadable old output is only a lost shortcut, never a failure
        return {}
    if "page_offsets" not in docs.columns:  # a table from before pages were kept: pages unknown
        docs = docs.with_columns(pl.lit(None, dtype=pl.List(pl.Int64)).alias("page_offsets"))
    # Errors are parsed again: they are quick, and some (a vanished file) may not recur.
    docs = docs.filter((docs["parse_options"] == fingerprint) & (docs["status"] != "error"))
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for row in chunks.sort("doc_id", "chunk_index").iter_rows(named=True):
        row["index"] = row["chunk_index"]
        by_doc.setdefault(row["doc_id"], []).append(row)
    return {
        row["sha256"]: {
            "document": row,
            "chunks": by_doc.get(row["doc_id"], []),
            "seconds": 0.0,
            "transient": False,
        }
        for row in docs.iter_rows(named=True)
    }
