"""Lessons are records: the sentence is rendered from the fields (byte-identical to the sentences
runs have always written), and decisions read the fields, not the sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ieflow.optimize.lessons import Lesson, LessonLog, Note, Verdict, read_sentence

ROOT = Path(__file__).parent.parent
SENTENCE_FILES = sorted(ROOT.glob("benchmarks/results/*/*/checkpoint.json")) + sorted(
    (ROOT / "tests" / "fixtures" / "checkpoints_v1").glob("*/checkpoint.json")
)


def test_the_sentence_is_the_one_optimizers_always_wrote() -> None:
    before, after = 0.6666666666666666, 1.0
    gepa = Lesson("field:date", 'rule "Dates are day-first."', Verdict.HELPED, before, after)
    legacy = f'field:date: rule "Dates are day-first." -> helped (minibatch {before:.2f} -> {after:.2f})'
    assert gepa.text == legacy
    opro = Lesson("instruction", 'instruction "Be exact."', Verdict.of(False), 0.5, 0.25, "subset")
    assert opro.text == 'instruction: instruction "Be exact." -> did not help (subset 0.50 -> 0.25)'


@pytest.mark.parametrize("path", SENTENCE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_recorded_sentence_reads_back_into_a_record_that_renders_it(path: Path) -> None:
    for entry in json.loads(path.read_text())["lessons"]:
        # Version-2 checkpoints store the records; the sentence they render must read back too.
        text = entry if isinstance(entry, str) else LessonLog.from_json([entry]).entries[0].text
        lesson = read_sentence(text)
        assert isinstance(lesson, Lesson) and lesson.text == text


def test_decisions_read_the_fields_not_the_sentence() -> None:
    log = LessonLog(
        [
            Lesson("field:date", 'rule "did not help? then say day-first"', Verdict.HELPED, 0.5, 1.0),
            Lesson("field:date", 'rule "Copy it."', Verdict.DID_NOT_HELP, 0.5, 0.5),
            Lesson("field:date_due", 'rule "x"', Verdict.DID_NOT_HELP, 0.5, 0.5),
            Lesson("field:date", 'rule "a -> b"', Verdict.DID_NOT_HELP, 0.5, 0.0),
            Note("field:date: something else that did not help"),
        ]
    )
    assert log.edits_that_did_not_help("field:date") == ['rule "Copy it."', 'rule "a -> b"']
    assert log.edits_that_did_not_help("instruction") == []


def test_the_log_keeps_each_sentence_once_and_round_trips() -> None:
    lesson = Lesson("demos", "demo d1 (slot 0)", Verdict.HELPED, 0.25, 0.75)
    log = LessonLog.from_sentences(["a hand-written note", lesson.text])
    log.add(Lesson("demos", "demo d1 (slot 0)", Verdict.HELPED, 0.25, 0.75))
    assert log.texts() == ["a hand-written note", lesson.text]
    assert isinstance(log.entries[0], Note) and log.entries[1] == lesson
    assert LessonLog.from_json(json.loads(json.dumps(log.to_json()))).entries == log.entries
