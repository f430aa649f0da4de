"""PromptBreeder's mechanisms with scripted models: the binary tournament (the loser is overwritten
by the winner's mutant), each mutation operator's request, hyper-mutation's new mutation prompt kept
in the unit, and the lineage shown in order. (Finding the fix, the budget and resuming after an
interruption or a crash are tested for every optimizer in test_optimizers.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ieflow.optimize import Budget, OptimizerRun
from ieflow.optimize.promptbreeder import (
    Elite,
    PromptBreeder,
    PromptBreederConfig,
    PromptBreederState,
    Unit,
    UnitMutated,
)
from ieflow.optimize.prompts_promptbreeder import HYPER_MUTATION_PROMPTS, THINKING_STYLES
from tests.support.evolution_scripts import HYPER_REPLY, breeder_proposer
from tests.support.receipts import DAY_FIRST_RULE
from tests.support.scripted_lm import ScriptedLM
from tests.test_gepa import seed_program
from tests.test_optimizers import data, rule_student

STRONG = Unit(
    "Extract the fields below as one JSON object, strong.", "Make this instruction more specific.", 0.9
)
WEAK = Unit("Extract the fields below as one JSON object, weak.", "Say the same thing in fewer words.", 0.8)


def started(
    tmp_path: Path, operator: str, units: list[Unit], proposer: Callable = breeder_proposer, **config: int
) -> tuple[PromptBreeder, OptimizerRun[PromptBreederState]]:
    """A PromptBreeder run whose initial population is already made, with one mutation operator."""
    optimizer = PromptBreeder(
        PromptBreederConfig(population_size=len(units), subset_size=4, operators=(operator,), **config),
        run_dir=tmp_path / "run",
        reflection_model=ScriptedLM(proposer, "scripted/proposer"),
        student_client=ScriptedLM(rule_student),
        seed=3,
    )
    train, val = data()
    run: OptimizerRun[PromptBreederState] = optimizer.start_run(seed_program(), train, val, Budget(500))
    run.add_candidate(run.seed_program, [], "seed")
    run.state.subset = [ex.doc_id for ex in train[:4]]
    run.state.units = [Unit(u.task, u.mutation, u.score) for u in units]
    run.state.elites = [Elite(u.task, u.score) for u in sorted(units, key=lambda u: u.score)]
    run.state.initialized = True
    return optimizer, run


def requests(optimizer: PromptBreeder) -> list[str]:
    return [call[-1]["content"] for call in optimizer.reflection_lm.calls]


def last_event(run: OptimizerRun[PromptBreederState]) -> UnitMutated:
    return next(e for e in reversed(run.log.events) if isinstance(e, UnitMutated))


def test_tournament_overwrites_the_loser_with_the_winners_mutant_even_when_it_is_worse(
    tmp_path: Path,
) -> None:
    optimizer, run = started(tmp_path, "direct", [STRONG, WEAK])
    assert optimizer._tournament(run, run.state)
    (request,) = requests(optimizer)
    assert request.splitlines()[0] == STRONG.mutation and f'Instruction: "{STRONG.task}"' in request
    event = last_event(run)
    assert (event.winner, event.loser, event.operator) == (0, 1, "direct")
    mutant = run.state.units[1]
    assert (
        mutant.task.startswith("Extract each field exactly, variant") and mutant.mutation == STRONG.mutation
    )
    assert mutant.score == pytest.approx(2 / 3)  # below the loser's 0.8: the loser is replaced anyway
    assert run.state.units[0] == STRONG and not event.improved and len(run.candidates) == 1


def test_hyper_mutation_rewrites_the_mutation_prompt_and_the_unit_keeps_it(tmp_path: Path) -> None:
    optimizer, run = started(tmp_path, "hyper", [WEAK, STRONG])
    optimizer._tournament(run, run.state)
    hyper, direct = requests(optimizer)
    assert hyper.splitlines()[0] in HYPER_MUTATION_PROMPTS and f'Request: "{STRONG.mutation}"' in hyper
    assert direct.splitlines()[0] == HYPER_REPLY and f'Instruction: "{STRONG.task}"' in direct
    mutant = run.state.units[0]
    assert mutant.mutation == HYPER_REPLY and mutant.task == DAY_FIRST_RULE
    assert run.state.units[1].mutation == STRONG.mutation  # the winner keeps its own
    # A new best: an elite, and a validation pass.
    assert run.state.elites[-1] == Elite(DAY_FIRST_RULE, 1.0) and mutant.candidate == 1


def test_lineage_mutation_shows_the_latest_elites_in_order_best_last(tmp_path: Path) -> None:
    units = [
        Unit(f"Extract the fields below as JSON, elite {n}.", "Make it better.", s)
        for n, s in enumerate((0.3, 0.5, 0.8))
    ]
    optimizer, run = started(tmp_path, "lineage", units, elites_shown=2)
    optimizer._tournament(run, run.state)
    (request,) = requests(optimizer)
    assert units[0].task not in request
    assert f"1. {units[1].task}" in request and f"2. {units[2].task}" in request
    assert request.index(units[1].task) < request.index(units[2].task)
    assert (
        "(the best is last)" in request and "- date (string, YYYY-MM-DD): Receipt date." in request
    )  # the problem description


def test_eda_mutation_lists_the_population_worst_to_best(tmp_path: Path) -> None:
    units = [
        Unit(f"Extract the fields below as JSON, member {n}.", "Make it better.", s)
        for n, s in enumerate((0.6, 0.2, 0.9))
    ]
    optimizer, run = started(tmp_path, "eda", units)
    optimizer._tournament(run, run.state)
    (request,) = requests(optimizer)
    positions = [request.index(f"- {units[i].task}") for i in (1, 0, 2)]
    assert positions == sorted(positions) and "from worst to best" in request


def test_zero_order_generation_uses_a_thinking_style_and_the_problem_not_the_parent(tmp_path: Path) -> None:
    optimizer, run = started(tmp_path, "zero_order", [STRONG, WEAK])
    optimizer._tournament(run, run.state)
    (request,) = requests(optimizer)
    assert sum(style in request for style in THINKING_STYLES) == 1
    assert STRONG.task not in request and "printed day-first (DD/MM/YYYY)" in request


def test_a_rejected_mutant_leaves_the_loser_in_place_and_costs_no_metric_call(tmp_path: Path) -> None:
    optimizer, run = started(tmp_path, "direct", [STRONG, WEAK], proposer=lambda m, p: STRONG.task)
    calls = run.tracker.metric_calls
    assert not optimizer._tournament(run, run.state)
    assert run.state.units == [STRONG, WEAK] and run.tracker.metric_calls == calls


def test_state_round_trips_and_bad_configs_are_refused() -> None:
    state = PromptBreederState(["d1"], [Unit("a b c", "m", 0.5, 1)], [Elite("a b c", 0.5)], 2, True, 1)
    assert PromptBreederState.from_json(state.to_json()) == state
    with pytest.raises(ValueError, match="no version-1 checkpoints exist for promptbreeder"):
        PromptBreederState.from_v1({})
    with pytest.raises(ValueError, match="operators must be some of"):
        PromptBreederConfig(operators=("crossover",))
