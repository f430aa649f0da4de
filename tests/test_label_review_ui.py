"""The label flow's review form in the real Prefect UI: `prefect server start` (API and UI), a label
run paused on three drafts, and headless Chromium that opens the run, clicks Resume, corrects a
value, ticks accept and submits, as a person does. The record lands in labels.jsonl as `human`.

Screenshots go to the test's folder, or to docs/screenshots/ with IEFLOW_WRITE_SCREENSHOTS=1.
"""

from __future__ import annotations

import contextvars
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from ieflow.labelfree.review_queue import write_review_queue
from ieflow_flows.label import LabelParams, label
from tests.support.browser import CHROMIUM
from tests.test_deployments import free_port, stop, tail
from tests.test_label_flow import lines, wait_for_pause
from tests.test_review_queue import SCHEMA, drafts

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make system-deps)"),
]
ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")
MODAL = "document.querySelector('.p-modal')"


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prefect server with its UI on a free port, with its own PREFECT_HOME (database)."""
    home = tmp_path_factory.mktemp("prefect-ui-home")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"{base}/api", "PREFECT_UI_URL": base}
    log = home / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, f"no server:\n{tail(log)}"
            time.sleep(1)
        yield base
    finally:
        stop(server)


def screenshot_dir(tmp_path: Path) -> Path:
    if os.environ.get("IEFLOW_WRITE_SCREENSHOTS") == "1":
        return ROOT / "docs" / "screenshots"
    return tmp_path


def set_input(label_text: str, value: str) -> str:
    """JS: type `value` into the input under the form label that starts with `label_text`."""
    return (
        f"(() => {{ const prop = [...{MODAL}.querySelectorAll('.schema-form-property')].find(p => "
        f"p.querySelector('.schema-form-property__label')?.textContent.startsWith({json.dumps(label_text)}));"
        "const el = prop.querySelector('input, textarea'); el.focus(); el.value = "
        f"{json.dumps(value)}; el.dispatchEvent(new Event('input', {{bubbles: true}}));"
        "el.dispatchEvent(new Event('change', {bubbles: true})); return el.value; })()"
    )


def toggle(label_text: str) -> str:
    return (
        f"(() => {{ const prop = [...{MODAL}.querySelectorAll('.schema-form-property')].find(p => "
        f"p.querySelector('.schema-form-property__label')?.textContent.startsWith({json.dumps(label_text)}));"
        "const el = prop.querySelector('input[type=checkbox]'); el.click(); return el.checked; })()"
    )


def click_button(scope: str, text: str) -> str:
    found = f"[...{scope}.querySelectorAll('button')].find(b => b.innerText.trim() === {json.dumps(text)})"
    return f"{found}.click()"


def review_in_the_browser(page: Any, url: str, shots: Path) -> None:
    """Open the paused run, screenshot it, open Resume, check the form, correct r1 and accept it."""
    page.goto(url)
    page.wait_for("[...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Resume')")
    page.wait_for("document.body.innerText.includes('Pausing flow')")  # the logs have loaded
    page.screenshot(shots / "label_review_paused.png")
    page.evaluate(click_button("document", "Resume"))
    page.wait_for(f"{MODAL}?.innerText.includes('r1 · company')")
    page.evaluate(f"{MODAL}.querySelector('.p-modal__body').scrollTop = 0")
    time.sleep(0.5)
    page.screenshot(shots / "label_review_form.png")
    text = page.evaluate(f"{MODAL}.innerText")
    assert "Review 3 teacher drafts" in text and "total: teacher samples disagree" in text
    assert "r2: record: not schema-valid" in " ".join(text.split())
    total = page.evaluate(
        f"[...{MODAL}.querySelectorAll('.schema-form-property')]"
        ".find(p => p.innerText.startsWith('r1 · total')).innerText"
    )
    assert "teacher samples disagree" in total  # the field's problem shows at the field
    values = page.evaluate(f"[...{MODAL}.querySelectorAll('textarea, input[type=number]')].map(e => e.value)")
    assert values[:3] == ["ACME", "12.5", '[{"name": "nails", "qty": 3}]']  # prefilled with the draft
    assert page.evaluate(set_input("r1 · total", "13.5")) == "13.5"
    assert page.evaluate(toggle("r1 · accept")) is True
    page.screenshot(shots / "label_review_form_filled.png")
    page.evaluate(click_button(MODAL, "Submit"))


def test_a_person_corrects_and_accepts_a_draft_in_the_prefect_ui(ui_server: str, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.support.devtools import Page

    pl.DataFrame([{"doc_id": "unused", "status": "ok", "text": ""}]).write_parquet(
        tmp_path / "documents.parquet"
    )
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    write_review_queue(tmp_path / "review.jsonl", drafts())
    params = LabelParams(
        documents=str(tmp_path / "documents.parquet"),
        schema_path=str(tmp_path / "schema.json"),
        labels_path=str(tmp_path / "labels.jsonl"),
        limit=0,  # review the queue only
        review_timeout_s=300,
        review_poll_s=1,
    )
    states: list[Any] = []
    with temporary_settings({PREFECT_API_URL: f"{ui_server}/api"}):
        context = contextvars.copy_context()
        thread = threading.Thread(target=lambda: states.append(context.run(label, params, return_state=True)))
        thread.start()
        run = wait_for_pause(set())
        with Page(1400, 2100) as page:  # tall enough that the form does not squeeze the description
            review_in_the_browser(page, f"{ui_server}/runs/flow-run/{run.id}", screenshot_dir(tmp_path))
            thread.join(120)
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()  # the run's last logs reach the server before the fixture stops it
    assert states and states[0].is_completed(), states
    (row,) = lines(params.labels_path)
    assert row == {
        "doc_id": "r1",
        "file": "documents/r1.txt",
        "record": {"company": "ACME", "total": 13.5, "items": [{"name": "nails", "qty": 3}]},
        "source": "human",
    }
    assert [row["doc_id"] for row in lines(params.queue_path)] == ["r2", "r3"]
