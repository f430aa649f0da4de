"""Shared pieces of the reliability suites: fake-server answers, corpora, optimizer runs, greps."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import polars as pl

import ieflow  # noqa: F401  (offline env defaults first)
from ieflow_testing.fake_server import last_user_text
from tests.support.receipts import SCHEMA as RECEIPT_SCHEMA
from tests.support.receipts import fake_models as receipt_models
from tests.support.receipts import make_examples as make_receipts

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "data" / "purchase_orders"
PO_SCHEMA = ROOT / "schemas" / "purchase_order.json"
GOLD = {
    json.loads(line)["doc_id"]: json.loads(line) for line in (PO / "labels.jsonl").read_text().splitlines()
}
PO_IDS = sorted(GOLD)
KEY_ENV = "IEFLOW_RELIABILITY_KEY"


def user_text(body: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")


def po_answer(body: dict[str, Any]) -> Any:
    """The gold purchase order named "[po-XXXX]" in the document (module level: picklable)."""
    text = user_text(body)
    doc = next((d for d in PO_IDS if f"[{d}]" in text), PO_IDS[0])
    return copy.deepcopy(GOLD[doc]["record"])


def po_text(source: str, marker: str = "") -> str:
    return f"[{source}] {marker}\n" + (PO / GOLD[source]["file"]).read_text(encoding="utf-8")


def make_po_documents(path: Path, n: int, marker: str = "", prefix: str = "doc") -> str:
    """documents.parquet with n purchase orders (cycling over the labelled ones)."""
    texts = {s: po_text(s, marker) for s in PO_IDS}
    ids = [f"{prefix}-{i:06d}" for i in range(n)]
    sources = [PO_IDS[i % len(PO_IDS)] for i in range(n)]
    pl.DataFrame(
        {
            "doc_id": ids,
            "sha256": [f"sha-{i}" for i in ids],
            "text": [texts[s] for s in sources],
            "status": ["ok"] * n,
            "error": [None] * n,
        },
        schema_overrides={"error": pl.String},
    ).write_parquet(path)
    return str(path)


def run_gepa(
    run_dir: Path,
    base_url: str,
    *,
    budget: int = 60,
    timeout_s: float = 2.0,
    max_retries: int = 8,
    api_key: str = "fake",
    max_steps: int | None = None,
    concurrency: int = 2,
) -> Any:
    """GEPA on the receipt task, both models served by the fake server at `base_url`."""
    from ieflow.lm import LMClient
    from ieflow.optimize import Budget
    from ieflow.optimize.gepa import GEPA, GEPAConfig
    from ieflow.program import ExtractionProgram

    def client(name: str, **params: Any) -> LMClient:
        return LMClient(
            f"openai/{name}",
            params=params,
            api_base=base_url,
            api_key=api_key,
            timeout_s=timeout_s,
            max_retries=max_retries,
            cache=False,
            retry_wait_s=(0.01, 0.05),
        )

    config = {"minibatch_size": 3, "merge_every": 0}
    if max_steps is not None:
        config["max_steps"] = max_steps
    optimizer = GEPA(
        GEPAConfig(**config),
        run_dir=run_dir,
        reflection_model=client("reflector", max_tokens=200),
        student_client=client("student"),
        seed=1,
        concurrency=concurrency,
    )
    program = ExtractionProgram.from_schema(RECEIPT_SCHEMA, model="openai/student")
    return optimizer.compile(
        program, make_receipts(8), make_receipts(6, offset=100), Budget(max_metric_calls=budget)
    )


def files_containing(folder: Path, needle: str) -> list[str]:
    """Every file under `folder` whose bytes contain `needle` (Parquet read raw and decoded)."""
    hits = []
    raw = needle.encode()
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if raw in data:
            hits.append(str(path))
        elif path.suffix == ".parquet":
            try:
                frame = pl.read_parquet(path)
            except Exception:
                continue
            if needle in json.dumps(frame.to_dicts(), default=str, ensure_ascii=False):
                hits.append(str(path))
    return hits


__all__ = [
    "GOLD",
    "KEY_ENV",
    "PO_IDS",
    "PO_SCHEMA",
    "ROOT",
    "files_containing",
    "last_user_text",
    "make_po_documents",
    "make_receipts",
    "po_answer",
    "po_text",
    "receipt_models",
    "run_gepa",
]
