"""Screenshots of the Prefect UI as a person sees it: flow-run pages with their artifacts.

    python scripts/screenshot_ui.py                      # latest nightly, optimize and extract runs
    python scripts/screenshot_ui.py --flows nightly --out docs/screenshots

Needs a running stack (`scripts/stack.sh up`) with finished runs, and headless Chromium with its
driver (Debian: `apt-get install -y chromium chromium-driver`). It talks to chromedriver over the
W3C WebDriver HTTP protocol with httpx, so no browser-automation package is needed. Nothing leaves
the machine: the browser runs with background networking, sync and component updates off.

For each flow it writes `<flow>-run.png` (the run page, Artifacts tab) and one PNG per artifact
(`<flow>-artifact-<key>.png`, the artifact's own page); plus `deployments.png` and
`nightly-run-form.png` (the parameter form the UI builds from the Pydantic params model).
"""

from __future__ import annotations

import argparse
import base64
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Browser:
    """A minimal WebDriver client: open a page, wait, run a script, take a screenshot."""

    def __init__(self, width: int, height: int) -> None:
        driver = shutil.which("chromedriver")
        chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        if not driver or not chrome:
            raise SystemExit("error: needs chromium and chromedriver (Debian: chromium chromium-driver)")
        self.profile = tempfile.mkdtemp(prefix="ieflow-chromium-")
        port = free_port()
        self.driver = subprocess.Popen(
            [driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        for _ in range(100):
            try:
                if self.http.get("/status").json()["value"]["ready"]:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                time.sleep(0.1)
        flags = [*CHROME_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}"]
        caps = {"browserName": "chrome", "goog:chromeOptions": {"binary": chrome, "args": flags}}
        answer = self.http.post("/session", json={"capabilities": {"alwaysMatch": caps}}).json()["value"]
        if "sessionId" not in answer:
            self.close()
            raise SystemExit(f"error: chromedriver could not start Chromium: {answer.get('message', answer)}")
        self.session = f"/session/{answer['sessionId']}"

    def open(self, url: str, settle_s: float) -> None:
        self.http.post(f"{self.session}/url", json={"url": url})
        time.sleep(settle_s)  # the UI is a single-page app: give its API calls time to land

    def script(self, source: str, *args: Any) -> Any:
        body = {"script": source, "args": list(args)}
        return self.http.post(f"{self.session}/execute/sync", json=body).json()["value"]

    def click_text(self, text: str) -> bool:
        """Click the first tab, button or link whose visible text is `text`."""
        return bool(
            self.script(
                "const els=[...document.querySelectorAll('button,a,[role=tab],li,span')];"
                "const el=els.find(e=>e.textContent.trim()===arguments[0]); if(el){el.click(); return true}"
                "return false;",
                text,
            )
        )

    def screenshot(self, path: Path) -> None:
        data = self.http.get(f"{self.session}/screenshot").json()["value"]
        path.write_bytes(base64.b64decode(data))
        print(f"wrote {path}")

    def close(self) -> None:
        if hasattr(self, "session"):
            self.http.delete(self.session)
        self.driver.terminate()
        self.driver.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


def latest_run(api: httpx.Client, flow_name: str) -> dict[str, Any] | None:
    """The most recent finished top-level run of a flow."""
    body = {
        "flows": {"name": {"any_": [flow_name]}},
        "flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED"]}}},
        "sort": "START_TIME_DESC",
        "limit": 10,
    }
    runs = api.post("/flow_runs/filter", json=body).json()
    top = [r for r in runs if not r.get("parent_task_run_id")]
    return (top or runs or [None])[0]


def artifacts(api: httpx.Client, flow_run_id: str) -> list[dict[str, Any]]:
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "KEY_ASC"}
    answer = api.post("/artifacts/filter", json=body)
    answer.raise_for_status()
    return [a for a in answer.json() if a.get("key")]


def subflow_runs(api: httpx.Client, flow_run_id: str) -> list[dict[str, Any]]:
    """Every run below `flow_run_id` (subflows of subflows included), oldest first."""
    body = {"flow_runs": {"parent_flow_run_id": {"any_": [flow_run_id]}}, "sort": "START_TIME_ASC"}
    answer = api.post("/flow_runs/filter", json=body)
    answer.raise_for_status()
    children = answer.json()
    return [run for child in children for run in [child, *subflow_runs(api, child["id"])]]


def capture(
    browser: Browser, api: httpx.Client, ui: str, label: str, run: dict[str, Any], out: Path, settle: float
) -> None:
    """The run page on its Artifacts tab, then each artifact on its own page."""
    browser.open(f"{ui}/runs/flow-run/{run['id']}", settle)
    if browser.click_text("Artifacts"):
        time.sleep(settle / 2)
    browser.screenshot(out / f"{label}-run.png")
    for artifact in artifacts(api, run["id"]):
        browser.open(f"{ui}/artifacts/artifact/{artifact['id']}", settle)
        browser.screenshot(out / f"{label}-artifact-{artifact['key']}.png")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ui", default="http://127.0.0.1:4200", help="Prefect UI address.")
    parser.add_argument(
        "--flows",
        nargs="*",
        default=["nightly", "nightly-review", "optimize", "extract"],
        help="Flows whose latest finished run to capture.",
    )
    parser.add_argument(
        "--flow-run",
        action="append",
        default=[],
        metavar="ID",
        help="Also capture this flow run (and its subflow runs); repeatable.",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--settle", type=float, default=6.0, help="Seconds to let a page render.")
    args = parser.parse_args()
    ui = args.ui.rstrip("/")
    api = httpx.Client(base_url=f"{ui}/api", timeout=30)
    try:
        api.get("/health").raise_for_status()
    except httpx.HTTPError as exc:
        raise SystemExit(f"error: no Prefect server at {ui} ({exc}): run scripts/stack.sh up") from None
    args.out.mkdir(parents=True, exist_ok=True)
    browser = Browser(args.width, args.height)
    try:
        browser.open(f"{ui}/deployments", args.settle)
        browser.screenshot(args.out / "deployments.png")
        nightly = api.get("/deployments/name/nightly/nightly")
        if nightly.status_code == 200:
            browser.open(f"{ui}/deployments/deployment/{nightly.json()['id']}/run", args.settle)
            browser.screenshot(args.out / "nightly-run-form.png")
        targets: list[tuple[str, dict[str, Any]]] = []
        for flow_name in args.flows:
            run = latest_run(api, flow_name)
            if run is None:
                print(f"no finished run of {flow_name}: skipped")
            else:
                targets.append((flow_name, run))
        for run_id in args.flow_run:
            run = api.get(f"/flow_runs/{run_id}").json()
            for child in [run, *subflow_runs(api, run_id)]:
                flow_name = api.get(f"/flows/{child['flow_id']}").json()["name"]
                targets.append((f"{flow_name}-{child['name']}", child))
        for label, run in targets:
            capture(browser, api, ui, label, run, args.out, args.settle)
    finally:
        browser.close()


if __name__ == "__main__":
    main()
