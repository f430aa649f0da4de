"""The program registry: versions, champion pointer, promote/rollback, fsspec URLs, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ieflow.program import ExtractionProgram
from ieflow.registry import Registry, RegistryError, champion_stack
from ieflow_cli.program import program_registry_app

SCHEMA = {
    "title": "Receipt",
    "type": "object",
    "properties": {"company": {"type": ["string", "null"]}, "total": {"type": ["number", "null"]}},
}


def program(instruction: str) -> ExtractionProgram:
    return ExtractionProgram.from_schema(SCHEMA, model="openai/student", instruction=instruction)


def test_versions_are_numbered_immutable_and_content_addressed(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    v1 = reg.register("receipts", program("one"), scores={"holdout": 0.5}, dataset="data/receipts")
    v2 = reg.register("receipts", program("two"), lineage={"parent_version": 1})
    again = reg.register("receipts", program("one"))
    assert (v1.version, v2.version, again.version) == (1, 2, 1)
    assert [v.version for v in reg.versions("receipts")] == [1, 2]
    assert reg.names() == ["receipts"]
    # The first version becomes champion by itself; later ones only when asked.
    assert reg.champion("receipts").version == 1
    assert reg.get("receipts").hash == program("one").hash
    assert reg.get("receipts", 2).load_program().components["instruction"] == "two"
    # Plain JSON, readable without ieflow.
    raw = json.loads((tmp_path / "reg" / "receipts" / "versions" / "1.json").read_text())
    assert raw["hash"] == v1.hash and raw["program"]["components"]["instruction"] == "one"
    assert raw["scores"] == {"holdout": 0.5} and raw["created_at"] and raw["source_run"]["kind"] == "cli"
    pointer = json.loads((tmp_path / "reg" / "receipts" / "champion.json").read_text())
    assert pointer["champion"] == 1 and pointer["history"][0]["action"] == "promote"
    assert (tmp_path / "reg" / "README.txt").is_file()


def test_promote_and_rollback_walk_the_champion_history(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    for text in ("a", "b", "c"):
        reg.register("po", program(text))
    reg.promote("po", 2, reason="better on dates", by="ana")
    reg.promote("po", 3, reason="better totals")
    assert reg.champion("po").version == 3
    assert reg.rollback("po", reason="regression")["champion"] == 2
    assert reg.rollback("po")["champion"] == 1  # twice = two steps back, not a toggle
    with pytest.raises(RegistryError, match="no earlier champion"):
        reg.rollback("po")
    assert reg.rollback("po", to=3)["champion"] == 3
    history = reg.champion_state("po")["history"]
    assert [h["action"] for h in history] == ["promote"] * 3 + ["rollback"] * 3
    assert history[1]["by"] == "ana" and history[1]["previous"] == 1 and history[3]["reason"] == "regression"
    assert reg.promote("po", 3)["champion"] == 3  # already champion: nothing appended
    assert len(reg.champion_state("po")["history"]) == 6


def test_champion_stack() -> None:
    def entry(action: str, version: int) -> dict:
        return {"action": action, "version": version}

    history = [entry("promote", 1), entry("promote", 2), entry("promote", 3), entry("rollback", 2)]
    assert champion_stack(history) == [1, 2]
    assert champion_stack([*history, entry("promote", 4)]) == [1, 2, 4]


def test_clear_errors(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    with pytest.raises(RegistryError, match="bad program name"):
        reg.register("Bad Name", program("x"))
    with pytest.raises(RegistryError, match="no program named 'nope'"):
        reg.get("nope")
    reg.register("po", program("x"))
    with pytest.raises(RegistryError, match=r"no version 7 \(versions: 1\)"):
        reg.promote("po", 7)
    assert reg.read_state("po", "nightly") == {}
    reg.write_state("po", "nightly", {"labels_seen": {"a": "1"}})
    assert reg.read_state("po", "nightly")["labels_seen"] == {"a": "1"}


def test_works_on_an_fsspec_url() -> None:
    reg = Registry("memory://ieflow-registry-test")
    reg.register("receipts", program("one"))
    reg.register("receipts", program("two"), promote=True)
    assert reg.names() == ["receipts"]
    assert reg.champion("receipts").version == 2
    assert reg.rollback("receipts")["champion"] == 1


def test_cli_register_list_show_promote_rollback(tmp_path: Path) -> None:
    runner = CliRunner()
    root = str(tmp_path / "reg")
    files = []
    for text in ("first", "second"):
        prog = program(text)
        prog.metadata = {"test_score": 0.75, "optimizer": "gepa", "lineage": [{"index": 0}]}
        path = tmp_path / f"{text}.json"
        prog.save(path)
        files.append(path)

    def run(*args: str) -> str:
        result = runner.invoke(program_registry_app, [*args, "--registry", root])
        assert result.exit_code == 0, result.output
        return result.output

    assert "v1" in run("register", str(files[0]), "--name", "receipts")
    assert "champion: v1" in run("register", str(files[1]), "--name", "receipts", "--note", "manual")
    listing = run("list")
    assert "receipts" in listing and "v1" in listing and "0.750" in listing
    assert "champion v1 -> v2" in run("promote", "receipts", "2", "-m", "looks better")
    shown = run("show", "receipts")
    assert "receipts v2 (champion)" in shown and "looks better" in shown and "second" in shown
    assert "champion v2 -> v1" in run("rollback", "receipts")
    bad = runner.invoke(program_registry_app, ["promote", "receipts", "9", "--registry", root])
    assert bad.exit_code == 2 and "no version 9" in bad.output
    # `show` of a plain program file still works (it replaces the file-only `program show`).
    file_show = runner.invoke(program_registry_app, ["show", str(files[0])])
    assert file_show.exit_code == 0 and "first" in file_show.output
