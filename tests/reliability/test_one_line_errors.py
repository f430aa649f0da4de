"""Issue 16, what crashes: a program file edited by hand, one whose demo lacks its record, and a
model answer nested without end each end the command with one `error:` line, no traceback.

A program file is the user's to fix (exit status 2, as the README promises for what the user
gave); an answer the model got wrong is a failed extraction (exit status 1, like any bad answer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ieflow.program import ExtractionProgram
from ieflow_cli import main as cli
from ieflow_testing.fake_server import FakeLMServer

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "sroie.json"


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["ieflow", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


def _error_lines(output: str) -> list[str]:
    assert "Traceback" not in output and "╭" not in output, output  # neither Python's nor Typer's
    return [line for line in output.splitlines() if "error" in line.lower()]


def _program(tmp_path: Path, name: str, edit: dict) -> Path:
    data = ExtractionProgram.from_schema(SCHEMA, model="openai/m").to_dict()
    data.update(edit)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def document(tmp_path: Path) -> Path:
    path = tmp_path / "receipt.txt"
    path.write_text("TOTAL 12.50\n")
    return path


def test_a_hand_edited_or_malformed_program_is_one_line_and_exit_status_2(
    tmp_path: Path, document: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    edited = _program(tmp_path, "edited.json", {"components": {"instruction": "edited by hand"}})
    no_record = _program(tmp_path, "no_record.json", {"demos": [{"doc_id": "a", "text": "TOTAL 1"}]})
    unhashed = {k: v for k, v in json.loads(no_record.read_text()).items() if k != "hash"}
    no_record.write_text(json.dumps(unhashed))  # no hash: the demo itself must be refused
    not_json = tmp_path / "not_json.json"
    not_json.write_text('{"ieflow_program": 1,')
    expected = {
        edited: "does not match its content",
        no_record: "demos[0] must have exactly the keys doc_id, text and record",
        not_json: "is not valid JSON",
    }
    for path, problem in expected.items():
        commands = [
            ("extract-file", str(document), "--program", str(path)),
            ("program", "diff", str(path), str(path)),
        ]
        for args in commands:
            code, output = _run(monkeypatch, capsys, *args)
            assert code == 2, output
            assert _error_lines(output) == [output.strip()], output  # the whole output is that line
            assert output.startswith(f"error: program {path}"), output
            assert problem in output, output


@pytest.mark.timeout(300)
def test_a_hand_edited_program_given_to_the_extract_flow_is_one_line_and_exit_status_2(
    tmp_path: Path, document: Path
) -> None:
    # A real process, as a user runs it: the flow starts under Prefect and loads the program there.
    edited = _program(tmp_path, "edited.json", {"components": {"instruction": "edited by hand"}})
    env = os.environ | {"OPENAI_API_KEY": "not-used", "PREFECT_HOME": str(tmp_path / "prefect")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ieflow_cli.main",
            "extract",
            str(document.parent),
            "--program",
            str(edited),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    lines = [line for line in _error_lines(output) if line.startswith("error:")]
    assert len(lines) == 1 and "does not match its content" in lines[0], output
    assert "Encountered exception during execution: ProgramError" in output  # Prefect's line stays
    assert not (tmp_path / "out" / "records").exists()


def test_an_answer_nested_without_end_is_one_error_line(
    document: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = '{"total": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with FakeLMServer(answer=lambda body: deep) as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "fake")
        args = ("extract-file", str(document), "--schema", str(SCHEMA), "--model", server.model_name("deep"))
        monkeypatch.setattr(sys, "argv", ["ieflow", *args])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        output = capsys.readouterr()
        assert server.stats.requests >= 1  # the answer was asked for and came back
    assert exit_info.value.code == 1, output
    lines = [line for line in _error_lines(output.out + output.err) if line.startswith("error:")]
    assert len(lines) == 1 and "nested more than 64 levels deep" in lines[0], output
    assert output.out == ""  # no record printed
