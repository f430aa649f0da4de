"""MIPROv2, SIMBA, BootstrapFewShot, OPRO, APE and PromptAgent with scripted models: each must find
the fix on a task where one exists, stay within its metric-call budget (plus one minibatch), and
resume after an interruption or a crash without spending a metric call twice."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ieflow.datasets import Example
from ieflow.optimize import Budget, Optimizer, make_optimizer
from ieflow.optimize.ape import APE, APEConfig
from ieflow.optimize.bootstrap import BootstrapConfig, BootstrapFewShot
from ieflow.optimize.evaluator import ExampleResult
from ieflow.optimize.evoprompt import EvoPrompt, EvoPromptConfig, EvoPromptDE
from ieflow.optimize.facts import data_summary, values_at
from ieflow.optimize.mipro import MIPROConfig, MIPROv2
from ieflow.optimize.opro import OPRO, OPROConfig
from ieflow.optimize.promptagent import PromptAgent, PromptAgentConfig
from ieflow.optimize.promptbreeder import PromptBreeder, PromptBreederConfig
from ieflow.optimize.prompts import error_summary
from ieflow.optimize.registry import OPTIMIZERS
from ieflow.optimize.simba import SIMBA, SIMBAConfig, hardest, variants
from ieflow.optimize.spo import SPO, SPOConfig
from ieflow.optimize.textgrad import TextGrad, TextGradConfig
from ieflow.program import ExtractionProgram, Trace
from ieflow.scoring import Scorer
from tests.support.evolution_scripts import breeder_proposer, evo_proposer
from tests.support.scripted_lm import ScriptedLM
from tests.test_gepa import make_examples, seed_program
from tests.test_spo import fair_judge

FIX = "Dates are printed day-first (DD/MM/YYYY); write them as YYYY-MM-DD."
VAGUE = "Read every field carefully and answer with the JSON record."


# -- scripted students ---------------------------------------------------------------------------------


def _answer(messages: list[dict], day_first: bool) -> str:
    document = messages[-1]["content"]
    company = document.splitlines()[1]
    day, month = re.search(r"(\d\d)/(\d\d)/2021", document).groups()
    total = float(re.search(r"TOTAL: ([\d.]+)", document).group(1))
    date = f"2021-{month}-{day}" if day_first else f"2021-{day}-{month}"
    return json.dumps({"company": company, "date": date, "total": total})


def rule_student(messages: list[dict], params: dict) -> str:
    """Reads dates day-first only when its prompt says so (as in test_gepa)."""
    return _answer(messages, "day-first" in messages[0]["content"])


def demo_student(messages: list[dict], params: dict) -> str:
    """Also gets dates right when it is shown a worked demo."""
    return _answer(messages, "day-first" in messages[0]["content"] or len(messages) > 2)


def picky_student(messages: list[dict], params: dict) -> str:
    """Gets dates right only from a demo of shop 6 (so the demo search has to look around)."""
    shown = [int(m["content"].split("\n")[1].split()[-1]) for m in messages[1:-1] if m["role"] == "user"]
    return _answer(messages, 6 in shown)


def noisy_student(messages: list[dict], params: dict) -> str:
    """Like demo_student, but sampled runs (temperature > 0) sometimes read the date right."""
    if params.get("temperature", 0) > 0:
        number = int(re.search(r"\w+ \w+ (\d+)\n", messages[-1]["content"]).group(1))
        if (number + params.get("seed", 0)) % 2 == 0:
            return _answer(messages, True)
    return demo_student(messages, params)


# -- scripted proposal models --------------------------------------------------------------------------


def grounded_proposer(messages: list[dict], params: dict) -> str:
    """Says the fix only when the prompt's facts about the data mention it (MIPRO's grounding)."""
    prompt = messages[-1]["content"]
    if "day-first" in prompt and params["seed"] % 2 == 1:
        return f"Instruction: {FIX}"
    return VAGUE if params["seed"] % 4 == 0 else "Extract the fields exactly as printed in the document."


def history_proposer(messages: list[dict], params: dict) -> str:
    """OPRO: writes the fix only once it has seen at least two scored instructions."""
    prompt = messages[-1]["content"]
    if prompt.count("score:") >= 2:
        return FIX
    return VAGUE


def inducing_proposer(messages: list[dict], params: dict) -> str:
    """APE: first copies a gold value (must be rejected), then writes a vague and a right instruction."""
    prompt = messages[-1]["content"]
    if prompt.startswith("Write a variation"):
        return "Dates appear day-first as DD/MM/YYYY, so output each date as YYYY-MM-DD."
    company = re.search(r'"company": "([^"]+)"', prompt).group(1)
    attempt = params["seed"] % 1000
    return [f"Extract the company, e.g. {company}.", VAGUE, FIX][attempt % 3]


def rule_reflector(messages: list[dict], params: dict) -> str:
    """SIMBA: a rule that does not help at the first step, the fix later."""
    if params["seed"] % 100_000 <= 1:
        return "Copy the date exactly as it is printed in the document."
    if '"date"' in messages[-1]["content"]:
        return "Rule: Dates are printed day-first (DD/MM/YYYY); write them as YYYY-MM-DD."
    return "Copy the value exactly as printed."


def critiquing_proposer(messages: list[dict], params: dict) -> str:
    """TextGrad: critiques say the day and month are swapped; the date description's rewrite holds the
    fix only once an earlier critique of it is shown (momentum); no format is chosen."""
    prompt = messages[-1]["content"]
    if messages[0]["content"].startswith("You review"):
        return "The model reads day and month the wrong way round; the documents print the day first."
    if "Reply with exactly one of" in prompt:
        return "none"
    if 'field "date"' in prompt and "Earlier critiques of this variable" in prompt:
        return FIX
    return "Read each value carefully as it is printed in the document."


def analysing_proposer(messages: list[dict], params: dict) -> str:
    """PromptAgent: an error analysis, then vague revisions of the seed; the fix only when revising
    an already revised prompt (so the search has to go two levels down)."""
    if messages[0]["content"].startswith("You analyse"):
        return "The instruction never says how dates are printed, so day and month get swapped."
    if "attempt" in messages[-1]["content"] and "Analysis of the mistakes" in messages[-1]["content"]:
        return FIX
    return f"Read the document carefully and extract every field, attempt {params['seed']}."


def judged_proposer(messages: list[dict], params: dict) -> str:
    """SPO: writes the fix once the judge's reasons say the dates are swapped."""
    if "day and month swapped" in messages[-1]["content"]:
        return FIX
    return f"Extract every field exactly as printed, attempt {params['seed']}."


