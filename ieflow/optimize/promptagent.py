"""PromptAgent: Monte Carlo tree search over prompt states, expanded by reading errors.

The paper's mechanism (Wang et al., 2023): a node is a prompt; expanding a node runs it on a batch
of training examples, asks the optimizer model for an error analysis of the failures, and from that
analysis writes several revised prompts (the children). A node's reward is its score on a fixed
held-out minibatch. Each iteration selects a path from the root by UCT (Q + c * sqrt(ln N / n),
unvisited children first), expands the leaf, simulates by expanding greedily along the best child
for a limited depth, and backpropagates the rewards along the path. At the end the path with the
highest mean reward is chosen, and on it the node with the highest reward.

Adapted to extraction programs: a revision changes one variable of the program, the instruction or
one field's rule (field description), picked from the fields that fail most on the batch; demos and
output formats are carried from the parent. The reward minibatch is drawn once from the training
set and never shown to the optimizer model; error batches come from the rest of the training set.
Only the chosen node gets a full validation pass (`run.add_candidate`): validation is not the
search signal, so the budget keeps that pass in reserve from the start.

Small-model adaptations: the analysis and every revision are separate short calls (two sentences,
one instruction or one rule), each reply is checked (`ProposalCheck`: leaks of training values,
length, repetition) before it costs a metric call, a revision that repeats a prompt already in the
tree is refused, and Q is the mean (not the sum) of future rewards, so the exploration constant
keeps the meaning it has on a 0-1 score.

The tree (nodes, visits, Q values, children, the paths walked, the iteration in flight) is the
checkpointed `PromptAgentState`, and every evaluation goes through the run's ledger, so a resumed
run spends no metric call twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ieflow.datasets import Example
from ieflow.optimize.base import Optimizer, OptimizerRun
from ieflow.optimize.checks import ProposalCheck
from ieflow.optimize.edits import propose_text, with_instruction, with_rule
from ieflow.optimize.evaluator import BudgetExhausted, ExampleResult, mean
from ieflow.optimize.lessons import Lesson, Verdict
from ieflow.optimize.promptagent_tree import Node, backpropagate, best_child, final_choice, select_path
from ieflow.optimize.prompts import error_summary, failure_lines
from ieflow.optimize.prompts_promptagent import analysis_messages, revision_messages
from ieflow.optimize.run_log import Rejected, RunEvent, Skipped
from ieflow.optimize.state import MinibatchPosition
from ieflow.optimize.strategies import EpochMinibatches
from ieflow.program import FIELD_PREFIX, INSTRUCTION, ExtractionProgram


@dataclass
class PromptAgentConfig:
    num_children: int = 3  # revised prompts written per expansion
    batch_size: int = 4  # training examples whose errors one expansion reads
    reward_size: int = 5  # the fixed held-out minibatch (from the training set) rewards are measured on
    exploration: float = 2.5  # UCT's constant c (the paper's default)
    max_depth: int = 4  # revisions from the seed to a leaf
    rollout_depth: int = 1  # expansions past the selected node in one simulation
    max_iterations: int | None = None  # None: until the budget (less the final validation pass) is spent
    max_idle_iterations: int = 6  # iterations in a row that expanded nothing: the tree is spent
    temperature: float = 0.7
    check: ProposalCheck = field(default_factory=ProposalCheck)
    analysis_check: ProposalCheck = field(default_factory=lambda: ProposalCheck(max_words=60))


@dataclass
class PromptAgentState:
    reward_ids: list[str] | None = None  # the fixed reward minibatch (drawn once)
    batches: MinibatchPosition = field(default_factory=MinibatchPosition)  # error batches, epoch-wise
    nodes: list[Node] = field(default_factory=list)
    path: list[int] = field(default_factory=list)  # the iteration in flight (empty between iterations)
    rollout: int = 0  # expansions made in the iteration in flight
    paths: list[list[int]] = field(default_factory=list)  # every finished iteration's path
    iteration: int = 0
    idle: int = 0  # iterations in a row that expanded nothing
    best_iteration: int = 0  # the last iteration that found a new best reward (for patience)
    chosen: int | None = None  # the node sent to validation at the end

    def to_json(self) -> dict[str, Any]:
        return {
            "reward_ids": self.reward_ids,
            "batches": self.batches.to_json(),
            "nodes": [n.to_json() for n in self.nodes],
            "path": list(self.path),
            "rollout": self.rollout,
            "paths": [list(p) for p in self.paths],
            "iteration": self.iteration,
            "idle": self.idle,
            "best_iteration": self.best_iteration,
            "chosen": self.chosen,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PromptAgentState:
        return cls(
            reward_ids=data.get("reward_ids"),
            batches=MinibatchPosition.from_json(data.get("batches")),
            nodes=[Node.from_json(n) for n in data.get("nodes", [])],
            path=[int(i) for i in data.get("path", [])],
            rollout=int(data.get("rollout", 0)),
            paths=[[int(i) for i in p] for p in data.get("paths", [])],
            iteration=int(data.get("iteration", 0)),
            idle=int(data.get("idle", 0)),
            best_iteration=int(data.get("best_iteration", 0)),
            chosen=data.get("chosen"),
        )

    @classmethod
    def from_v1(cls, state: dict[str, Any]) -> PromptAgentState:
        raise ValueError("no version-1 checkpoints exist for promptagent")


@dataclass
class NodeScored(RunEvent):
    """A revised prompt, a child of `parent` in the tree, scored on the reward minibatch."""

    KIND: ClassVar[str] = "node"
    node: int
    parent: int
    depth: int
    component_name: str = field(metadata={"key": "component"})
    text: str
    reward: float = field(metadata={"round": 4})
    parent_reward: float = field(metadata={"round": 4})

    @property
    def component(self) -> str | None:
        return self.component_name


class PromptAgent(Optimizer):
    name = "promptagent"
    State = PromptAgentState

    def __init__(self, config: PromptAgentConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config or PromptAgentConfig()

    def optimize(self, run: OptimizerRun[PromptAgentState]) -> None:
        state = run.state
        if state.reward_ids is None:
            ids = [ex.doc_id for ex in run.trainset]
            state.reward_ids = sorted(run.rng.sample(ids, min(self.config.reward_size, len(ids))))
            run.checkpoint()
        if not state.nodes:
            state.nodes.append(Node(0, run.seed_program, self._reward(run, run.seed_program)))
            run.checkpoint()
        try:
            while state.path or not self._should_stop(run):  # an iteration in flight ends first
                self._iterate(run)
                run.checkpoint()
        except BudgetExhausted as exc:  # a wall-time or cost limit: still validate the best found
            run.stop_reason = str(exc)
        self._finish(run)

    # -- the search ---------------------------------------------------------------------------------

    def _expansion_cost(self) -> int:
        return self.config.batch_size + self.config.num_children * self.config.reward_size

    def _should_stop(self, run: OptimizerRun[PromptAgentState]) -> bool:
        cfg, state = self.config, run.state
        patience = run.tracker.budget.patience
        if cfg.max_iterations is not None and state.iteration >= cfg.max_iterations:
            run.stop_reason = f"reached {cfg.max_iterations} iterations"
        elif run.tracker.exhausted(self._expansion_cost() + len(run.valset)):
            run.stop_reason = "budget left covers no further expansion and the final validation pass"
        elif state.idle >= cfg.max_idle_iterations:
            run.stop_reason = f"{cfg.max_idle_iterations} iterations in a row expanded nothing"
        elif patience is not None and state.iteration - state.best_iteration >= patience:
            run.stop_reason = f"no better reward in {patience} iterations"
        elif max(n.reward for n in state.nodes) >= 1.0 - 1e-9:
            run.stop_reason = "a prompt is perfect on the reward minibatch"
        return bool(run.stop_reason)

    def _iterate(self, run: OptimizerRun[PromptAgentState]) -> None:
        """One MCTS iteration: selection, expansion, simulation (resumed where it stood), backpropagation."""
        state, nodes = run.state, run.state.nodes
        if not state.path:
            state.path, state.rollout = select_path(nodes, self.config.exploration), 0
        best_before = max(n.reward for n in nodes)
        while self._expands(run, state.path):
            node = nodes[state.path[-1]]
            run.step += 1
            self._expand(run, node)
            state.rollout += 1
            if (child := best_child(nodes, node)) is not None:
                state.path.append(child.index)
            run.checkpoint()
        backpropagate(nodes, state.path)
        state.paths.append(state.path)
        state.iteration += 1
        state.idle = 0 if state.rollout else state.idle + 1
        if max(n.reward for n in nodes) > best_before + 1e-9:
            state.best_iteration = state.iteration
        state.path, state.rollout = [], 0

    def _expands(self, run: OptimizerRun[PromptAgentState], path: list[int]) -> bool:
        """Whether the end of `path` is expanded next: the selected node always (when it can be);
        in the simulation, a child that beat its parent, within `rollout_depth` expansions."""
        cfg, state = self.config, run.state
        node = state.nodes[path[-1]]
        if node.expanded or node.depth >= cfg.max_depth:
            return False
        if run.tracker.exhausted(self._expansion_cost() + len(run.valset)):
            return False
        if state.rollout == 0:
            return True
        parent = state.nodes[node.parent] if node.parent is not None else node
        return state.rollout <= cfg.rollout_depth and node.reward > parent.reward + 1e-9

    def _expand(self, run: OptimizerRun[PromptAgentState], node: Node) -> None:
        """Read the node's errors on a training batch, analyse them, write and score the children."""
        cfg = self.config
        batch = EpochMinibatches(cfg.batch_size).next(self._error_pool(run), run.rng, run.state.batches)
        results = run.evaluate(node.program, batch)
        node.expanded = True
        if all(r.score >= 1.0 - 1e-9 for r in results):
            run.emit(Skipped(parent=node.index, reason="no errors on the batch"))
            return
        targets = revision_targets(node.program, results)
        summary = error_summary(node.program, results)
        examples = {ex.doc_id: ex for ex in batch}
        worst = next((t for t in targets if t != INSTRUCTION), "")
        failures = failure_lines(worst.removeprefix(FIELD_PREFIX), results, examples) if worst else []
        analysis = self._analysis(run, node, summary, failures)
        for k in range(cfg.num_children):
            self._child(run, node, targets[k % len(targets)], analysis, summary, k)

    def _analysis(
        self, run: OptimizerRun[PromptAgentState], node: Node, summary: list[str], failures: list[str]
    ) -> str:
        """The error analysis, or "" when it failed its checks (revisions then see the errors only)."""
        text, reason = propose_text(
            self,
            run,
            analysis_messages(node.program, summary, failures),
            old="",
            check=self.config.analysis_check,
            seed=self.seed * 100_000 + node.index * 10,
            temperature=self.config.temperature,
        )
        if reason:
            run.emit(Rejected(component_name="analysis", reason=reason, parent=node.index, text=text or None))
            return ""
        return text

    def _child(
        self,
        run: OptimizerRun[PromptAgentState],
        node: Node,
        component: str,
        analysis: str,
        summary: list[str],
        k: int,
    ) -> None:
        cfg, nodes = self.config, run.state.nodes
        old = node.program.components.get(component, "")
        text, reason = propose_text(
            self,
            run,
            revision_messages(node.program, component, analysis, summary),
            old=old,
            check=cfg.check,
            seed=self.seed * 100_000 + node.index * 10 + k + 1,
            temperature=cfg.temperature,
        )
        program = node.program
        if not reason:
            program = revised(node.program, component, text)
            reason = cfg.check.check_growth(run.seed_program, program)
        if not reason and any(n.program.hash == program.hash for n in nodes):
            reason = "revision repeats a prompt already in the tree"
        if reason:
            run.emit(Rejected(component_name=component, reason=reason, parent=node.index, text=text or None))
            return
        reward = self._reward(run, program)
        child = Node(len(nodes), program, reward, parent=node.index, depth=node.depth + 1, change=component)
        nodes.append(child)
        node.children.append(child.index)
        run.emit(NodeScored(child.index, node.index, child.depth, component, text, reward, node.reward))
        edit = f'rule "{text}"' if component != INSTRUCTION else f'instruction "{text}"'
        helped = Verdict.of(reward > node.reward + 1e-9)
        run.record_lesson(Lesson(component, edit, helped, node.reward, reward, "minibatch"))

    def _finish(self, run: OptimizerRun[PromptAgentState]) -> None:
        """The final choice (best path, best node on it) gets the one full validation pass (none
        when it is already in the pool, e.g. a finished run resumed to search on)."""
        state = run.state
        node = final_choice(state.nodes, state.paths)
        if node.index != 0:
            run.step += 1
            note = f"tree node {node.index}, depth {node.depth}, reward {node.reward:.2f}"
            run.add_candidate(node.program, [0], node.change, note)
        state.chosen = node.index
        run.checkpoint()

    # -- helpers ------------------------------------------------------------------------------------

    def _error_pool(self, run: OptimizerRun[PromptAgentState]) -> list[Example]:
        held = set(run.state.reward_ids or [])
        rest = [ex for ex in run.trainset if ex.doc_id not in held]
        return rest or run.trainset  # a training set no bigger than the reward minibatch

    def _reward(self, run: OptimizerRun[PromptAgentState], program: ExtractionProgram) -> float:
        by_id = {ex.doc_id: ex for ex in run.trainset}
        minibatch = [by_id[d] for d in run.state.reward_ids or []]
        return mean([r.score for r in run.evaluate(program, minibatch)])


def revision_targets(program: ExtractionProgram, results: list[ExampleResult]) -> list[str]:
    """What the children revise: the instruction, then the fields by failure mass on the batch."""
    mass = {
        FIELD_PREFIX + path: sum(1.0 - r.fields.get(path, 1.0) for r in results)
        for path in program.field_descriptions()
    }
    failing = sorted((c for c, m in mass.items() if m > 0), key=lambda c: (-mass[c], c))
    return [INSTRUCTION, *failing]


def revised(program: ExtractionProgram, component: str, text: str) -> ExtractionProgram:
    if component == INSTRUCTION:
        return with_instruction(program, text)
    return with_rule(program, component.removeprefix(FIELD_PREFIX), text)


__all__ = ["NodeScored", "PromptAgent", "PromptAgentConfig", "PromptAgentState", "revision_targets"]
