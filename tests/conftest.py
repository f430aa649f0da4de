"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

# Prefect configures its logging when `prefect.main` is first imported, and its console handler keeps
# the sys.stderr of that moment. Imported lazily inside a test, that is a capsys or CliRunner stream
# that is closed after the test, and every later Prefect log line fails ("I/O operation on closed
# file", then a RecursionError through log_prints). Importing it here binds the handler to pytest's
# session-wide capture instead.
import prefect.main  # noqa: F401
import pytest


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect server and database for the whole session (~15 s to start).

    Task results go to a fresh folder so caches of earlier runs are never hit.
    """
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    with (
        temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}),
        prefect_test_harness(server_startup_timeout=60),
    ):
        yield


@pytest.fixture(autouse=True, scope="session")
def isolated_lm_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Model answers cached by tests go to a temporary folder, never the user's cache.

    The joined local model weights stay in the user's cache: re-joining 1.6 GB per run is waste.
    """
    import os

    previous = os.environ.get("IEFLOW_LM_CACHE")
    os.environ["IEFLOW_LM_CACHE"] = str(tmp_path_factory.mktemp("lm-cache"))
    yield
    if previous is None:
        os.environ.pop("IEFLOW_LM_CACHE", None)
    else:
        os.environ["IEFLOW_LM_CACHE"] = previous
