"""Where ieflow keeps its caches and which models it uses by default.

Every setting has one default, read here, so the CLI, the flows and the library agree.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STUDENT_MODEL = "local/qwen2.5-coder-0.5b"
DEFAULT_REFLECTION_MODEL = "local/qwen2.5-coder-1.5b"


def home_dir() -> Path:
    """Root folder for ieflow's caches (LM responses, joined model weights). `IEFLOW_HOME` overrides."""
    return Path(os.environ.get("IEFLOW_HOME", Path.home() / ".cache" / "ieflow")).expanduser()


def lm_cache_dir() -> Path:
    """The on-disk LM response cache. `IEFLOW_LM_CACHE` overrides."""
    return Path(os.environ.get("IEFLOW_LM_CACHE", home_dir() / "lm-cache")).expanduser()


def models_dir() -> Path:
    """Where the local GGUF weights are joined. `IEFLOW_MODELS_DIR` overrides."""
    return Path(os.environ.get("IEFLOW_MODELS_DIR", home_dir() / "models")).expanduser()


def student_model() -> str:
    return os.environ.get("IEFLOW_STUDENT_MODEL", DEFAULT_STUDENT_MODEL)


def reflection_model() -> str:
    return os.environ.get("IEFLOW_REFLECTION_MODEL", DEFAULT_REFLECTION_MODEL)
