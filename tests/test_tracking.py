"""MLflow tracking of optimization runs against a real local MLflow store (no server): parameters,
per-candidate metrics and artifacts read back through MlflowClient; with no URI, mlflow is never
imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ieflow.optimize import Budget
from ieflow.optimize.gepa import GEPA, GEPAConfig
from ieflow.optimize.tracking import RUN_ID_FILE, log_outputs
from tests.support.receipts import make_examples
from tests.support.scripted_lm import ScriptedLM
from tests.test_gepa import reflector, seed_program, student

mlflow = pytest.importorskip("mlflow", reason="MLflow tracking is the optional extra ieflow[mlflow]")


def make_gepa(run_dir: Path, uri: str | None) -> GEPA:
    return GEPA(
        GEPAConfig(minibatch_size=3, merge_every=0),
        run_dir=run_dir,
        reflection_model=ScriptedLM(reflector, "scripted/reflector"),
        student_client=ScriptedLM(student),
        seed=1,
        tracking_uri=uri,
    )


def logged_run(uri: str, run_dir: Path):
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    run_id = json.loads((run_dir / RUN_ID_FILE).read_text())["run_id"]
    return client, client.get_run(run_id)


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow writes a local store's artifacts under ./mlruns of the working directory."""
    monkeypatch.chdir(tmp_path)


def sqlite_store(tmp_path: Path) -> str:
    """A real local store (MLflow 3 keeps the `file:` store in maintenance mode; sqlite is its own
    recommended local backend)."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_a_run_logs_params_candidate_metrics_and_artifacts(tmp_path: Path) -> None:
    uri = sqlite_store(tmp_path)
    run_dir = tmp_path / "run"
    result = make_gepa(run_dir, uri).compile(
        seed_program(), make_examples(8), make_examples(6, offset=100), Budget(max_metric_calls=60)
    )
    client, run = logged_run(uri, run_dir)
    assert run.data.params["optimizer"] == "gepa"
    assert run.data.params["budget.max_metric_calls"] == "60"
    assert run.data.params["setting.minibatch_size"] == "3"
    history = client.get_metric_history(run.info.run_id, "val_score")
    assert [m.step for m in history] == list(range(len(result.candidates)))
    assert [m.value for m in history] == pytest.approx([c.val_score for c in result.candidates], abs=1e-4)
    tokens = client.get_metric_history(run.info.run_id, "tokens_per_doc")
    assert [m.value for m in tokens] == pytest.approx([c.tokens_per_doc for c in result.candidates], abs=0.1)
    assert run.data.metrics["best_val_score"] == pytest.approx(result.best_score)
    assert run.data.tags["stop_reason"] == result.stop_reason
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"program.json", "result.json", "pareto.png"} <= artifacts
    logged_program = Path(client.download_artifacts(run.info.run_id, "program.json", str(tmp_path)))
    assert json.loads(logged_program.read_text())["components"] == result.best_program.components

    report = run_dir / "report.md"
    report.write_text("# report\n")
    log_outputs(run_dir, [report], {"test": {"score": 0.75, "per_field": {"date": 0.5}}}, uri=uri)
    run = client.get_run(run.info.run_id)
    assert run.data.metrics["test.score"] == 0.75 and run.data.metrics["test.field.date"] == 0.5
    assert "report.md" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_a_resumed_run_logs_into_the_same_mlflow_run(tmp_path: Path) -> None:
    uri = sqlite_store(tmp_path)
    run_dir = tmp_path / "run"
    train, val = make_examples(8), make_examples(6, offset=100)
    make_gepa(run_dir, uri).compile(seed_program(), train, val, Budget(max_metric_calls=12))
    first = json.loads((run_dir / RUN_ID_FILE).read_text())["run_id"]
    checkpoint = json.loads((run_dir / "checkpoint.json").read_text())
    checkpoint["stop_reason"] = ""  # as a crash would have left it
    (run_dir / "checkpoint.json").write_text(json.dumps(checkpoint))
    result = make_gepa(run_dir, uri).compile(seed_program(), train, val, Budget(max_metric_calls=60))
    client, run = logged_run(uri, run_dir)
    assert run.info.run_id == first
    assert len(client.search_runs([run.info.experiment_id])) == 1
    steps = [m.step for m in client.get_metric_history(first, "val_score")]
    assert sorted(set(steps)) == list(range(len(result.candidates)))


def test_without_a_uri_mlflow_is_never_imported(tmp_path: Path) -> None:
    code = f"""
