"""TextGrad's mechanism with scripted models: the backward pass critiques only the variables that
failed, the update prompt carries the momentum history (also across a resume), a rewrite that
loses on the minibatch never gets a validation pass, and formats and demos are chosen from their
closed lists. (Finding the fix, the budget and kill/resume are in test_optimizers, parametrized.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ieflow.optimize import Budget, make_optimizer
from ieflow.optimize.checkpoint import CheckpointError
from ieflow.optimize.textgrad import TextGrad, TextGradConfig, TextGradState, chosen_option, clean_critique
from ieflow.program import Demo
from tests.support.receipts import make_examples
from tests.support.scripted_lm import ScriptedLM
from tests.test_gepa import seed_program
from tests.test_optimizers import FIX, clear_stop, critiquing_proposer, data, rule_student

MOMENTUM = "Earlier critiques of this variable:"


def textgrad(
    run_dir: Path, proposer: Callable, student: Callable = rule_student, **config: object
) -> TextGrad:
    return TextGrad(
        TextGradConfig(minibatch_size=3, **config),  # type: ignore[arg-type]
        run_dir=run_dir,
        reflection_model=ScriptedLM(proposer, "scripted/proposer"),
        student_client=ScriptedLM(student),
        seed=3,
    )


def critiques(optimizer: TextGrad) -> list[str]:
    """The user prompts of the backward pass's calls, in order."""
    calls = optimizer.reflection_lm.calls  # type: ignore[attr-defined]
    return [c[-1]["content"] for c in calls if c[0]["content"].startswith("You review")]


def updates(optimizer: TextGrad) -> list[str]:
    calls = optimizer.reflection_lm.calls  # type: ignore[attr-defined]
    return [c[-1]["content"] for c in calls if c[0]["content"].startswith("You improve")]


def test_backward_pass_critiques_only_the_variables_that_failed(tmp_path: Path) -> None:
    train, val = data()
    optimizer = textgrad(tmp_path / "run", critiquing_proposer, max_steps=1)
    result = optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=150))
    asked = critiques(optimizer)
    # Only the date fails (rule_student reads it month-first): the instruction, the date's description
    # and the date's format get a critique; company and total, which never fail, get none.
    assert len(asked) == 3
    assert asked[0].startswith("The model's prompt has this part: the instruction.")
    assert asked[1].startswith('The model\'s prompt has this part: the description of the field "date".')
    assert asked[2].startswith('The model\'s prompt has this part: the output format of the field "date".')
    assert not any('"company"' in p or '"total"' in p for p in asked)
    assert all("correct is" in p or "wrong in" in p for p in asked)  # the loss: the scorer's feedback
    gradients = [h for h in result.history if h["event"] == "gradient"]
    assert [g["variable"] for g in gradients] == ["instruction", "field:date", "formats:date"]


def test_no_critique_when_nothing_fails_on_the_minibatch(tmp_path: Path) -> None:
    def right_on_training(messages: list[dict], params: dict) -> str:
        """Perfect on the training receipts (shops 0-9), wrong on the validation ones."""
        document = messages[-1]["content"]
        told = "day-first" if any(f" {n}\n" in document for n in range(10)) else ""
        system = {**messages[0], "content": messages[0]["content"] + told}
        return rule_student([system, *messages[1:]], params)

    train, val = data()
    optimizer = textgrad(tmp_path / "run", critiquing_proposer, student=right_on_training)
    result = optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=150))
    assert result.seed_score < 0.9
    assert optimizer.reflection_lm.calls == []  # type: ignore[attr-defined]
    assert any(h["event"] == "skip" for h in result.history)
    assert result.stop_reason == "10 steps in a row scored nothing new"