def stubborn(messages: list[dict], params: dict) -> str:
    return f"Read the field carefully from the document, attempt {params.get('seed', 0)}."


# -- factories ---------------------------------------------------------------------------------------------

CONFIGS: dict[str, Callable[[int | None], Any]] = {
    "mipro": lambda steps: MIPROConfig(num_instructions=2, num_demo_sets=3, num_trials=12, max_steps=steps),
    "simba": lambda steps: SIMBAConfig(minibatch_size=3, max_steps=steps),
    "bootstrap": lambda steps: BootstrapConfig(num_candidates=5, max_steps=steps),
    "opro": lambda steps: OPROConfig(score_size=4, max_steps=steps),
    "ape": lambda steps: APEConfig(num_candidates=3, minibatch_size=4, max_steps=steps),
    "evoprompt": lambda steps: EvoPromptConfig(population_size=4, subset_size=4, max_steps=steps),
    "evoprompt-de": lambda steps: EvoPromptConfig("de", population_size=4, subset_size=4, max_steps=steps),
    "promptbreeder": lambda steps: PromptBreederConfig(population_size=4, subset_size=4, max_steps=steps),
    "textgrad": lambda steps: TextGradConfig(minibatch_size=3, max_steps=steps),
    "promptagent": lambda steps: PromptAgentConfig(batch_size=3, reward_size=3, max_iterations=steps),
    "spo": lambda steps: SPOConfig(sample_size=3, max_steps=steps),
}
CLASSES: dict[str, type[Optimizer]] = {
    "mipro": MIPROv2,
    "simba": SIMBA,
    "bootstrap": BootstrapFewShot,
    "opro": OPRO,
    "ape": APE,
    "evoprompt": EvoPrompt,
    "evoprompt-de": EvoPromptDE,
    "promptbreeder": PromptBreeder,
    "textgrad": TextGrad,
    "promptagent": PromptAgent,
    "spo": SPO,
}
# The student and proposal model for which each optimizer can find the fix.
TASKS: dict[str, tuple[Callable, Callable]] = {
    "mipro": (rule_student, grounded_proposer),
    "simba": (noisy_student, rule_reflector),
    "bootstrap": (picky_student, stubborn),
    "opro": (rule_student, history_proposer),
    "ape": (rule_student, inducing_proposer),
    "evoprompt": (rule_student, evo_proposer),
    "evoprompt-de": (rule_student, evo_proposer),
    "promptbreeder": (rule_student, breeder_proposer),
    "textgrad": (rule_student, critiquing_proposer),
    "promptagent": (rule_student, analysing_proposer),
    "spo": (rule_student, judged_proposer),
}


