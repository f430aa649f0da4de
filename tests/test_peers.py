"""The reference libraries' adapters (benchmarks/peer_gepa.py, benchmarks/peer_dspy.py) with scripted
models: ieflow's extraction and scorer behind gepa's GEPAAdapter and DSPy's LM engine and metric. Each
part is skipped, with the reason, when its library (the `bench` extra) is not installed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ieflow.optimize.evaluator import Budget, BudgetTracker, Evaluator, Ledger
from ieflow.scoring import Scorer
from tests.support.receipts import DAY_FIRST_RULE, OTHER_RULE, make_examples, student_answer
from tests.support.scripted_lm import ScriptedLM
from tests.test_gepa import seed_program

pytest.importorskip("gepa", reason="the gepa library is the optional extra ieflow[bench]")


def student(messages: list[dict], params: dict) -> str:
    return student_answer(messages)


def gepa_reflector(messages: list[dict], params: dict) -> str:
    """Answers gepa's reflection prompt with the day-first rule when its records show date feedback."""
    prompt = messages[-1]["content"]
    return f"```\n{DAY_FIRST_RULE if 'date' in prompt else OTHER_RULE}\n```"


def make_adapter(tmp_path: Path):
    from benchmarks.peer_gepa import IeflowAdapter

    evaluator = Evaluator(
        Scorer(seed_program().schema),
        BudgetTracker(Budget(max_metric_calls=None)),
        ledger=Ledger(tmp_path / "evaluations.jsonl"),
        client=ScriptedLM(student),
    )
    return IeflowAdapter(seed_program(), evaluator)


def test_the_gepa_adapter_scores_with_ieflow_and_reflects_its_field_feedback(tmp_path: Path) -> None:
    adapter = make_adapter(tmp_path)
    batch = make_examples(4)
    seed = dict(seed_program().components)
    scored = adapter.evaluate(batch, seed)
    assert scored.trajectories is None
    scorer = Scorer(seed_program().schema)
    expected = [
        scorer.score(
            json.loads(student_answer([{"content": "x"}, {"content": f"Document:\n{ex.text}"}])), ex.gold
        ).score
        for ex in batch
    ]
    assert scored.scores == pytest.approx(expected)
    assert min(scored.scores) < 1.0
    traced = adapter.evaluate(batch, seed, capture_traces=True)
    records = adapter.make_reflective_dataset(seed, traced, ["field:date", "field:company", "instruction"])
    wrong = [i for i, s in enumerate(traced.scores) if s < 1.0]
    assert all("date" in records["field:date"][i]["Feedback"] for i in wrong)
    assert all(r["Feedback"] == "company is correct." for r in records["field:company"])
    assert records["instruction"][wrong[0]]["Feedback"] == " ".join(
        traced.trajectories[wrong[0]].result.feedback
    )
    assert records["instruction"][0]["Inputs"]["document"] == batch[0].text
    fixed = adapter.evaluate(batch, {**seed, "field:date": DAY_FIRST_RULE})
    assert fixed.scores == pytest.approx([1.0] * 4)
    with pytest.raises(ValueError, match="does not have"):
        adapter.program({"field:nowhere": "x"})


def run_gepa_lib(run_dir: Path, budget: int, reflector_calls: list | None = None):
    from benchmarks.peer_gepa import run_gepa_library

    student_lm = ScriptedLM(student)
    result = run_gepa_library(
        seed_program(),
        make_examples(8),
        make_examples(6, offset=100),
        budget,
        run_dir,
        ScriptedLM(gepa_reflector, "scripted/reflector"),
        student_lm,
    )
    return result, len(student_lm.calls)


def test_gepa_optimize_with_the_adapter_finds_the_rule_within_its_budget(tmp_path: Path) -> None:
    result, _ = run_gepa_lib(tmp_path / "run", 40)
    assert result.val_seed < 0.9
    assert result.val_best == pytest.approx(1.0)
    assert "day-first" in " ".join(result.best_program.components.values())
    assert result.metric_calls <= 40 + 3  # gepa, like ieflow, may finish one minibatch past it


def test_a_resumed_gepa_library_run_reaches_the_same_program_without_asking_twice(tmp_path: Path) -> None:
    whole, whole_calls = run_gepa_lib(tmp_path / "whole", 40)
    _, cut_calls = run_gepa_lib(tmp_path / "cut", 12)  # a run stopped early ...
    resumed, resumed_calls = run_gepa_lib(tmp_path / "cut", 40)  # ... then continued
    assert resumed.best_program.hash == whole.best_program.hash
    assert resumed.metric_calls == whole.metric_calls
    assert cut_calls + resumed_calls == whole_calls  # every document read once, over both sessions


