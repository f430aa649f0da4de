"""PromptAgent's MCTS mechanics (UCT, backpropagation, the final choice) on hand-built trees, and the
optimizer with scripted models: the tree in the checkpoint, resume mid-iteration, the CLI."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ieflow.optimize import Budget
from ieflow.optimize.promptagent import PromptAgent, PromptAgentConfig, PromptAgentState
from ieflow.optimize.promptagent_tree import Node, backpropagate, final_choice, select_path, uct
from tests.support.scripted_lm import ScriptedLM
from tests.test_gepa import seed_program
from tests.test_optimizers import Crash, analysing_proposer, crashing, data, rule_student


def tree(rewards: list[float], parents: list[int | None]) -> list[Node]:
    """Nodes with the given rewards and parents; a node with children counts as expanded."""
    program = seed_program()
    nodes = [
        Node(i, program, r, parent=p, depth=0 if p is None else 1)
        for i, (r, p) in enumerate(zip(rewards, parents, strict=True))
    ]
    for node in nodes:
        if node.parent is not None:
            nodes[node.parent].children.append(node.index)
            nodes[node.parent].expanded = True
    return nodes


def test_uct_tries_an_unvisited_child_first() -> None:
    nodes = tree([0.5, 0.9, 0.2], [None, 0, 0])
    backpropagate(nodes, [0, 1])  # child 1 visited (high value), child 2 never
    assert uct(nodes[2], nodes[0].visits, 2.5) == math.inf
    assert select_path(nodes, exploration=2.5) == [0, 2]


def test_uct_follows_the_formula_between_visited_children() -> None:
    nodes = tree([0.5, 0.9, 0.2], [None, 0, 0])
    for path in ([0, 1], [0, 2], [0, 1], [0, 1]):
        backpropagate(nodes, path)
    # N(root) = 4; a child's Q is the mean of its future rewards: its own reward (a leaf on its paths).
    assert nodes[1].visits == 3 and nodes[1].q == pytest.approx(0.9)
    assert nodes[2].visits == 1 and nodes[2].q == pytest.approx(0.2)
    bonus1, bonus2 = math.sqrt(math.log(4) / 3), math.sqrt(math.log(4) / 1)
    assert uct(nodes[1], 4, 1.0) == pytest.approx(0.9 + bonus1)
    assert uct(nodes[2], 4, 1.0) == pytest.approx(0.2 + bonus2)
    # With little exploration the high-value child wins; with much, the rarely visited one.
    assert select_path(nodes, exploration=0.1) == [0, 1]
    assert 0.9 + 2.0 * bonus1 < 0.2 + 2.0 * bonus2
    assert select_path(nodes, exploration=2.0) == [0, 2]


def test_backpropagation_updates_visits_and_q_along_the_path_only() -> None:
    nodes = tree([0.4, 0.6, 0.3, 1.0], [None, 0, 0, 1])
    nodes[3].depth = 2
    backpropagate(nodes, [0, 1, 3])
    assert [n.visits for n in nodes] == [1, 1, 0, 1]
    assert nodes[0].q == pytest.approx((0.4 + 0.6 + 1.0) / 3)  # mean of the rewards from the root down
    assert nodes[1].q == pytest.approx((0.6 + 1.0) / 2)
    assert nodes[3].q == pytest.approx(1.0)
    backpropagate(nodes, [0, 2])
    assert nodes[0].visits == 2 and nodes[0].q == pytest.approx(((0.4 + 0.6 + 1.0) / 3 + (0.4 + 0.3) / 2) / 2)
    assert nodes[2].visits == 1 and nodes[1].visits == 1


def test_final_choice_is_the_best_node_on_the_path_with_the_best_mean_reward() -> None:
    # Path [0, 2, 4] holds the single best node (0.95) but a poor middle; [0, 1, 3] is better on average.
    nodes = tree([0.5, 0.8, 0.1, 0.7, 0.95], [None, 0, 0, 1, 2])
    paths = [[0, 1, 3], [0, 2, 4]]
    assert sum(nodes[i].reward for i in paths[0]) / 3 > sum(nodes[i].reward for i in paths[1]) / 3
    assert final_choice(nodes, paths).index == 1
    assert final_choice(nodes, []).index == 0


def make_agent(run_dir: Path, student: Callable = rule_student, **config: Any) -> PromptAgent:
    return PromptAgent(
        PromptAgentConfig(batch_size=3, reward_size=3, **config),
        run_dir=run_dir,
        reflection_model=ScriptedLM(analysing_proposer, "scripted/proposer"),
        student_client=ScriptedLM(student),
        seed=3,
    )


def test_the_tree_is_searched_and_checkpointed(tmp_path: Path) -> None:
    train, val = data()
    agent = make_agent(tmp_path / "run")
    result = agent.compile(seed_program(), train, val, Budget(max_metric_calls=150))
    assert result.best_score == pytest.approx(1.0) and result.best_index == 1
    saved = json.loads((tmp_path / "run" / "checkpoint.json").read_text())["state"]
    state = PromptAgentState.from_json(saved)
    assert state.to_json() == saved
    root = state.nodes[0]
    assert root.visits == len(state.paths) >= 2 and len(root.children) == 3
    fix = state.nodes[state.chosen or 0]
    assert fix.depth == 2 and fix.reward == pytest.approx(1.0)  # found below a revised prompt
    assert "day-first" in result.best_program.system_prompt()
    # The analysis was asked first, and each revision saw it.
    calls = agent.reflection_lm.calls
    assert calls[0][0]["content"].startswith("You analyse")
    assert all("Analysis of the mistakes" in c[-1]["content"] for c in calls[1:4])
    nodes = [h for h in result.history if h["event"] == "node"]
    assert {h["component"] for h in nodes} == {"instruction", "field:date"}
    # The validation pass is spent once, on the final choice only.
    assert [c.note for c in result.candidates][1].startswith(f"tree node {fix.index}, depth 2")


def test_a_run_killed_mid_iteration_resumes_without_spending_twice(tmp_path: Path) -> None:
    train, val = data()
    budget = Budget(max_metric_calls=150)
    full = make_agent(tmp_path / "a").compile(seed_program(), train, val, budget)
    calls = full.usage["metric_calls"]
    # Killed in the simulation of the second iteration (expanding the best child of the node it
    # selected and expanded): the checkpoint holds the path in flight.
    killed_after = 34
    with pytest.raises(Crash):
        make_agent(tmp_path / "b", student=crashing(rule_student, killed_after)).compile(
            seed_program(), train, val, budget
        )
    saved = PromptAgentState.from_json(json.loads((tmp_path / "b" / "checkpoint.json").read_text())["state"])
    assert saved.iteration == 1 and len(saved.path) == 3 and saved.rollout == 1
    again = make_agent(tmp_path / "b")
    resumed = again.compile(seed_program(), train, val, budget)
    assert resumed.best_program.hash == full.best_program.hash
    assert resumed.usage["metric_calls"] == calls
    assert len(again.student_client.calls) == calls - killed_after


def test_the_budget_keeps_the_final_validation_pass(tmp_path: Path) -> None:
    train, val = data()
    agent = PromptAgent(
        PromptAgentConfig(batch_size=3, reward_size=3),
        run_dir=tmp_path / "run",
        reflection_model=ScriptedLM(lambda m, p: f"Read each field with care, attempt {p['seed']}."),
        student_client=ScriptedLM(rule_student),
        seed=3,
    )
    result = agent.compile(seed_program(), train, val, Budget(max_metric_calls=60))
    assert result.stop_reason.startswith("budget left covers no further expansion")
    assert result.usage["metric_calls"] <= 60


# -- the CLI ----------------------------------------------------------------------------------------------


def test_ieflow_optimize_offers_promptagent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ieflow optimize --optimizer promptagent` reaches the flow's params, and the flow's
    `make_optimizer` builds PromptAgent from them (run here on the scripted task, not under Prefect)."""
    import sys

    from ieflow.optimize import make_optimizer
    from ieflow_cli import main as cli
    from ieflow_flows import optimize as optimize_flow

    seen: list[Any] = []

    def flow(params: optimize_flow.OptimizeParams) -> dict[str, Any]:
        seen.append(params)
        optimizer = make_optimizer(
            params.optimizer,
            run_dir=Path(params.output_dir) / params.optimizer,
            reflection_model=ScriptedLM(analysing_proposer, "scripted/proposer"),
            student_client=ScriptedLM(rule_student),
        )
        train, val = data()
        budget = Budget(max_metric_calls=params.max_metric_calls)
        result = optimizer.compile(seed_program(), train, val, budget)
        return {"optimizer": result.optimizer, "best_val": result.best_score}

    monkeypatch.setattr(optimize_flow, "optimize", flow)
    args = ["optimize", "--dataset", "d", "--optimizer", "promptagent", "--max-metric-calls", "150"]
    monkeypatch.setattr(sys, "argv", ["ieflow", *args, "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 0
    assert seen[0].optimizer == "promptagent"
    assert json.loads(capsys.readouterr().out) == {"optimizer": "promptagent", "best_val": 1.0}
    assert (tmp_path / "promptagent" / "checkpoint.json").exists()


def test_the_state_round_trips_and_refuses_a_version_1_checkpoint(tmp_path: Path) -> None:
    from ieflow.optimize.checkpoint import Checkpoint, CheckpointError

    train, val = data()
    make_agent(tmp_path / "run", max_iterations=2).compile(
        seed_program(), train, val, Budget(max_metric_calls=150)
    )
    saved = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    state = PromptAgentState.from_json(saved["state"])
    assert PromptAgentState.from_json(json.loads(json.dumps(state.to_json()))).to_json() == saved["state"]
    assert state.nodes[0].visits == 2 and state.nodes[0].children == [1, 2, 3]
    with pytest.raises(CheckpointError, match="no version-1 checkpoints exist for promptagent"):
        Checkpoint.from_json({**saved, "version": 1}, PromptAgentState, "old.json")
