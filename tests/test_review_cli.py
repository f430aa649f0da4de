"""`ieflow review export|import` as a user runs them: a real process, one `error:` line and exit
status 2 for what the user must fix."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from ieflow.labelfree.review_queue import write_review_queue
from tests.test_review_queue import SCHEMA, drafts


def ieflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PREFECT_HOME": str(cwd / "prefect")}
    return subprocess.run(
        [sys.executable, "-m", "ieflow_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def test_export_then_import_writes_human_labels(tmp_path: Path) -> None:
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    write_review_queue(tmp_path / "review.jsonl", drafts())
    exported = ieflow(
        "review", "export", "review.jsonl", "--schema", "schema.json", "--out", "r.csv", cwd=tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    assert "exported 3 drafts to r.csv" in exported.stdout
    with open(tmp_path / "r.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["accept"] = "yes"
    rows[1].update(accept="yes", items="not json")  # a string where a list belongs
    with open(tmp_path / "r.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    args = ["--schema", "schema.json", "--labels", "labels.jsonl", "--queue", "review.jsonl"]
    imported = ieflow("review", "import", "r.csv", *args, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "imported 1 human labels into labels.jsonl; 2 rows left in r.csv" in imported.stdout
    assert "warning: r.csv line 3 (r2): corrected record does not match the schema" in imported.stderr
    labels = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert [(row["doc_id"], row["source"]) for row in labels] == [("r1", "human")]
    queue = [json.loads(line)["doc_id"] for line in (tmp_path / "review.jsonl").read_text().splitlines()]
    assert queue == ["r2", "r3"]


def test_user_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    missing = ieflow(
        "review", "export", "nope.jsonl", "--schema", "schema.json", "--out", "r.csv", cwd=tmp_path
    )
    assert missing.returncode == 2 and missing.stderr.strip() == "error: review queue not found: nope.jsonl"
    write_review_queue(tmp_path / "review.jsonl", drafts())
    wrong = ieflow(
        "review", "export", "review.jsonl", "--schema", "schema.json", "--out", "r.xlsx", cwd=tmp_path
    )
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == "error: the review file must be .csv or .jsonl, got r.xlsx"
    (tmp_path / "r.csv").write_text("doc_id,company\nr1,ACME\n")
    args = ["--schema", "schema.json", "--labels", "labels.jsonl"]
    no_accept = ieflow("review", "import", "r.csv", *args, cwd=tmp_path)
    assert no_accept.returncode == 2 and "Traceback" not in no_accept.stderr
    assert no_accept.stderr.strip() == "error: r.csv has no accept column (columns: doc_id, company)"
    bad_schema = ieflow(
        "review", "import", "r.csv", "--schema", "nope.json", "--labels", "l.jsonl", cwd=tmp_path
    )
    assert bad_schema.returncode == 2 and bad_schema.stderr.startswith("error: schema file not found")
