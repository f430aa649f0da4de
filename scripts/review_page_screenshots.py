"""A run's review page, and screenshots of it for docs/.

    python scripts/review_page_screenshots.py                 # receipts, local 0.5b model
    python scripts/review_page_screenshots.py --model openai/x --api-base http://host:8000/v1
    python scripts/review_page_screenshots.py --replay-labels  # no model: see below

Ingests data/receipts/documents, extracts them (the local model takes a few minutes on 2 cores),
writes the run's datasets and review page under --run-dir, then takes two screenshots with
headless Chromium: the whole page (`review_page.png`) and the page filtered (`--filtered`, by
default one field of the records not in review: `review_page_filtered.png`). Prints the run's
summary: review counts, grounded shares, times.

`--replay-labels` answers with the gold labels through the test suite's fake OpenAI-compatible
server, each receipt's `address` swapped with the next receipt's (the failure issue 17 saw on the
demo: an address that is not on the receipt). It shows the page, not a model's quality.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ieflow.batch import BatchSettings, ReviewPolicy, load_program, run_batch  # noqa: E402
from ieflow.ingest import run_ingest  # noqa: E402
from tests.support.browser import screenshot  # noqa: E402

RECEIPTS = ROOT / "data" / "receipts"


def replayed_labels() -> Any:
    """An answer function for the fake server: the gold record, with a neighbour's address."""
    labels = [json.loads(line) for line in (RECEIPTS / "labels.jsonl").read_text().splitlines()]
    texts = [(RECEIPTS / label["file"]).read_text(encoding="utf-8") for label in labels]

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        prompt = "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")
        i = next(i for i, text in enumerate(texts) if text.strip()[:200] in prompt)
        record = dict(labels[i]["record"])
        if i % 3 == 0:
            record["address"] = labels[(i + 1) % len(labels)]["record"]["address"]
        return record

    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--run-dir", default="runs/review_page_demo")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--api-base", default=None, help="an OpenAI-compatible server")
    parser.add_argument("--replay-labels", action="store_true", help="gold labels via the fake server")
    parser.add_argument(
        "--filtered", default="field=total&reason=none", help="the filters of the second screenshot"
    )
    args = parser.parse_args()
    run = Path(args.run_dir).resolve()
    run_ingest(str(RECEIPTS / "documents"), str(run / "ingest"))
    with contextlib.ExitStack() as stack:
        model, api_base = args.model, args.api_base
        if args.replay_labels:
            from ieflow_testing.fake_server import FakeLMServer

            server = stack.enter_context(FakeLMServer(answer=replayed_labels()))
            model, api_base = server.model_name("receipts"), server.base_url
            os.environ.setdefault("OPENAI_API_KEY", "not-needed")
        program = load_program(str(RECEIPTS / "schema.json"), model=model)
        settings = BatchSettings(
            output_dir=str(run / "extract"),
            shard_size=6,
            concurrency=2,
            api_base=api_base,
            api_key_env="OPENAI_API_KEY" if api_base else None,
            use_lm_cache=False,
            review=ReviewPolicy(when_not_found="any"),
        )
        summary = run_batch(str(run / "ingest" / "documents.parquet"), program, settings, parallel_shards=1)
    keys = ["status", "n_records", "n_quarantined", "n_review", "review_by_reason", "grounded_share"]
    keys += ["grounding_failed_shards", "calls", "wall_s", "review_page"]
    print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
    page = Path(summary["review_page"]).as_uri()
    out = Path(args.out)
    print(screenshot(page, out / "review_page.png"))
    print(screenshot(f"{page}#{args.filtered}", out / "review_page_filtered.png"))


if __name__ == "__main__":
    main()
