"""PromptAgent's search tree: nodes (prompt states), UCT selection, backpropagation, the final path.

Plain data and pure functions over it, so the MCTS mechanics are unit-tested without a model and the
whole tree is checkpointed as JSON (nodes, visits, Q values, children, the paths of past iterations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ieflow.program import ExtractionProgram


@dataclass
class Node:
    """One prompt state. `reward` is its program's mean score on the fixed reward minibatch;
    `visits` and `value_sum` are the MCTS statistics (Q = value_sum / visits)."""

    index: int
    program: ExtractionProgram
    reward: float
    parent: int | None = None
    depth: int = 0
    change: str = "seed"  # the component the revision that made this node changed
    children: list[int] = field(default_factory=list)
    expanded: bool = False  # errors were read and revisions proposed (possibly none passed the checks)
    visits: int = 0
    value_sum: float = 0.0

    @property
    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "program": self.program.to_dict(),
            "reward": self.reward,
            "parent": self.parent,
            "depth": self.depth,
            "change": self.change,
            "children": list(self.children),
            "expanded": self.expanded,
            "visits": self.visits,
            "value_sum": self.value_sum,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Node:
        return cls(
            index=int(data["index"]),
            program=ExtractionProgram.from_dict(data["program"]),
            reward=float(data["reward"]),
            parent=data.get("parent"),
            depth=int(data.get("depth", 0)),
            change=str(data.get("change", "seed")),
            children=[int(c) for c in data.get("children", [])],
            expanded=bool(data.get("expanded", False)),
            visits=int(data.get("visits", 0)),
            value_sum=float(data.get("value_sum", 0.0)),
        )


def uct(child: Node, parent_visits: int, exploration: float) -> float:
    """Q(child) + c * sqrt(ln N(parent) / N(child)); an unvisited child scores +inf (tried first)."""
    if child.visits == 0:
        return math.inf
    return child.q + exploration * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def select_path(nodes: list[Node], exploration: float) -> list[int]:
    """From the root, follow the child with the highest UCT (ties: the earlier child) down to a
    node that has not been expanded, or that has no children."""
    path = [0]
    node = nodes[0]
    while node.expanded and node.children:
        children = [nodes[i] for i in node.children]
        node = max(children, key=lambda c: (uct(c, node.visits, exploration), -c.index))
        path.append(node.index)
    return path


def backpropagate(nodes: list[Node], path: list[int]) -> None:
    """Each node on `path` gets one visit and, as its value, the mean reward of the path from it
    down to the end (PromptAgent's future reward, averaged so Q stays on the score's 0-1 scale)."""
    rewards = [nodes[i].reward for i in path]
    for position, index in enumerate(path):
        future = rewards[position:]
        nodes[index].visits += 1
        nodes[index].value_sum += sum(future) / len(future)


def best_child(nodes: list[Node], node: Node) -> Node | None:
    """The child with the highest reward (ties: the earlier one), or None for a leaf."""
    if not node.children:
        return None
    return max((nodes[i] for i in node.children), key=lambda c: (c.reward, -c.index))


def final_choice(nodes: list[Node], paths: list[list[int]]) -> Node:
    """PromptAgent's output: on the iteration path with the highest mean reward, the node with the
    highest reward (ties: the earlier path, the earlier node); the root when no path was walked."""
    if not paths:
        return nodes[0]
    best_path = max(enumerate(paths), key=lambda p: (sum(nodes[i].reward for i in p[1]) / len(p[1]), -p[0]))[
        1
    ]
    return max((nodes[i] for i in best_path), key=lambda n: (n.reward, -n.index))


__all__ = ["Node", "backpropagate", "best_child", "final_choice", "select_path", "uct"]
