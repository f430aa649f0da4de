"""MLflow experiment tracking of optimization runs: an observer of the run log, off by default.

When a tracking URI is configured (the `tracking_uri` option of an optimizer, the flow's and the
CLI's `--mlflow-uri`, or the `MLFLOW_TRACKING_URI` variable) every optimization run logs to MLflow
the way DSPy and gepa users track theirs: the optimizer's settings and the budget as parameters,
each candidate's validation score and serving tokens per document as metrics over steps (the
candidate's index is the step), the best program and the result as artifacts, and, from the optimize
flow, the report, the Pareto plot and the test scores. With no URI nothing here imports mlflow or
touches the network. mlflow is the optional extra `ieflow[mlflow]` (mlflow-skinny).

The MLflow run's id is kept in the optimizer's run folder (`mlflow_run.json`), so a resumed run
logs into the same MLflow run and the flow's later files land beside the optimizer's.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ieflow.errors import ConfigError
from ieflow.optimize.evaluator import Budget
from ieflow.optimize.run_log import CandidateAdded, RunEvent, Stopped

log = logging.getLogger("ieflow.optimize")

RUN_ID_FILE = "mlflow_run.json"
DEFAULT_EXPERIMENT = "ieflow-optimize"


class TrackingError(ConfigError):
    """MLflow tracking was asked for but cannot work (mlflow not installed, a store it refuses)."""


def configured_uri(explicit: str | None = None) -> str | None:
    """The tracking URI to log to: the one given, else `MLFLOW_TRACKING_URI`; None means off."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or None


def _client(uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TrackingError(
            f"MLflow tracking is configured ({uri}) but mlflow is not installed: pip install 'ieflow[mlflow]'"
        ) from None
    try:
        return MlflowClient(tracking_uri=uri)
    except Exception as exc:  # mlflow raises its own kinds per store; all mean "cannot log here"
        raise _unusable(uri, exc) from None


def _unusable(uri: str, exc: Exception) -> TrackingError:
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return TrackingError(f"MLflow tracking at {uri} does not work: {first_line[:300]}")


def check(uri: str | None) -> None:
    """Fail before any work when tracking is configured but cannot log (one clear line)."""
    uri = configured_uri(uri)
    if uri is None:
        return
    client = _client(uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:
        raise _unusable(uri, exc) from None


def _experiment_id(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


class MlflowTracker:
    """A `RunListener` that logs one optimization run to one MLflow run (see the module doc)."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    @classmethod
    def open(
        cls,
        uri: str,
        run_dir: str | Path,
        optimizer: str,
        settings: dict[str, Any],
        budget: Budget,
        experiment: str | None = None,
    ) -> MlflowTracker:
        """The MLflow run of the optimization in `run_dir`: the one it started before (resumed), or
        a new one with the settings and budget as parameters."""
        resumed = cls.of_run_dir(uri, run_dir)
        if resumed is not None:
            return resumed
        client = _client(uri)
        experiment_id = _experiment_id(client, experiment or DEFAULT_EXPERIMENT)
        run = client.create_run(experiment_id, run_name=f"{optimizer} {Path(run_dir).name}")
        tracker = cls(client, run.info.run_id)
        params = {"optimizer": optimizer, "run_dir": str(run_dir)}
        params |= {f"budget.{k}": v for k, v in vars(budget).items() if v is not None}
        params |= {f"setting.{k}": v for k, v in settings.items() if v is not None}
        for key, value in params.items():
            client.log_param(tracker.run_id, key, str(value)[:500])
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / RUN_ID_FILE).write_text(json.dumps({"run_id": tracker.run_id, "tracking_uri": uri}))
        return tracker

    @classmethod
    def of_run_dir(cls, uri: str, run_dir: str | Path) -> MlflowTracker | None:
        """The tracker of the optimization logged from `run_dir` to `uri`; None if there is none."""
        id_file = Path(run_dir) / RUN_ID_FILE
        if not id_file.exists():
            return None
        saved = json.loads(id_file.read_text())
        return cls(_client(uri), saved["run_id"]) if saved.get("tracking_uri") == uri else None

    def __call__(self, event: RunEvent) -> None:
        """Log the event; a failed write is a warning, never the run's failure (an observer)."""
        try:
            self._log_event(event)
        except Exception as exc:
            log.warning("MLflow run %s: could not log a %s event: %s", self.run_id, event.KIND, exc)

    def _log_event(self, event: RunEvent) -> None:
        at = event.progress
        if isinstance(event, CandidateAdded):
            step = event.index
            self.client.log_metric(self.run_id, "val_score", event.val_score, step=step)
            self.client.log_metric(self.run_id, "tokens_per_doc", event.tokens_per_doc, step=step)
            self.client.log_metric(self.run_id, "metric_calls", at.metric_calls, step=step)
        elif isinstance(event, Stopped):
            self.client.log_metric(self.run_id, "best_val_score", event.best_val, step=at.step)
            self.client.log_metric(self.run_id, "metric_calls_spent", at.metric_calls, step=at.step)
            self.client.set_tag(self.run_id, "stop_reason", event.reason[:500])

    def log_files(self, paths: list[Path]) -> None:
        """Each file that exists, as an artifact of the run."""
        for path in paths:
            if path.exists():
                self.client.log_artifact(self.run_id, str(path))

    def log_scores(self, prefix: str, scores: dict[str, Any]) -> None:
        """The numbers of a score summary (e.g. the test scores) as metrics `<prefix>.<name>`."""
        for key, value in scores.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.client.log_metric(self.run_id, f"{prefix}.{key}", float(value))
        for field_name, value in scores.get("per_field", {}).items():
            self.client.log_metric(self.run_id, f"{prefix}.field.{field_name}", float(value))

    def finish(self, run_dir: str | Path, result: Any) -> None:
        """At the end of `compile`: the best program, the result file and the Pareto plot."""
        from ieflow.report import pareto_plot  # matplotlib: only when tracking

        out = Path(run_dir)
        plot = pareto_plot(result, out / "pareto.png")
        self.log_files([out / "program.json", out / "result.json", plot])
        self.client.set_terminated(self.run_id)


def listeners(optimizer: Any, budget: Budget) -> list[MlflowTracker]:
    """The tracker of `optimizer`'s run (opened or resumed) when it has a tracking URI; else none."""
    if not optimizer.tracking_uri:
        return []
    settings = optimizer.settings()
    return [MlflowTracker.open(optimizer.tracking_uri, optimizer.run_dir, optimizer.name, settings, budget)]


def finish(optimizer: Any, result: Any) -> None:
    """At the end of `optimizer.compile`: its tracked run's artifacts (nothing when not tracked)."""
    uri = optimizer.tracking_uri
    tracker = MlflowTracker.of_run_dir(uri, optimizer.run_dir) if uri else None
    if tracker is not None:
        tracker.finish(optimizer.run_dir, result)


def log_outputs(
    run_dir: str | Path,
    files: list[Path],
    test_scores: dict[str, dict[str, Any]],
    uri: str | None = None,
) -> None:
    """Add a flow's or benchmark's later outputs (report, plot, test scores by label) to the MLflow
    run of the optimization in `run_dir`; nothing when tracking is off or that run was not tracked."""
    uri = configured_uri(uri)
    tracker = MlflowTracker.of_run_dir(uri, run_dir) if uri else None
    if tracker is None:
        return
    tracker.log_files(files)
    for label, scores in test_scores.items():
        tracker.log_scores(label, scores)


__all__ = ["MlflowTracker", "TrackingError", "check", "configured_uri", "finish", "listeners", "log_outputs"]
