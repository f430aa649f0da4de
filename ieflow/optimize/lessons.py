"""Lessons: what each tried edit did, as records; the sentence is rendered from the fields.

The sentence (`Lesson.text`) is what the reflection prompts and the saved program show, byte for
byte as before records existed, so LM cache keys do not change. Decisions read the fields
(`LessonLog.edits_that_did_not_help`), never the sentence. Lessons carried in as sentences (a
program's `lessons`, a version-1 checkpoint) are read back into records once, on the way in;
one that is not in the layout stays a `Note`: shown, never decided on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Verdict(Enum):
    HELPED = "helped"
    DID_NOT_HELP = "did not help"

    @classmethod
    def of(cls, helped: bool) -> Verdict:
        return cls.HELPED if helped else cls.DID_NOT_HELP


@dataclass(frozen=True)
class Lesson:
    """One tried edit of one component: what it was, whether it helped, and the scores before and
    after on what it was measured on ("minibatch" for GEPA/SIMBA, "subset" for OPRO)."""

    component: str
    edit: str  # the proposal's summary, e.g. 'rule "Dates are day-first."'
    verdict: Verdict
    before: float
    after: float
    measured_on: str = "minibatch"

    @property
    def text(self) -> str:
        return (
            f"{self.component}: {self.edit} -> {self.verdict.value} "
            f"({self.measured_on} {self.before:.2f} -> {self.after:.2f})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "edit": self.edit,
            "verdict": self.verdict.value,
            "before": self.before,
            "after": self.after,
            "measured_on": self.measured_on,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lesson:
        return cls(
            data["component"],
            data["edit"],
            Verdict(data["verdict"]),
            data["before"],
            data["after"],
            data.get("measured_on", "minibatch"),
        )


@dataclass(frozen=True)
class Note:
    """A carried-in lesson sentence that is not in the `Lesson` layout: kept and shown as is."""

    text: str

    def to_json(self) -> dict[str, Any]:
        return {"note": self.text}


# The layout `Lesson.text` renders; the edit is matched greedily, so an edit holding " -> " stays whole.
_SENTENCE = re.compile(
    r"(?P<component>[^ ]+?): (?P<edit>.*) -> (?P<verdict>helped|did not help) "
    r"\((?P<on>\w+) (?P<before>-?\d+\.\d\d) -> (?P<after>-?\d+\.\d\d)\)",
    re.DOTALL,
)


def read_sentence(text: str) -> Lesson | Note:
    """The record a carried-in sentence was rendered from (a `Note` if it is not one); the record
    renders back to the same sentence."""
    match = _SENTENCE.fullmatch(text)
    if match is None:
        return Note(text)
    lesson = Lesson(
        match["component"],
        match["edit"],
        Verdict(match["verdict"]),
        float(match["before"]),
        float(match["after"]),
        match["on"],
    )
    return lesson if lesson.text == text else Note(text)


class LessonLog:
    """The run's lessons in the order learned (carried-in ones first), each sentence once."""

    def __init__(self, entries: Iterable[Lesson | Note] = ()) -> None:
        self.entries: list[Lesson | Note] = []
        for entry in entries:
            self.add(entry)

    @classmethod
    def from_sentences(cls, texts: Iterable[str]) -> LessonLog:
        return cls(read_sentence(t) for t in texts)

    def add(self, entry: Lesson | Note) -> None:
        if entry.text not in self.texts():
            self.entries.append(entry)

    def texts(self) -> list[str]:
        return [entry.text for entry in self.entries]

    def edits_that_did_not_help(self, component: str) -> list[str]:
        """The edits of `component` tried and found not to help, oldest first (shown to the
        reflection model so it does not propose them again)."""
        return [
            e.edit
            for e in self.entries
            if isinstance(e, Lesson) and e.component == component and e.verdict is Verdict.DID_NOT_HELP
        ]

    def to_json(self) -> list[dict[str, Any]]:
        return [entry.to_json() for entry in self.entries]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> LessonLog:
        return cls(Note(d["note"]) if "note" in d else Lesson.from_json(d) for d in data)


__all__ = ["Lesson", "LessonLog", "Note", "Verdict", "read_sentence"]