def test_update_prompt_carries_the_earlier_critiques(tmp_path: Path) -> None:

    def numbered(messages: list[dict], params: dict) -> str:
        step = params["seed"] % 100_000 // 100
        if messages[0]["content"].startswith("You review"):
            return f"Critique number {step}: the day and month are read the wrong way round."
        return critiquing_proposer(messages, params)

    train, val = data()
    optimizer = textgrad(tmp_path / "run", numbered)
    result = optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=150))
    date_updates = [p for p in updates(optimizer) if 'description of the field "date"' in p]
    assert MOMENTUM not in date_updates[0]  # step 1: no history yet
    assert "Critique of this part: Critique number 1:" in date_updates[0]
    second = date_updates[1]
    assert "Critique of this part: Critique number 2:" in second
    assert second.split(MOMENTUM)[1].strip().startswith("- Critique number 1:")
    # The fix came from the momentum update, and only it: step 1's rewrite did not help.
    assert result.best_score == pytest.approx(1.0)
    assert FIX in result.best_program.components["field:date"]


def test_momentum_history_survives_a_resume(tmp_path: Path) -> None:
    train, val = data()
    budget = Budget(max_metric_calls=150)
    first = textgrad(tmp_path / "run", critiquing_proposer, max_steps=1)
    first.compile(seed_program(), train, val, budget)
    saved = json.loads((tmp_path / "run" / "checkpoint.json").read_text())["state"]
    assert set(saved["gradients"]) == {"instruction", "field:date", "formats:date"}
    clear_stop(tmp_path / "run")
    again = textgrad(tmp_path / "run", critiquing_proposer)
    resumed = again.compile(seed_program(), train, val, budget)
    date_update = next(p for p in updates(again) if 'description of the field "date"' in p)
    assert MOMENTUM in date_update  # step 1's critique, read back from the checkpoint
    assert resumed.best_score == pytest.approx(1.0)


def test_a_rewrite_that_loses_on_the_minibatch_gets_no_validation_pass(tmp_path: Path) -> None:
    def hasty(messages: list[dict], params: dict) -> str:
        """Drops the company name when told to be quick."""
        record = json.loads(rule_student(messages, params))
        if "quickly" in messages[0]["content"]:
            record["company"] = None
        return json.dumps(record)

    def proposer(messages: list[dict], params: dict) -> str:
        if messages[0]["content"].startswith("You review"):
            return "The instruction does not say how to read the date."
        if "Reply with exactly one of" in messages[-1]["content"]:
            return "none"
        return "Answer quickly and skip any value that takes effort to read."

    train, val = data()
    optimizer = textgrad(tmp_path / "run", proposer, student=hasty, max_steps=1)
    result = optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=150))
    tried = [h for h in result.history if h["event"] == "proposal"]
    assert len(tried) == 1 and not tried[0]["accepted"]
    assert tried[0]["minibatch_after"] < tried[0]["minibatch_before"]
    assert len(result.candidates) == 1  # only the seed: no validation pass for the loser
    assert result.usage["metric_calls"] == len(val) + 2 * 3  # seed on val, parent and child on the minibatch
    assert any("did not help" in lesson for lesson in result.lessons)


def test_a_format_is_chosen_from_its_options(tmp_path: Path) -> None:
    def proposer(messages: list[dict], params: dict) -> str:
        if messages[0]["content"].startswith("You review"):
            return "The date is printed day first but read month first."
        if "Reply with exactly one of" in messages[-1]["content"]:
            assert "date:day-first, date:month-first, or none" in messages[-1]["content"]
            return "date:day-first"
        return "Read each value carefully as it is printed in the document."

    def format_student(messages: list[dict], params: dict) -> str:
        """Copies the date as printed when asked to (the format converts it)."""
        record = json.loads(rule_student(messages, params))
        if "DD/MM/YYYY" in messages[0]["content"]:
            y, m, d = record["date"].split("-")
            record["date"] = f"{m}/{d}/{y}"  # rule_student swapped them: the printed DD/MM/YYYY
        return json.dumps(record)

    train, val = data()
    result = textgrad(tmp_path / "run", proposer, student=format_student).compile(
        seed_program(), train, val, Budget(max_metric_calls=150)
    )
    assert result.best_program.formats == {"date": "date:day-first"}
    assert result.best_score == pytest.approx(1.0)


