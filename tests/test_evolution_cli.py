"""`ieflow optimize --optimizer evoprompt | evoprompt-de | promptbreeder` runs the optimize flow
with that optimizer (a real Prefect server, models through litellm to the fake server)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ieflow_cli import main as cli
from ieflow_testing.fake_server import FakeLMServer
from tests.support.receipts import fake_models, make_examples
from tests.test_optimize_flow import write_dataset

EVENTS = {"evoprompt": "evolution", "evoprompt-de": "evolution", "promptbreeder": "breeding"}


@pytest.mark.slow
def test_ieflow_optimize_runs_the_evolutionary_optimizers(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """All three in one test: Prefect binds its console log handler to the first test's captured
    stream, which a later test would find closed (the known test_cli.py issue)."""
    write_dataset(tmp_path / "data", make_examples(16))
    with FakeLMServer(answer=fake_models) as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "fake-key")
        for name, event in EVENTS.items():
            args = ["optimize", "--dataset", str(tmp_path / "data"), "--optimizer", name]
            args += ["--student-model", server.model_name("student")]
            args += ["--reflection-model", server.model_name("reflector")]
            args += ["--max-metric-calls", "40", "--output-dir", str(tmp_path / name), "--no-progress"]
            monkeypatch.setattr(sys, "argv", ["ieflow", *args])
            with pytest.raises(SystemExit) as exit_info:
                cli.main()
            out = capsys.readouterr().out
            assert exit_info.value.code == 0, out
            summary = json.loads(out[out.index("{\n") :])
            assert summary["metric_calls"] <= 40 + 6
            saved = json.loads((tmp_path / name / name / "result.json").read_text())
            assert saved["optimizer"] == name
            assert any(entry["event"] == event for entry in saved["history"]), saved["history"]
