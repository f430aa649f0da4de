"""EvoPrompt's mechanisms with scripted models: roulette-wheel selection, the GA's crossover and
mutation requests and its replace-the-worst rule, and DE's difference, best and base requests and
its replace-the-base rule. (Finding the fix, the budget and resuming after an interruption or a
crash are tested for every optimizer in test_optimizers.)"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from ieflow.optimize import Budget, OptimizerRun
from ieflow.optimize.evoprompt import ChildScored, EvoPrompt, EvoPromptConfig, EvoPromptState, Member
from ieflow.optimize.population import roulette
from ieflow.optimize.run_log import Rejected
from tests.support.evolution_scripts import evo_proposer
from tests.support.receipts import DAY_FIRST_RULE
from tests.support.scripted_lm import ScriptedLM
from tests.test_gepa import seed_program
from tests.test_optimizers import data, rule_student

TEXTS = [
    "Extract the fields below as one JSON object, alpha style.",
    "Extract the fields below as one JSON object, beta style.",
    "Extract the fields below as one JSON object, gamma style.",
    "Extract the fields below as one JSON object, delta style.",
]


def started(tmp_path: Path, variant: str, scores: list[float], proposer: Callable = evo_proposer) -> tuple:
    """An EvoPrompt run whose initial population is already made (the given texts and scores)."""
    optimizer = EvoPrompt(
        EvoPromptConfig(variant, population_size=4, subset_size=4),  # type: ignore[arg-type]
        run_dir=tmp_path / "run",
        reflection_model=ScriptedLM(proposer, "scripted/proposer"),
        student_client=ScriptedLM(rule_student),
        seed=3,
    )
    train, val = data()
    run: OptimizerRun[EvoPromptState] = optimizer.start_run(seed_program(), train, val, Budget(500))
    run.add_candidate(run.seed_program, [], "seed")
    run.state.subset = [ex.doc_id for ex in train[:4]]
    run.state.population = [Member(t, s) for t, s in zip(TEXTS, scores, strict=True)]
    run.state.initialized = True
    return optimizer, run


def last_child(run: OptimizerRun[EvoPromptState]) -> ChildScored:
    return next(e for e in reversed(run.log.events) if isinstance(e, ChildScored))


def test_roulette_draws_members_in_proportion_to_their_scores() -> None:
    rng = random.Random(11)
    scores = [0.1, 0.3, 0.6]
    counts = Counter(roulette(rng, scores) for _ in range(20_000))
    for i, score in enumerate(scores):
        assert counts[i] / 20_000 == pytest.approx(score, abs=0.015)
    second = Counter(roulette(rng, scores, exclude=2) for _ in range(20_000))
    assert second[2] == 0 and second[1] / 20_000 == pytest.approx(0.75, abs=0.015)
    uniform = Counter(roulette(rng, [0.0, 0.0]) for _ in range(4_000))
    assert uniform[0] / 4_000 == pytest.approx(0.5, abs=0.03)


def test_ga_crosses_two_roulette_parents_then_mutates_the_child(tmp_path: Path) -> None:
    optimizer, run = started(tmp_path, "ga", [0.5, 0.9, 0.2, 0.7])
    assert optimizer._ga_step(run, run.state)
    crossover, mutation = (call[-1]["content"] for call in optimizer.reflection_lm.calls)
    first, second = last_child(run).parents
    assert first != second
    assert crossover.startswith("Cross over")
    assert (
        f'Instruction 1: "{TEXTS[first]}"' in crossover and f'Instruction 2: "{TEXTS[second]}"' in crossover
    )
    crossed = evo_proposer(optimizer.reflection_lm.calls[0], {"seed": 300_000})
    assert mutation.startswith("Mutate the instruction") and f'"{crossed}"' in mutation
    assert "printed day-first (DD/MM/YYYY)" in mutation  # facts about the data ground the mutation


def test_ga_child_replaces_the_worst_member_only_when_it_scores_higher(tmp_path: Path) -> None:
    # The scripted mutation at step 0 is not the fix: the child scores 2/3 on the subset.
    optimizer, run = started(tmp_path / "a", "ga", [0.5, 0.9, 0.2, 0.7])
    optimizer._ga_step(run, run.state)
    child = last_child(run)
    assert child.score == pytest.approx(2 / 3)
    assert child.replaced == 2 and run.state.population[2].text == child.text
    assert [m.text for i, m in enumerate(run.state.population) if i != 2] == [TEXTS[0], TEXTS[1], TEXTS[3]]
    assert len(run.candidates) == 1  # not a new best: no validation pass

    optimizer, run = started(tmp_path / "b", "ga", [0.8, 0.9, 0.7, 0.75])
    optimizer._ga_step(run, run.state)
    assert last_child(run).replaced is None
    assert [m.text for m in run.state.population] == TEXTS  # the worst (0.7) beat the child (2/3)


def test_de_asks_for_the_difference_of_two_others_then_the_best_then_the_base(tmp_path: Path) -> None:
    optimizer, run = started(tmp_path, "de", [0.5, 0.9, 0.2, 0.7])
    assert optimizer._de_step(run, run.state)
    difference, mutate, combine, crossover = (call[-1]["content"] for call in optimizer.reflection_lm.calls)
    child = last_child(run)
    base, r1, r2, best = child.parents
    assert base == 0 and best == 1 and len({base, r1, r2}) == 3
    assert f'Instruction 1: "{TEXTS[r1]}"' in difference and f'Instruction 2: "{TEXTS[r2]}"' in difference
    assert "the wording; the order of the fields" in mutate  # the difference, to be mutated
    assert "dates are printed day-first" in combine and f'Instruction: "{TEXTS[best]}"' in combine
    assert (
        f'Instruction 1: "{DAY_FIRST_RULE} Keep each' in crossover
        and f'Instruction 2: "{TEXTS[base]}"' in crossover
    )
    # The child (the fix) beats the base member: it takes the base's slot and, a new best, is validated.
    assert child.text.startswith(DAY_FIRST_RULE) and child.replaced == 0 and child.improved
    assert run.state.population[0].text == child.text and run.state.population[0].candidate == 1
    assert run.state.cursor == 1  # the next step's base is the next member


def test_de_child_that_does_not_beat_its_base_is_dropped(tmp_path: Path) -> None:
    def no_fix(messages: list[dict], params: dict) -> str:
        return f"Extract the fields exactly as printed, attempt {params['seed']}."

    optimizer, run = started(tmp_path, "de", [0.9, 0.5, 0.2, 0.7], proposer=no_fix)
    assert optimizer._de_step(run, run.state)
    assert last_child(run).replaced is None and last_child(run).score == pytest.approx(2 / 3)
    assert [m.text for m in run.state.population] == TEXTS


def test_a_rejected_reply_ends_the_step_before_any_metric_call(tmp_path: Path) -> None:
    optimizer, run = started(tmp_path, "ga", [0.5, 0.9, 0.2, 0.7], proposer=lambda m, p: "")
    calls = run.tracker.metric_calls
    assert not optimizer._ga_step(run, run.state)
    assert run.tracker.metric_calls == calls and len(optimizer.reflection_lm.calls) == 1
    assert isinstance(run.log.events[-1], Rejected) and run.log.events[-1].reason == "empty proposal"


def test_state_round_trips_and_bad_configs_are_refused() -> None:
    state = EvoPromptState(["d1"], [Member("a b c", 0.5, 2)], 3, True, 4, 1)
    assert EvoPromptState.from_json(state.to_json()) == state
    with pytest.raises(ValueError, match="no version-1 checkpoints exist for evoprompt"):
        EvoPromptState.from_v1({})
    with pytest.raises(ValueError, match="variant must be 'ga' or 'de'"):
        EvoPromptConfig("pso")  # type: ignore[arg-type]


def test_the_registry_reaches_both_variants_with_their_defaults(tmp_path: Path) -> None:
    """What `ieflow optimize --optimizer evoprompt | evoprompt-de` and the benchmark build."""
    from ieflow.optimize import make_optimizer

    ga = make_optimizer("evoprompt", run_dir=tmp_path / "ga", reflection_model=ScriptedLM(evo_proposer))
    de = make_optimizer("evoprompt-de", run_dir=tmp_path / "de", reflection_model=ScriptedLM(evo_proposer))
    assert isinstance(ga, EvoPrompt) and ga.config.variant == "ga" and ga.name == "evoprompt"
    assert isinstance(de, EvoPrompt) and de.config.variant == "de" and de.name == "evoprompt-de"
