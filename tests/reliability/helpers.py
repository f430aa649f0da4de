"""Shared pieces of the reliability suites: fake-server answers, corpora, optimizer runs, greps."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import polars as pl

import ieflow  # noqa: F401  (offline env defaults first)
from ieflow.lm.fake_server import last_user_text

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "data" / "purchase_orders"
PO_SCHEMA = ROOT / "schemas" / "purchase_order.json"
GOLD = {json.loads(line)["doc_id"]: json.loads(line)
        for line in (PO / "labels.jsonl").read_text().splitlines()}
PO_IDS = sorted(GOLD)
KEY_ENV = "IEFLOW_RELIABILITY_KEY"

RECEIPT_SCHEMA = {
    "type": "object",
    "properties": {
        "company": {"type": ["string", "null"], "description": "Company name."},
        "date": {"type": ["string", "null"], "format": "date", "description": "Receipt date."},
        "total": {"type": ["number", "null"], "description": "Total paid."},
    },
    "required": ["company", "date", "total"],
}
SHOPS = ["Acme Hardware", "Bright Books", "Corner Cafe", "Delta Foods", "Echo Pharmacy", "Fern Florist"]


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
    pl.DataFrame({"doc_id": ids, "sha256": [f"sha-{i}" for i in ids],
                  "text": [texts[s] for s in sources], "status": ["ok"] * n,
                  "error": [None] * n}, schema_overrides={"error": pl.String}).write_parquet(path)
    return str(path)


def make_receipts(n: int, offset: int = 0) -> list[Any]:
    from ieflow.datasets import Example

    out = []
    for i in range(n):
        day, month = 1 + (i + offset) % 12, 1 + (i + offset + 5) % 12
        shop = f"{SHOPS[(i + offset) % len(SHOPS)]} {i + offset}"
        text = f"{shop}\nDate: {day:02d}/{month:02d}/2021\nTOTAL: {10 + i}.50"
        gold = {"company": shop, "date": f"2021-{month:02d}-{day:02d}", "total": 10 + i + 0.5}
        out.append(Example(doc_id=f"d{i + offset}", text=text, gold=gold))
    return out


def receipt_models(body: dict[str, Any]) -> str:
    """Student ("student") reads dates month-first unless told day-first; "reflector" says so."""
    messages = body["messages"]
    if body["model"] == "reflector":
        prompt = messages[-1]["content"]
        return ("Dates are printed day-first (DD/MM/YYYY); write them as YYYY-MM-DD."
                if '"date"' in prompt else "Copy the value exactly as printed.")
    document = next(m["content"] for m in reversed(messages) if m["content"].startswith("Document:"))
    lines = document.splitlines()
    day, month = re.search(r"(\d\d)/(\d\d)/2021", document).groups()
    total = float(re.search(r"TOTAL: ([\d.]+)", document).group(1))
    date = f"2021-{month}-{day}" if "day-first" in messages[0]["content"] else f"2021-{day}-{month}"
    return json.dumps({"company": lines[1], "date": date, "total": total})


def run_gepa(run_dir: Path, base_url: str, *, budget: int = 60, timeout_s: float = 2.0,
             max_retries: int = 8, api_key: str = "fake", max_steps: int | None = None,
             concurrency: int = 2) -> Any:
    """GEPA on the receipt task, both models served by the fake server at `base_url`."""
    from ieflow.lm import LMClient
    from ieflow.optimize import Budget
    from ieflow.optimize.gepa import GEPA, GEPAConfig
    from ieflow.program import ExtractionProgram

    def client(name: str, **params: Any) -> LMClient:
        return LMClient(f"openai/{name}", params=params, api_base=base_url, api_key=api_key,
                        timeout_s=timeout_s, max_retries=max_retries, cache=False,
                        retry_wait_s=(0.01, 0.05))

    config = {"minibatch_size": 3, "merge_every": 0}
    if max_steps is not None:
        config["max_steps"] = max_steps
    optimizer = GEPA(GEPAConfig(**config), run_dir=run_dir,
                     reflection_model=client("reflector", max_tokens=200),
                     student_client=client("student"), seed=1, concurrency=concurrency)
    program = ExtractionProgram.from_schema(RECEIPT_SCHEMA, model="openai/student")
    return optimizer.compile(program, make_receipts(8), make_receipts(6, offset=100),
                             Budget(max_metric_calls=budget))


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


__all__ = ["GOLD", "KEY_ENV", "PO_IDS", "PO_SCHEMA", "ROOT", "files_containing", "last_user_text",
           "make_po_documents", "make_receipts", "po_answer", "po_text", "receipt_models", "run_gepa"]
