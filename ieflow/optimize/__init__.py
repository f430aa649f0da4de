"""Prompt optimizers: one interface, `compile(program, trainset, valset, budget) -> OptimizationResult`."""

from ieflow.optimize.base import Candidate, OptimizationResult, Optimizer, OptimizerRun
from ieflow.optimize.evaluator import Budget, BudgetExhausted, Evaluator, ExampleResult

__all__ = [
    "Budget",
    "BudgetExhausted",
    "Candidate",
    "Evaluator",
    "ExampleResult",
    "OptimizationResult",
    "Optimizer",
    "OptimizerRun",
    "make_optimizer",
]


def make_optimizer(name: str, **kwargs: object) -> Optimizer:
    """An optimizer by name: gepa (default), mipro, simba, bootstrap, opro, ape, textgrad,
    evoprompt (GA), evoprompt-de, promptbreeder, promptagent, spo."""
    from ieflow.optimize.registry import OPTIMIZERS

    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise ValueError(
            f"unknown optimizer {name!r}; choose one of {', '.join(sorted(OPTIMIZERS))}"
        ) from None
    return cls(**kwargs)  # type: ignore[arg-type]
