"""Checkpoints: version-1 files (the fixtures, the committed benchmark runs) migrate and resume to
the result an uninterrupted run reaches; an unknown version fails with one clear message; typed
events reach listeners with where the run stands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ieflow.optimize import Budget
from ieflow.optimize.checkpoint import CHECKPOINT_VERSION, Checkpoint, CheckpointError
from ieflow.optimize.lessons import LessonLog
from ieflow.optimize.registry import OPTIMIZERS
from ieflow.optimize.run_log import CandidateAdded, EditTried, RunEvent, Stopped, event_from_json
from ieflow.optimize.state import (
    APEState,
    BootstrapState,
    GEPAState,
    MinibatchPosition,
    MIPROState,
    OPROState,
    ScoredInstruction,
    SIMBAState,
)
from tests.support.receipts import make_examples
from tests.test_gepa import make_gepa, seed_program
from tests.test_optimizers import clear_stop, data, make

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints_v1"
BENCHMARKS = Path(__file__).parent.parent / "benchmarks" / "results"
# The optimizers that wrote version-1 checkpoints (SPO came later: it never wrote one).
NAMES = ["ape", "bootstrap", "gepa", "mipro", "opro", "simba"]


def _runner(name: str, run_dir: Path, steps: int | None = None):
    """The optimizer, data and budget each fixture was written with (stopped after 1 step, GEPA 2)."""
    if name == "gepa":
        optimizer = make_gepa(run_dir, **({"max_steps": steps} if steps else {}))
        return optimizer, make_examples(8), make_examples(6, offset=100), Budget(max_metric_calls=60)
    train, val = data()
    return make(name, run_dir, steps=steps), train, val, Budget(max_metric_calls=150)


def _run_dir(name: str, root: Path) -> Path:
    return root / "run" if name == "gepa" else root  # make_gepa adds "run" below its folder


@pytest.mark.parametrize("name", NAMES)
def test_a_v1_checkpoint_resumes_to_the_uninterrupted_result(tmp_path: Path, name: str) -> None:
    optimizer, train, val, budget = _runner(name, tmp_path / "full")
    full = optimizer.compile(seed_program(), train, val, budget)

    resumed_dir = _run_dir(name, tmp_path / "resumed")
    shutil.copytree(FIXTURES / name, resumed_dir)
    spent_before = len((resumed_dir / "evaluations.jsonl").read_text().splitlines())
    clear_stop(resumed_dir)
    optimizer, *_ = _runner(name, tmp_path / "resumed")
    resumed = optimizer.compile(seed_program(), train, val, budget)

    assert resumed.best_program.hash == full.best_program.hash
    assert resumed.usage["metric_calls"] == full.usage["metric_calls"]
    assert [c.val_scores for c in resumed.candidates] == [c.val_scores for c in full.candidates]
    # The interrupted session's own stop event stays in the history; everything else is the same.
    interrupted_stop = resumed.history.pop(
        next(i for i, h in enumerate(resumed.history) if h["event"] == "stop")
    )
    assert interrupted_stop["reason"].startswith("reached")
    assert resumed.history == full.history
    assert resumed.lessons == full.lessons
    assert len(optimizer.student_client.calls) == full.usage["metric_calls"] - spent_before
    assert json.loads((resumed_dir / "checkpoint.json").read_text())["version"] == CHECKPOINT_VERSION


STATES = {
    "gepa": GEPAState,
    "simba": SIMBAState,
    "mipro": MIPROState,
    "bootstrap": BootstrapState,
    "opro": OPROState,
    "ape": APEState,
}


@pytest.mark.parametrize("name", NAMES)
def test_a_v1_checkpoint_migrates_to_the_state_a_run_writes_now(tmp_path: Path, name: str) -> None:
    migrated = Checkpoint.load(FIXTURES / name / "checkpoint.json", STATES[name])
    assert migrated is not None and migrated.migrated_from == 1
    optimizer, train, val, budget = _runner(name, tmp_path, steps=2 if name == "gepa" else 1)
    optimizer.compile(seed_program(), train, val, budget)
    written = json.loads((_run_dir(name, tmp_path) / "checkpoint.json").read_text())
    assert written["version"] == 2
    assert migrated.to_json()["state"] == written["state"]
    assert migrated.to_json()["history"] == written["history"]
    assert [c.to_dict() for c in migrated.candidates] == written["candidates"]
    v1_sentences = json.loads((FIXTURES / name / "checkpoint.json").read_text())["lessons"]
    assert LessonLog.from_json(written["lessons"]).texts() == migrated.lessons.texts() == v1_sentences


def test_an_unknown_version_fails_with_one_clear_message(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / "opro", run_dir)
    path = run_dir / "checkpoint.json"
    data_ = json.loads(path.read_text())
    data_["version"] = 99
    path.write_text(json.dumps(data_))
    with pytest.raises(CheckpointError) as error:
        _runner("opro", run_dir)[0].compile(seed_program(), *data(), Budget(max_metric_calls=150))
    message = str(error.value)
    assert str(path) in message and "version 99" in message and "reads versions 1, 2" in message


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "opro", tmp_path / "run")
    with pytest.raises(CheckpointError, match="checkpoint of another run"):
        make("ape", tmp_path / "run").compile(seed_program(), *data(), Budget(max_metric_calls=150))


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*/*/checkpoint.json")), ids=str)
def test_every_committed_benchmark_checkpoint_migrates_losslessly(path: Path) -> None:
    original = json.loads(path.read_text())
    migrated = Checkpoint.load(path, OPTIMIZERS[original["optimizer"]].State)
    assert migrated is not None
    again = migrated.to_json()
    for key in ("step", "best_step", "rng", "history", "stop_reason", "wall_s"):
        assert again[key] == original[key], key

    def stored(candidates: list[dict]) -> list[dict]:  # val_score is derived (a mean, summed in key order)
        return [{k: v for k, v in c.items() if k != "val_score"} for c in candidates]

    assert stored(again["candidates"]) == stored(original["candidates"])
    state_type = type(migrated.state)
    assert state_type.from_json(again["state"]) == migrated.state


def test_states_round_trip_through_json() -> None:
    states = [
        GEPAState(MinibatchPosition(["a", "b"], 1), {"h": {"field:x": 2}}, [(0, 2)], ["h:x"]),
        SIMBAState(MinibatchPosition(["a"], 0), idle=3),
        MIPROState(["a"], True, ["i0", "i1"], 2, [None, ["a"]], [5], True, 1),
        BootstrapState(["a", "b"], True, ["a"], 2),
        OPROState(["a"], [ScoredInstruction("x", 0.5, 0)], 1),
        APEState(["a"], 1, 0, [ScoredInstruction("x", 0.5, None, round=0)]),
    ]
    for state in states:
        assert type(state).from_json(json.loads(json.dumps(state.to_json()))) == state


def test_listeners_get_typed_events_with_where_the_run_stands(tmp_path: Path) -> None:
    seen: list[RunEvent] = []
    legacy: list[dict] = []
    optimizer = make_gepa(tmp_path)
    optimizer.listeners.append(seen.append)
    optimizer.on_event = legacy.append
    result = optimizer.compile(
        seed_program(), make_examples(8), make_examples(6, offset=100), Budget(max_metric_calls=60)
    )
    assert [e.to_json() for e in seen] == result.history == legacy
    assert isinstance(seen[0], CandidateAdded) and seen[0].component == "seed"
    assert isinstance(seen[-1], Stopped)
    edits = [e for e in seen if isinstance(e, EditTried)]
    assert edits and all(e.component and e.component.startswith("field:") for e in edits)
    calls = [e.progress.metric_calls for e in seen]
    assert calls == sorted(calls) and calls[-1] == result.usage["metric_calls"]
    assert all(e.progress.max_metric_calls == 60 for e in seen)
    assert seen[-1].progress.best_val_score == pytest.approx(result.best_score)
    assert [event_from_json(e.to_json()).to_json() for e in seen] == result.history


def test_each_event_reaches_the_progress_display_as_an_optimizer_step(tmp_path: Path) -> None:
    from ieflow.progress import OptimizerStep, listening

    updates: list[OptimizerStep] = []
    with listening(updates.append):
        result = make_gepa(tmp_path).compile(
            seed_program(), make_examples(8), make_examples(6, offset=100), Budget(max_metric_calls=60)
        )
    assert len(updates) == len(result.history)
    assert all(u.optimizer == "gepa" and u.max_metric_calls == 60 for u in updates)
    assert updates[-1].metric_calls == result.usage["metric_calls"] and updates[-1].event == "stop"
    assert updates[0].component == "seed" and updates[-1].best_val == pytest.approx(result.best_score)
    assert any(u.event in ("accepted", "not accepted") and u.component for u in updates)
