"""The `ieflow` command's error handling: a user's mistake is one `error:` line and exit status 2;
harmless shutdown noise is hidden; everything else keeps its traceback."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ieflow.errors import ConfigError, RegistryError, RunConflictError, SchemaError
from ieflow_cli import main as cli

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "sroie.json"


def _record(logger: logging.Logger, exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (), info)


def _run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["ieflow", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code


def test_the_cli_hides_only_the_cancelled_pool_reset_at_server_shutdown() -> None:
    pool_logger = logging.getLogger("sqlalchemy.pool.impl.AsyncAdaptedQueuePool")
    assert not pool_logger.filter(_record(pool_logger, asyncio.CancelledError()))
    assert pool_logger.filter(_record(pool_logger, OSError("disk I/O error")))


def test_a_bad_parameter_is_one_error_line_and_exit_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = _run_cli(
        monkeypatch,
        "extract",
        str(tmp_path),
        "--program",
        str(SCHEMA),
        "--output-dir",
        str(tmp_path / "out"),
        "--shard-size",
        "0",
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "shard_size" in err and "Traceback" not in err


def test_an_unreachable_endpoint_stops_the_flow_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    # A real process, as a user runs it: the flow starts under Prefect, its preflight fails.
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "receipt.txt").write_text("TOTAL 12.50\n")
    env = os.environ | {"OPENAI_API_KEY": "not-used", "PREFECT_HOME": str(tmp_path / "prefect")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ieflow_cli.main",
            "extract",
            str(tmp_path / "docs"),
            "--program",
            str(SCHEMA),
            "--output-dir",
            str(tmp_path / "out"),
            "--model",
            "openai/gpt-4o-mini",
            "--api-base",
            "http://127.0.0.1:9/v1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "error: endpoint http://127.0.0.1:9/v1 is unreachable" in done.stderr
    assert "Traceback" not in output and "╭" not in output  # neither Python's nor Typer's traceback
    assert "Encountered exception during execution: ConfigError" in output  # Prefect's line stays


def test_prefect_keeps_the_failure_line_of_a_user_error_but_not_its_traceback() -> None:
    flow_logger = logging.getLogger("prefect.flow_runs")
    user = _record(flow_logger, ConfigError("endpoint x is unreachable"))
    assert flow_logger.filter(user) and user.exc_info is None  # logged, without the engine's frames
    bug = _record(flow_logger, KeyError("chunks"))
    assert flow_logger.filter(bug) and bug.exc_info is not None  # a bug keeps its traceback


def test_any_other_error_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise KeyError("chunks")

    monkeypatch.setattr(cli, "app", broken)
    with pytest.raises(KeyError):
        cli.main()


def test_a_missing_or_malformed_program_file_names_the_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from ieflow.batch import load_program

    with pytest.raises(FileNotFoundError, match=r"program not found: .*nope\.json \(give a program\.json"):
        load_program(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json is not valid JSON"):
        load_program(str(tmp_path / "bad.json"))
    # A path that does not exist is the user's to fix: one line from the command, as for ConfigError.
    monkeypatch.setattr(cli, "app", lambda: load_program(str(tmp_path / "nope.json")))
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2 and capsys.readouterr().err.startswith("error: program not found")


def test_ieflow_debug_keeps_the_traceback_of_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.is_user_error(ConfigError("bad"))
    monkeypatch.setenv("IEFLOW_DEBUG", "1")
    assert not cli.is_user_error(ConfigError("bad"))


def test_every_user_error_class_is_one_line_for_the_cli_and_still_importable_from_its_old_home() -> None:
    from ieflow import batch, preflight, registry, schema

    for error in (ConfigError, SchemaError, RegistryError, RunConflictError):
        assert cli.is_user_error(error("what is wrong and how to fix it"))
    assert preflight.ConfigError is ConfigError and schema.SchemaError is SchemaError
    assert registry.RegistryError is RegistryError and batch.RunConflictError is RunConflictError
    assert cli.user_error_line(ConfigError("a\nb")) == "error: a b"


# -- every flow is a command -------------------------------------------------------------------------


def _options(command: str) -> dict[str, object]:
    """The command's parameters by name (click's view of the Typer app)."""
    import typer.main

    return {p.name: p for p in typer.main.get_command(cli.app).commands[command].params}


def test_every_flow_is_a_command() -> None:
    import typer.main

    commands = set(typer.main.get_command(cli.app).commands)
    assert {"ingest", "split", "optimize", "extract", "nightly"} <= commands


def test_split_and_nightly_options_are_exactly_their_params_models_fields() -> None:
    from ieflow_cli.nightly import RENAMED
    from ieflow_flows.nightly import NightlyParams
    from ieflow_flows.split import SplitParams

    assert set(_options("split")) == set(SplitParams.model_fields)
    assert {RENAMED.get(name, name) for name in _options("nightly")} == set(NightlyParams.model_fields)


def test_unset_options_take_the_flows_defaults_and_given_ones_reach_the_params(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from ieflow_flows import nightly, split

    seen: list[object] = []
    monkeypatch.setattr(split, "split", lambda params: seen.append(params) or {"ok": 1})
    monkeypatch.setattr(nightly, "nightly", lambda params: seen.append(params) or {})
    runner = CliRunner()
    assert runner.invoke(cli.app, ["split", "labels.jsonl", "--output-dir", "out"]).exit_code == 0
    assert seen.pop() == split.SplitParams(labels_path="labels.jsonl", output_dir="out")
    args = ["split", "d", "--output-dir", "o", "--seed", "3", "--train", "0.5", "--reassign"]
    assert runner.invoke(cli.app, args).exit_code == 0
    assert seen.pop() == split.SplitParams(
        labels_path="d", output_dir="o", seed=3, train=0.5, keep_previous=False
    )
    assert runner.invoke(cli.app, ["nightly"]).exit_code == 0
    assert seen.pop() == nightly.NightlyParams()
    args = ["nightly", "--program", "a", "--program", "b", "--dataset", "a=data/a", "--force"]
    args += ["--splits", "b=s.parquet", "--optimizer", "simba", "--max-metric-calls", "40"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert seen.pop() == nightly.NightlyParams(
        programs=["a", "b"],
        datasets={"a": "data/a"},
        splits_paths={"b": "s.parquet"},
        force=True,
        optimizer="simba",
        max_metric_calls=40,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["split", "labels.jsonl", "--output-dir", "out", "--train", "0", "--val", "0", "--test", "0"],
        ["split", "labels.jsonl", "--output-dir", "out", "--seed", "1", "--val", "-1"],
        ["nightly", "--margin", "2"],
        ["nightly", "--optimizer", "nope"],
        ["nightly", "--dataset", "receipts"],
    ],
)
def test_a_user_error_of_split_or_nightly_is_one_error_line_and_exit_status_2(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run_cli(monkeypatch, *args)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow
def test_ieflow_split_runs_the_split_flow(prefect_harness: None, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    labels = Path(__file__).resolve().parents[1] / "data" / "receipts"
    result = CliRunner().invoke(cli.app, ["split", str(labels), "--output-dir", str(tmp_path), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "splits.parquet").exists() and '"n_assigned": 12' in result.output