def make(
    name: str,
    run_dir: Path,
    steps: int | None = None,
    student: Callable | None = None,
    proposer: Callable | None = None,
) -> Optimizer:
    task_student, task_proposer = TASKS[name]
    # SPO's pairwise judge (scripted, as the other models are; it reads dates day-first)
    judge = {"judge_model": ScriptedLM(fair_judge, "scripted/judge")} if name == "spo" else {}
    return CLASSES[name](
        CONFIGS[name](steps),
        run_dir=run_dir,
        reflection_model=ScriptedLM(proposer or task_proposer, "scripted/proposer"),
        student_client=ScriptedLM(student or task_student),
        seed=3,
        **judge,
    )


def data() -> tuple[list[Example], list[Example]]:
    return make_examples(10), make_examples(6, offset=100)


def clear_stop(run_dir: Path) -> None:
    """Clear the stop mark so the run goes on, as a crash would have left it."""
    path = run_dir / "checkpoint.json"
    state = json.loads(path.read_text())
    state["stop_reason"] = ""
    path.write_text(json.dumps(state))


class Crash(RuntimeError):
    """Stands in for a kill: raised by the student in the middle of an evaluation."""


def crashing(script: Callable, after: int) -> Callable:
    count = {"n": 0}

    def run(messages: list[dict], params: dict) -> str:
        count["n"] += 1
        if count["n"] > after:
            raise Crash("killed")
        return script(messages, params)

    return run


# -- every optimizer -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_optimizer_finds_the_fix(tmp_path: Path, name: str) -> None:
    train, val = data()
    result = make(name, tmp_path / "run").compile(seed_program(), train, val, Budget(max_metric_calls=150))
    assert result.seed_score < 0.9
    assert result.best_score == pytest.approx(1.0), result.history
    best = result.best_program
    assert "day-first" in best.system_prompt() or best.demos
    assert result.usage["metric_calls"] <= 150 + make(name, tmp_path / "x").slack_calls()
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["optimizer"] == name and saved["best_val_score"] == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(CLASSES))
@pytest.mark.parametrize("budget", [20, 41])
def test_budget_is_never_overshot_by_more_than_one_minibatch(tmp_path: Path, name: str, budget: int) -> None:
    train, val = data()
    optimizer = make(name, tmp_path / "run", student=rule_student, proposer=stubborn)
    result = optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=budget))
    assert result.usage["metric_calls"] <= budget + optimizer.slack_calls()
    assert optimizer.slack_calls() <= 6  # one minibatch at most
    assert result.best_index == 0  # nothing helped, and nothing claims it did


@pytest.mark.parametrize("name", sorted(CLASSES))
@pytest.mark.parametrize("scenario", ["fix", "stubborn"])
def test_interrupted_run_resumes_without_spending_twice(tmp_path: Path, name: str, scenario: str) -> None:
    """Stopped after one step (the fix is found later) or after three (nothing ever helps, so the run
    goes on until its budget or its own limit), then resumed in a new optimizer object."""
    train, val = data()
    budget = Budget(max_metric_calls=150 if scenario == "fix" else 70)
    models: dict[str, Any] = {} if scenario == "fix" else {"student": rule_student, "proposer": stubborn}
    steps = 1 if scenario == "fix" else 3
    full = make(name, tmp_path / "a", **models).compile(seed_program(), train, val, budget)
    first = make(name, tmp_path / "b", steps=steps, **models).compile(seed_program(), train, val, budget)
    assert first.usage["metric_calls"] < full.usage["metric_calls"]
    clear_stop(tmp_path / "b")
    again = make(name, tmp_path / "b", **models)
    resumed = again.compile(seed_program(), train, val, budget)
    assert resumed.best_program.hash == full.best_program.hash
    assert resumed.usage["metric_calls"] == full.usage["metric_calls"]
    assert len(again.student_client.calls) == resumed.usage["metric_calls"] - first.usage["metric_calls"]


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_crashed_run_resumes_without_spending_twice(tmp_path: Path, name: str) -> None:
    train, val = data()
    budget = Budget(max_metric_calls=150)
    full = make(name, tmp_path / "a").compile(seed_program(), train, val, budget)
    calls = full.usage["metric_calls"]
    student = TASKS[name][0]
    with pytest.raises(Crash):
        make(name, tmp_path / "b", student=crashing(student, int(calls * 0.7))).compile(
            seed_program(), train, val, budget
        )
    again = make(name, tmp_path / "b")
    resumed = again.compile(seed_program(), train, val, budget)
    assert resumed.best_program.hash == full.best_program.hash
    assert resumed.usage["metric_calls"] == calls
    assert len(again.student_client.calls) == calls - int(calls * 0.7)


