"""Optimizers by name, for the CLI and the flows."""

from ieflow.optimize.gepa import GEPA

OPTIMIZERS: dict[str, type] = {"gepa": GEPA}