# -- DSPy ---------------------------------------------------------------------------------------------

OUTPUT_FIELDS = re.compile(r"^\d+\. `(\w+)`", re.MULTILINE)


def dspy_fields(messages: list[dict]) -> list[str]:
    """The output fields a DSPy ChatAdapter prompt asks for (from its system message)."""
    system = messages[0]["content"]
    outputs = system.split("Your output fields are:", 1)[1] if "Your output fields are:" in system else ""
    return OUTPUT_FIELDS.findall(outputs.split("All interactions will be structured", 1)[0])


def dspy_answer(values: dict[str, object]) -> str:
    lines = [f"[[ ## {name} ## ]]\n{value}" for name, value in values.items()]
    return "\n\n".join([*lines, "[[ ## completed ## ]]"])


def dspy_student(messages: list[dict], params: dict) -> str:
    """The receipt student behind DSPy's prompt: dates month-first unless told "day-first"."""
    document = messages[-1]["content"].split("[[ ## document ## ]]", 1)[1]
    answer = json.loads(student_answer([messages[0], {"content": f"Document:{document}"}]))
    return dspy_answer(answer)


def dspy_proposer(messages: list[dict], params: dict) -> str:
    """DSPy's proposal and reflection prompts: the day-first rule wherever an instruction is asked
    for, and short text for every other field (gepa's plain prompt gets a fenced block)."""
    fields = dspy_fields(messages)
    if not fields:
        return f"```\n{DAY_FIRST_RULE}\n```"
    values = {f: DAY_FIRST_RULE if "instruction" in f else "Receipts." for f in fields}
    return json.dumps(values) if "JSON" in messages[0]["content"] else dspy_answer(values)


def test_a_dspy_program_from_the_schema_answers_through_ieflows_client(tmp_path: Path) -> None:
    import dspy

    from benchmarks.peer_dspy import ScorerMetric, TokenMeter, dspy_examples, dspy_lm, signature

    program = seed_program()
    sig = signature(program)
    assert list(sig.input_fields) == ["document"]
    assert list(sig.output_fields) == ["company", "date", "total"]
    assert sig.instructions == program.components["instruction"]
    assert sig.output_fields["date"].json_schema_extra["desc"] == program.field_descriptions()["date"]
    meter = TokenMeter()
    client = ScriptedLM(dspy_student)
    examples = make_examples(3)
    with dspy.context(lm=dspy_lm(client, meter)):
        predictions = [dspy.Predict(sig)(document=ex.document) for ex in dspy_examples(program, examples)]
    assert len(client.calls) == 3 and meter.calls == 3
    assert meter.prompt_tokens == sum(len(m["content"].split()) for call in client.calls for m in call)
    metric = ScorerMetric(program)
    scorer = Scorer(program.schema)
    for ex, dex, pred in zip(examples, dspy_examples(program, examples), predictions, strict=True):
        assert pred.company == ex.gold["company"] and pred.total == ex.gold["total"]
        expected = scorer.score({k: pred[k] for k in ("company", "date", "total")}, ex.gold).score
        assert metric(dex, pred) == pytest.approx(expected)
    assert metric.calls == 3
    feedback = ScorerMetric(program, with_feedback=True)(dspy_examples(program, examples)[1], predictions[1])
    assert feedback.score < 1.0 and "date" in feedback.feedback


def dspy_run(kind: str, run_dir: Path, budget: int):
    from benchmarks.peer_dspy import optimize_with_dspy

    student_lm, proposer = ScriptedLM(dspy_student), ScriptedLM(dspy_proposer, "scripted/proposer")
    data = (make_examples(8), make_examples(6, offset=100))
    run = optimize_with_dspy(kind, seed_program(), data, budget, run_dir, (student_lm, proposer))
    return run, len(student_lm.calls)


def test_dspy_gepa_finds_the_rule_with_ieflows_feedback_within_its_budget(tmp_path: Path) -> None:
    from benchmarks.peer_dspy import instructions_of

    run, student_calls = dspy_run("gepa", tmp_path / "run", 40)
    assert run.val_seed is not None and run.val_seed < 0.9
    assert run.val_best == pytest.approx(1.0)
    assert "day-first" in instructions_of(run.module)
    assert run.metric_calls <= 40 + 3
    # every example run counted once (not the feedback re-asks), as gepa counts and the student saw
    assert run.metric_calls == run.library_metric_calls == student_calls


