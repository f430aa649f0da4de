"""The distribution installs every core subpackage, and the Prefect layer under ieflow_ names only."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_core_subpackage_is_listed_so_a_wheel_carries_it() -> None:
    listed = set(_setuptools()["packages"])
    found = {p for p in find_packages(str(ROOT), include=["ieflow", "ieflow.*"])}
    assert found <= listed, f"add to pyproject [tool.setuptools] packages: {sorted(found - listed)}"


def test_no_installed_top_level_package_has_a_generic_name() -> None:
    tops = {name.split(".")[0] for name in _setuptools()["packages"]}
    assert all(top == "ieflow" or top.startswith("ieflow_") for top in tops), tops
    for name, folder in _setuptools()["package-dir"].items():
        assert (ROOT / folder / "__init__.py").exists(), (name, folder)