def test_demos_are_a_variable_only_when_the_program_has_them(tmp_path: Path) -> None:
    def proposer(messages: list[dict], params: dict) -> str:
        if messages[0]["content"].startswith("You review"):
            return "The worked example does not show a date read day first."
        if "Reply with exactly one of: 1, or none" in messages[-1]["content"]:
            return "Replace 1."
        return "none"

    train, val = data()
    shown = make_examples(1, offset=50)[0]
    program = seed_program().replace(demos=[Demo(shown.doc_id, shown.text, shown.gold)])
    optimizer = textgrad(tmp_path / "run", proposer, max_steps=1)
    result = optimizer.compile(program, train, val, Budget(max_metric_calls=150))
    assert any(
        p.startswith("The model's prompt has this part: the worked examples") for p in critiques(optimizer)
    )
    tried = next(h for h in result.history if h["event"] == "proposal")
    assert "demos" in tried["component"] and "(slot 1)" in tried["summary"]
    plain = textgrad(tmp_path / "plain", proposer, max_steps=1)
    plain.compile(seed_program(), train, val, Budget(max_metric_calls=150))
    assert not any("worked examples" in p for p in critiques(plain))


def test_replies_are_checked() -> None:
    assert chosen_option("I would pick date:day-first here.", ("date:day-first", "date:month-first")) == (
        "date:day-first"
    )
    assert chosen_option("none", ("date:day-first",)) is None
    assert chosen_option("date:day-firsts", ("date:day-first",)) is None
    assert chosen_option("slot 12", ("1", "2")) is None
    assert clean_critique("  ok  ", 60) == ""
    assert clean_critique(" ".join(["word"] * 100), 60) == " ".join(["word"] * 60)


def test_state_round_trips_and_has_no_version_1() -> None:
    state = TextGradState(gradients={"instruction": ["a b c"]}, idle=2)
    state.minibatch.order, state.minibatch.pos = ["d1", "d2"], 1
    assert TextGradState.from_json(json.loads(json.dumps(state.to_json()))) == state
    with pytest.raises(CheckpointError, match="no version-1 checkpoints exist for textgrad"):
        TextGradState.from_v1({})


def test_registry_builds_it_with_defaults(tmp_path: Path) -> None:
    optimizer = make_optimizer(
        "textgrad", run_dir=tmp_path / "run", reflection_model=ScriptedLM(critiquing_proposer)
    )
    assert isinstance(optimizer, TextGrad) and optimizer.settings()["momentum"] == 2


# -- the command -------------------------------------------------------------------------------------


def test_the_optimize_command_accepts_textgrad(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ieflow_cli import main as cli
    from ieflow_flows import optimize as optimize_flow

    seen: list[object] = []
    monkeypatch.setattr(optimize_flow, "optimize", lambda params: seen.append(params) or {})
    result = CliRunner().invoke(cli.app, ["optimize", "--optimizer", "textgrad", "--output-dir", "o"])
    assert result.exit_code == 0, result.output
    assert seen.pop().optimizer == "textgrad"  # type: ignore[attr-defined]


@pytest.mark.slow
def test_ieflow_optimize_runs_textgrad_against_a_model_server(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ieflow.program import ExtractionProgram
    from ieflow_cli import main as cli
    from ieflow_testing.fake_server import FakeLMServer
    from tests.support.receipts import fake_models
    from tests.test_optimize_flow import write_dataset

    write_dataset(tmp_path / "data", make_examples(16))
    with FakeLMServer(answer=fake_models) as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "fake-key")
        args = ["optimize", "--dataset", str(tmp_path / "data"), "--optimizer", "textgrad"]
        args += ["--student-model", server.model_name("student")]
        args += ["--reflection-model", server.model_name("reflector"), "--max-metric-calls", "60"]
        args += ["--output-dir", str(tmp_path / "run"), "--no-progress"]
        result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    program = ExtractionProgram.load(tmp_path / "run" / "program.json")
    assert program.metadata["optimizer"] == "textgrad"
    assert "day-first" in program.components["field:date"]
    history = json.loads((tmp_path / "run" / "textgrad" / "result.json").read_text())["history"]
    assert any(h["event"] == "gradient" for h in history)
