"""Optimizers by name, for the CLI and the flows."""

from ieflow.optimize.ape import APE
from ieflow.optimize.bootstrap import BootstrapFewShot
from ieflow.optimize.gepa import GEPA
from ieflow.optimize.mipro import MIPROv2
from ieflow.optimize.opro import OPRO
from ieflow.optimize.simba import SIMBA
from ieflow.optimize.spo import SPO

OPTIMIZERS: dict[str, type] = {
    "gepa": GEPA,
    "mipro": MIPROv2,
    "simba": SIMBA,
    "bootstrap": BootstrapFewShot,
    "opro": OPRO,
    "ape": APE,
    "spo": SPO,
}