def test_finished_run_compiles_to_the_same_result(tmp_path: Path) -> None:
    train, val = data()
    first = make("opro", tmp_path / "run").compile(seed_program(), train, val, Budget(max_metric_calls=150))
    again = make("opro", tmp_path / "run")
    second = again.compile(seed_program(), train, val, Budget(max_metric_calls=150))
    assert second.best_program.hash == first.best_program.hash
    assert again.student_client.calls == [] and again.reflection_lm.calls == []


def test_make_optimizer_knows_every_name(tmp_path: Path) -> None:
    assert set(OPTIMIZERS) == {
        *("gepa", "mipro", "simba", "bootstrap", "opro", "ape"),
        *("evoprompt", "evoprompt-de", "promptbreeder", "textgrad", "promptagent", "spo"),
    }
    for name in OPTIMIZERS:
        optimizer = make_optimizer(name, run_dir=tmp_path / name, reflection_model=ScriptedLM(stubborn))
        assert isinstance(optimizer, Optimizer) and optimizer.name == name
        assert isinstance(optimizer.settings(), dict)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("nope")


# -- pieces ----------------------------------------------------------------------------------------------


def test_mipro_keeps_its_trials_in_an_optuna_journal(tmp_path: Path) -> None:
    train, val = data()
    optimizer = make("mipro", tmp_path / "run", student=demo_student)
    result = optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=150))
    journal = tmp_path / "run" / "optuna.jsonl"
    assert journal.exists() and journal.read_text().strip()
    trials = [h for h in result.history if h["event"] == "trial"]
    assert trials and all(0 <= h["score"] <= 1 for h in trials)
    space = next(h for h in result.history if h["event"] == "search_space")
    assert space["demo_sets"][0] is None and all(len(s) <= 2 for s in space["demo_sets"][1:])


@pytest.mark.parametrize("n_train", [40, 10])
def test_mipro_searches_until_the_budget_or_the_space_is_spent(tmp_path: Path, n_train: int) -> None:
    """Equal budgets for every optimizer: no fixed trial count stops MIPRO early; a search space
    whose minibatches have all been scored stops it instead of looping on ledger hits."""
    val = make_examples(6, offset=100)
    optimizer = MIPROv2(
        MIPROConfig(num_instructions=2, num_demo_sets=3),
        run_dir=tmp_path / "run",
        reflection_model=ScriptedLM(stubborn, "scripted/proposer"),
        student_client=ScriptedLM(rule_student),  # never perfect: no early stop
        seed=3,
    )
    budget = 130
    result = optimizer.compile(seed_program(), make_examples(n_train), val, Budget(max_metric_calls=budget))
    trials = [h for h in result.history if h["event"] == "trial"]
    if n_train == 40:
        assert result.stop_reason.startswith("budget")
        assert len(trials) > 20  # more than the old fixed count of 20 would have allowed
        assert budget - (optimizer.config.minibatch_size + len(val)) <= result.usage["metric_calls"] <= budget
    else:
        assert result.stop_reason.startswith("search space exhausted")
        assert result.usage["metric_calls"] < budget


def test_ape_rejects_induced_instructions_that_copy_training_values(tmp_path: Path) -> None:
    train, val = data()
    result = make("ape", tmp_path / "run").compile(seed_program(), train, val, Budget(max_metric_calls=150))
    rejected = [h for h in result.history if h["event"] == "rejected"]
    assert any("copies a training value" in h["reason"] for h in rejected)
    for candidate in result.candidates:
        assert "Acme" not in candidate.program.system_prompt()