import os, sys
os.environ.pop("MLFLOW_TRACKING_URI", None)
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from ieflow.optimize import Budget
from tests.support.receipts import make_examples
from tests.test_gepa import make_gepa, seed_program
from ieflow.optimize.tracking import log_outputs
from pathlib import Path
tmp = Path({str(tmp_path)!r})
run_dir = tmp / "run"
train, val = make_examples(6), make_examples(4, offset=100)
make_gepa(tmp).compile(seed_program(), train, val, Budget(max_metric_calls=20))
log_outputs(run_dir, [], {{}})
assert (run_dir / "program.json").exists()
print("mlflow" in sys.modules, (run_dir / "mlflow_run.json").exists())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["False", "False"]


@pytest.mark.slow
def test_the_optimize_flow_logs_the_report_plot_and_test_scores(
    prefect_harness, tmp_path, monkeypatch
) -> None:
    from ieflow_flows.optimize import OptimizeParams, optimize
    from ieflow_testing.fake_server import FakeLMServer
    from tests.support.receipts import fake_models
    from tests.test_optimize_flow import write_dataset

    write_dataset(tmp_path / "data", make_examples(16))
    uri = sqlite_store(tmp_path)
    with FakeLMServer(answer=fake_models) as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "fake-key")
        params = OptimizeParams(
            dataset=str(tmp_path / "data"),
            student_model=server.model_name("student"),
            reflection_model=server.model_name("reflector"),
            max_metric_calls=30,
            output_dir=str(tmp_path / "run"),
            seed=1,
            mlflow_tracking_uri=uri,
        )
        summary = optimize(params)
    client, run = logged_run(uri, tmp_path / "run" / "gepa")
    assert run.data.metrics["test.score"] == pytest.approx(summary["optimized_test"])
    assert run.data.metrics["baseline_test.score"] == pytest.approx(summary["baseline_test"])
    assert {"report.md", "pareto.png", "program.json", "result.json"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)
    }


def test_the_cli_option_reaches_the_flow_and_an_unusable_store_is_one_clear_error(monkeypatch) -> None:
    from typer.testing import CliRunner

    from ieflow.optimize.tracking import TrackingError, check
    from ieflow_cli import main as cli
    from ieflow_flows import optimize

    seen: list[object] = []
    monkeypatch.setattr(optimize, "optimize", lambda params: seen.append(params) or {})
    args = ["optimize", "--optimizer", "mipro", "--mlflow-uri", "sqlite:///mlflow.db"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert seen.pop() == optimize.OptimizeParams(optimizer="mipro", mlflow_tracking_uri="sqlite:///mlflow.db")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    check(None)  # off: nothing to check
    with pytest.raises(TrackingError, match=r"^MLflow tracking at file:\./mlruns does not work: ") as caught:
        check("file:./mlruns")  # MLflow 3 refuses its file store unless told otherwise
    assert "\n" not in str(caught.value)
    assert cli.user_error_line(caught.value).startswith("error: MLflow tracking at file:./mlruns")


def test_a_failed_mlflow_write_is_a_warning_not_the_runs_failure(tmp_path: Path, caplog) -> None:
    from ieflow.optimize.run_log import CandidateAdded
    from ieflow.optimize.tracking import MlflowTracker

    class BrokenStore:
        def log_metric(self, *args: object, **kwargs: object) -> None:
            raise ConnectionError("tracking server went away")

    tracker = MlflowTracker(BrokenStore(), "run-1")
    tracker(CandidateAdded(index=0, parents=[], changed_component="seed", val_score=0.5, tokens_per_doc=10.0))
    assert "could not log a candidate event: tracking server went away" in caplog.text
