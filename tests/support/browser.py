"""Headless Chromium for tests and screenshots: a page's DOM after its scripts ran, or a PNG.

Debian's chromium, started once per call with a fresh profile and everything that would reach the
network off. `CHROMIUM` is None where no browser is installed (tests skip, saying so; `make
system-deps` installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
]


def _run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="ieflow-chromium-") as profile:
        return subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )


def rendered_dom(url: str) -> str:
    """The page's DOM as serialized after load (its scripts have run)."""
    return _run("--virtual-time-budget=3000", "--dump-dom", url).stdout


def screenshot(url: str, out: Path, width: int = 1400, height: int = 1000) -> Path:
    _run("--virtual-time-budget=3000", f"--window-size={width},{height}", f"--screenshot={out}", url)
    return out
