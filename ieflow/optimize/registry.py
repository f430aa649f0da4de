"""Optimizers by name, for the CLI and the flows."""

from ieflow.optimize.ape import APE
from ieflow.optimize.bootstrap import BootstrapFewShot
from ieflow.optimize.evoprompt import EvoPrompt, EvoPromptDE
from ieflow.optimize.gepa import GEPA
from ieflow.optimize.mipro import MIPROv2
from ieflow.optimize.opro import OPRO
from ieflow.optimize.promptagent import PromptAgent
from ieflow.optimize.promptbreeder import PromptBreeder
from ieflow.optimize.simba import SIMBA
from ieflow.optimize.spo import SPO
from ieflow.optimize.textgrad import TextGrad

OPTIMIZERS: dict[str, type] = {
    "gepa": GEPA,
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