def test_dspy_mipro_light_runs_on_the_same_program_and_counts_its_metric_calls(tmp_path: Path) -> None:
    from benchmarks.peer_dspy import instructions_of

    run, student_calls = dspy_run("mipro", tmp_path / "run", 40)
    assert run.val_seed is not None and run.val_seed < 0.9
    assert run.val_best == pytest.approx(1.0)
    assert "day-first" in instructions_of(run.module) or run.module.demos
    assert run.metric_calls >= 6 and student_calls >= 6


def test_a_dspy_program_is_scored_on_test_with_ieflows_scorer_and_resumes(tmp_path: Path) -> None:
    import dspy

    from benchmarks.peer_dspy import signature
    from benchmarks.peers import score_dspy_module

    program = seed_program()
    module = dspy.Predict(signature(program))
    examples = make_examples(4)
    answers = tmp_path / "test_answers.jsonl"
    first = ScriptedLM(dspy_student)
    scored = score_dspy_module(program, module, examples[:2], first, answers)
    assert len(first.calls) == 2
    again = ScriptedLM(dspy_student)
    scored = score_dspy_module(program, module, examples, again, answers)
    assert len(again.calls) == 2  # the first two documents' answers were kept
    scorer = Scorer(program.schema)
    expected = [
        scorer.score(
            json.loads(student_answer([{"content": ""}, {"content": f"Document:\n{ex.text}"}])), ex.gold
        )
        for ex in examples
    ]
    assert scored["score"] == pytest.approx(sum(r.score for r in expected) / 4)
    assert scored["per_field"]["company"] == 1.0 and scored["per_field"]["date"] < 1.0
    prompts = [sum(len(m["content"].split()) for m in call) for call in first.calls + again.calls]
    assert scored["prompt_tokens"] == pytest.approx(sum(prompts) / 4)
    assert scored["model_calls_per_doc"] == 1.0 and scored["errors"] == 0


def test_the_optimizer_report_shows_finished_peers_in_the_same_table(tmp_path: Path) -> None:
    from benchmarks.optimizers import dataset_section

    test = {"score": 0.5, "macro_f1": 0.4, "prompt_tokens": 300.0, "per_field": {"date": 0.25}}
    summary = {
        "dataset": "toy",
        "sizes": {"train": 8, "val": 6, "test": 4},
        "budget_metric_calls": 40,
        "baseline": test,
        "optimizers": {},
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    peer = {"test": test | {"score": 0.625}, "metric_calls": 43, "optimization_wall_s": 120.0, "code": "abc"}
    (tmp_path / "peer-dspy-gepa").mkdir()
    (tmp_path / "peer-dspy-gepa" / "summary.json").write_text(json.dumps(peer))
    lines = dataset_section(tmp_path / "summary.json")
    assert "| peer-dspy-gepa | 0.625 | 0.400 | 300 | 43 | 2 min | abc |" in lines
    assert "| peer-dspy-gepa | 0.25 |" in lines


def test_a_finished_peer_is_logged_to_mlflow_when_tracking_is_on(tmp_path: Path, monkeypatch) -> None:
    mlflow = pytest.importorskip("mlflow", reason="MLflow tracking is the optional extra ieflow[mlflow]")
    from benchmarks.peers import track_peer

    monkeypatch.chdir(tmp_path)  # MLflow puts a local store's artifacts under ./mlruns
    folder = tmp_path / "peer-dspy-gepa"
    folder.mkdir()
    row = {"test": {"score": 0.625, "per_field": {"date": 0.25}}, "val_seed": 0.5, "val_best": 0.75}
    row |= {"metric_calls": 43, "optimization_wall_s": 12.0, "budget_metric_calls": 40, "library": "dspy"}
    (folder / "summary.json").write_text(json.dumps(row))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    track_peer(folder, "dspy-gepa", row)  # tracking off: nothing logged
    assert not (folder / "mlflow_run.json").exists()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    track_peer(folder, "dspy-gepa", row, uri)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    run = client.get_run(json.loads((folder / "mlflow_run.json").read_text())["run_id"])
    assert (
        run.data.params["optimizer"] == "peer-dspy-gepa"
        and run.data.params["budget.max_metric_calls"] == "40"
    )
    assert run.data.metrics["test.score"] == 0.625 and run.data.metrics["test.field.date"] == 0.25
    assert run.data.metrics["optimization.metric_calls"] == 43
    assert "summary.json" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_peer_rows_name_the_library_version() -> None:
    from benchmarks.peers import library_version

    assert re.fullmatch(r"gepa \d+\.\d+\.\d+", library_version("gepa"))