def test_ape_by_default_goes_on_with_rounds_until_the_budget_is_spent(tmp_path: Path) -> None:
    train, val = data()
    optimizer = APE(
        APEConfig(num_candidates=3, minibatch_size=4),
        run_dir=tmp_path / "run",
        reflection_model=ScriptedLM(stubborn, "scripted/proposer"),  # a new instruction every call
        student_client=ScriptedLM(rule_student),
        seed=3,
    )
    result = optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=100))
    assert result.stop_reason.startswith("metric-call budget")
    assert 100 - 4 <= result.usage["metric_calls"] <= 100 + optimizer.slack_calls()
    rounds = {h["round"] for h in result.history if "round" in h}
    assert len(rounds) > 2, rounds  # more than the old fixed two rounds


def test_opro_shows_history_worst_first(tmp_path: Path) -> None:
    train, val = data()
    optimizer = make("opro", tmp_path / "run")
    optimizer.compile(seed_program(), train, val, Budget(max_metric_calls=150))
    prompts = [call[-1]["content"] for call in optimizer.reflection_lm.calls]
    last = prompts[-1]
    scores = [int(s) for s in re.findall(r"score: (\d+)", last)]
    assert len(scores) >= 2 and scores == sorted(scores)
    assert "printed day-first (DD/MM/YYYY)" in last  # facts about the data ground the proposal


def test_simba_picks_the_example_whose_runs_disagree() -> None:
    batch = make_examples(3)

    def result(doc: str, score: float) -> ExampleResult:
        return ExampleResult(doc, score, {"date": score}, [], None, None, 0, 0, 0.0, 0.0)

    runs = [
        [result("d0", 0.0), result("d1", 0.5), result("d2", 1.0)],
        [result("d0", 0.0), result("d1", 1.0), result("d2", 1.0)],
    ]
    hard = hardest(batch, runs)
    assert hard is not None and hard.example.doc_id == "d1" and hard.spread == pytest.approx(0.5)
    assert hardest(batch, [[result(d, 1.0) for d in ("d0", "d1", "d2")]]) is None
    programs = variants(seed_program(), 3, 0.7)
    assert len({p.hash for p in programs}) == 3 and programs[0].model_params["temperature"] == 0.0


def test_data_summary_names_patterns_not_values() -> None:
    train = make_examples(6)
    lines = data_summary(seed_program(), train)
    joined = "\n".join(lines)
    assert "date: printed day-first (DD/MM/YYYY) in 6 of 6 documents" in joined
    assert "company: printed in the document in 6 of 6 cases" in joined
    assert not any(shop in joined for shop in ("Acme", "Bright", "2021"))
    assert values_at({"lines": [{"name": "a"}, {"name": "b"}]}, "lines[].name") == ["a", "b"]


def test_error_summary_keeps_the_scorers_hint_but_no_value() -> None:
    from ieflow.optimize.evaluator import BudgetTracker, Evaluator

    program = seed_program()
    example = make_examples(1)[0]
    wrong = {**example.gold, "date": "2021-01-06", "company": "Acme (Pty) 0"}
    evaluator = Evaluator(Scorer(program.schema), BudgetTracker(Budget()))
    result = evaluator.score(example, wrong, Trace())
    lines = error_summary(program, [result])
    assert lines[1].startswith("- date wrong in 1 of 1: wrong value: day and month are swapped")
    assert not any(v in "".join(lines) for v in ("2021", "Acme", "Pty"))


def test_data_summary_handles_nested_records() -> None:
    schema = {
        "type": "object",
        "properties": {
            "paid": {"type": "boolean"},
            "vendor": {"type": "object", "properties": {"city": {"type": ["string", "null"]}}},
            "lines": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        },
    }
    program = ExtractionProgram.from_schema(schema, model="scripted/lm")
    docs = [
        Example(
            "a",
            "Paris. Bolts x2, Nuts",
            {"paid": True, "vendor": {"city": "Paris"}, "lines": [{"name": "Bolts"}, {"name": "Nuts"}]},
        ),
        Example("b", "Nothing here", {"paid": False, "vendor": {"city": None}, "lines": []}),
    ]
    joined = "\n".join(data_summary(program, docs))
    assert (
        "vendor.city: absent (null) in 1 of 2 documents; printed in the document in 1 of 1 cases." in joined
    )
    assert "lines: 0 to 2 items per document." in joined
    assert (
        "lines[].name: absent (null) in 1 of 2 documents; printed in the document in 2 of 2 cases." in joined
    )
    assert "paid" not in joined and "Paris" not in joined
