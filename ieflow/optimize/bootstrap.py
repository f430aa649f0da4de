"""BootstrapFewShot with random search: few-shot demo sets, each scored on the whole validation set.

First the seed program runs on a few training examples; the ones it gets right are "bootstrapped"
demos (documents it can already read, shown with their gold records). Then, as in DSPy's
BootstrapFewShotWithRandomSearch, candidate demo sets are tried in a fixed order: gold records of
random examples ("labeled"), the bootstrapped demos topped up with labeled ones, then random
shuffles and sizes of both. Each candidate is one full validation pass (`add_candidate`), until the
number of candidates or the budget runs out; the best on validation wins. No proposal model is used.

Why it matters here: small students copy formats from a worked example far more reliably than they
follow a written rule (ENVIRONMENT.md), and demos cannot leak values into other answers' prompts
the way free-form instructions can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ieflow.optimize.base import Optimizer, OptimizerRun
from ieflow.optimize.edits import with_demos
from ieflow.optimize.evaluator import ExampleResult
from ieflow.optimize.run_log import Bootstrapped
from ieflow.optimize.state import BootstrapState
from ieflow.program import DEMOS, ExtractionProgram


@dataclass
class BootstrapConfig:
    max_demos: int = 2  # small students and ~700-token prompts: two short demos at most
    demo_max_tokens: int = 350
    bootstrap_size: int = 8  # training examples the seed program is run on to find demos it handles
    min_score: float = 1.0  # a bootstrapped demo must score at least this
    num_candidates: int | None = None  # demo sets tried after the seed; None: until the budget is spent
    max_steps: int | None = None  # stop this session after so many candidates (time-boxing)


class BootstrapFewShot(Optimizer):
    name = "bootstrap"
    State = BootstrapState

    def __init__(self, config: BootstrapConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config or BootstrapConfig()

    def slack_calls(self) -> int:
        return 0  # every step is one validation pass, checked whole before it starts: no overshoot

    def optimize(self, run: OptimizerRun[BootstrapState]) -> None:
        cfg = self.config
        state = run.state
        if state.affordable is None:
            # Bootstrapping costs metric calls: skip it when it would leave no room for one candidate.
            state.affordable = not run.tracker.exhausted(cfg.bootstrap_size + len(run.valset))
            run.checkpoint()
        if state.good is None:
            good = (
                bootstrap(run, run.seed_program, cfg.bootstrap_size, cfg.min_score)[0]
                if state.affordable
                else []
            )
            state.good = good
            run.emit(Bootstrapped(good=good))
            run.checkpoint()
        while cfg.num_candidates is None or state.made < cfg.num_candidates:
            if run.stopping(cfg.max_steps):
                return
            run.tracker.check(len(run.valset))
            run.step += 1
            picked = self._demo_set(run, state.made, state.good)
            if picked is None:
                run.stop_reason = "no untried demo set left"
                return
            kind, ids = picked
            by_id = {ex.doc_id: ex for ex in run.trainset}
            program = with_demos(run.seed_program, [by_id[d] for d in ids], cfg.demo_max_tokens)
            run.add_candidate(program, [0], DEMOS, f"{kind} demos {', '.join(ids)}")
            state.made += 1
            run.checkpoint()
        run.stop_reason = f"tried {cfg.num_candidates} demo sets"

    def _demo_set(
        self, run: OptimizerRun[BootstrapState], k: int, good: list[str]
    ) -> tuple[str, list[str]] | None:
        """The k-th candidate: labeled, then bootstrapped, then random mixes (avoiding repeats)."""
        cfg = self.config
        ids = [ex.doc_id for ex in run.trainset]
        tried = {tuple(d.doc_id for d in c.program.demos) for c in run.candidates}
        for _ in range(10):
            if k == 0:
                kind, chosen = "labeled", []
                size = cfg.max_demos
            elif k == 1 and good:
                kind, chosen = "bootstrapped", good[: cfg.max_demos]
                size = cfg.max_demos
            else:
                kind = "random"
                size = run.rng.randint(1, cfg.max_demos)
                pool = list(good)
                run.rng.shuffle(pool)
                chosen = pool[:size]
            rest = [d for d in ids if d not in chosen]
            chosen = chosen + run.rng.sample(rest, min(len(rest), size - len(chosen)))
            if tuple(chosen) not in tried:
                return kind, chosen
            k = 2  # a repeat: draw a random mix instead
        return None


class BootstrapsDemos(Protocol):
    """A state that keeps the bootstrap sample (None until drawn)."""

    bootstrap_ids: list[str] | None


def bootstrap(
    run: OptimizerRun[Any], program: ExtractionProgram, size: int, min_score: float
) -> tuple[list[str], list[ExampleResult]]:
    """Run `program` on `size` training examples (drawn once, kept in `run.state.bootstrap_ids`)
    and return the ids it gets right (DSPy's bootstrapped demos: examples the program already
    handles, so a demo shows the answer format on a document like the ones it can read) and all
    results."""
    state: BootstrapsDemos = run.state
    if state.bootstrap_ids is None:
        ids = [ex.doc_id for ex in run.trainset]
        state.bootstrap_ids = run.rng.sample(ids, min(size, len(ids)))
    by_id = {ex.doc_id: ex for ex in run.trainset}
    results = run.evaluate(program, [by_id[d] for d in state.bootstrap_ids])
    return [r.doc_id for r in results if r.score >= min_score - 1e-9], results


__all__ = ["BootstrapConfig", "BootstrapFewShot", "bootstrap"]
