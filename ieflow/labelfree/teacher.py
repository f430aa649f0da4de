"""PLACEHOLDER (review19): the contract of teacher drafting, so the label flow can be written and
tested before the real module lands. suggest19 implements `draft_labels` in its branch; the lead's
merge replaces this whole file with that one. Nothing here drafts anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ieflow.config import DEFAULT_REFLECTION_MODEL
from ieflow.datasets import Example
from ieflow.labelfree.drafts import DraftRecord


@dataclass(frozen=True)
class TeacherConfig:
    model: str = DEFAULT_REFLECTION_MODEL
    samples: int = 3  # self-consistency samples
    temperature: float = 0.7
    min_agreement: float = 0.67  # per field; below -> problem "teacher samples disagree"


def draft_labels(
    examples: Sequence[Example], schema: dict[str, Any], config: TeacherConfig, lm: Any = None
) -> list[DraftRecord]:
    raise NotImplementedError("teacher drafting lands with suggest19's ieflow/labelfree/teacher.py")
