"""A judge model scores a predicted record without gold: per top-level field, correct / wrong /
unsure with a one-line reason. Usable wherever the gold `Scorer` is (`score_example` returns the
same `RecordScore`); the record's score is the share of fields judged correct.

The judge answers JSON (`{"<field>": {"verdict": ..., "reason": ...}}`). Fields whose entry is
missing or malformed are asked once more, with the problem named (a repair turn, cached like the
first answer); a field still unusable is "unsure" with the reason recorded. Every call goes through
the `LMClient`, so re-judging the same record reads the response cache.

A long document is not sent whole: it is cut into windows, BM25 ranks them per field (the same
ranker long-document programs use, `ieflow.longdoc.ChunkRanker`), and the judge reads the numbered
passages, each field pointing at its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ieflow import config
from ieflow.lm import LMClient, LMError
from ieflow.lm.structured import parse_json
from ieflow.lm.tokens import count_tokens
from ieflow.longdoc import ChunkRanker, split_windows
from ieflow.program import ExtractionProgram
from ieflow.schema import load_schema, resolve
from ieflow.scoring import FieldScore, RecordScore
from ieflow.strategy import LongDocStrategy

if TYPE_CHECKING:
    from ieflow.datasets import Example

VERDICTS: tuple[str, ...] = ("correct", "wrong", "unsure")
JUDGED_WRONG = "judged_wrong"  # error kinds of a judged field (the gold scorer has its own)
JUDGED_UNSURE = "judged_unsure"

_SYSTEM = (
    "You check a record extracted from a document. For each field, decide whether its value is "
    "correct (the document gives exactly this value for this field), wrong (the document gives "
    "another value, or none, or the value is not in the document) or unsure (the text does not let "
    "you tell). Give a one-line reason. Answer with JSON only, one entry per field: "
    '{"<field>": {"verdict": "correct" | "wrong" | "unsure", "reason": "<one line>"}}'
)


@dataclass(frozen=True)
class JudgeConfig:
    model: str = config.DEFAULT_REFLECTION_MODEL
    max_document_tokens: int = 1500  # longer documents: the judge reads passages per field
    chunk_tokens: int = 300
    top_k: int = 2  # passages per field
    max_answer_tokens: int = 600


@dataclass(frozen=True)
class FieldVerdict:
    field: str
    verdict: str  # one of VERDICTS
    reason: str


def answer_schema(fields: list[str]) -> dict[str, Any]:
    """The JSON Schema of the judge's answer (a constrained decoder follows it)."""
    entry = {
        "type": "object",
        "properties": {"verdict": {"enum": list(VERDICTS)}, "reason": {"type": "string"}},
        "required": ["verdict", "reason"],
    }
    return {"type": "object", "properties": dict.fromkeys(fields, entry), "required": fields}


def read_verdicts(text: str, fields: list[str]) -> tuple[dict[str, FieldVerdict], dict[str, str]]:
    """The usable verdicts in a judge's answer, and for every other field why it is unusable."""
    try:
        answer = parse_json(text)
    except ValueError as exc:
        return {}, dict.fromkeys(fields, f"not JSON ({exc})")
    if not isinstance(answer, dict):
        return {}, dict.fromkeys(fields, "the answer is not a JSON object")
    found: dict[str, FieldVerdict] = {}
    problems: dict[str, str] = {}
    for name in fields:
        entry = answer.get(name)
        if not isinstance(entry, dict):
            problems[name] = "no entry for the field"
            continue
        verdict, reason = entry.get("verdict"), entry.get("reason")
        if verdict not in VERDICTS:
            problems[name] = f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}"
        elif not isinstance(reason, str) or not reason.strip():
            problems[name] = "no reason given"
        else:
            found[name] = FieldVerdict(name, verdict, reason.strip().splitlines()[0][:300])
    return found, problems


class JudgeScorer:
    """Scores predicted records with a judge model; `score_example(example, record)` as the gold
    `Scorer` does, reading `example.text` instead of `example.gold`."""

    def __init__(
        self,
        schema: dict[str, Any] | str | Path,
        judge: JudgeConfig | None = None,
        lm: LMClient | None = None,
    ) -> None:
        self.schema = load_schema(schema)
        self.config = judge or JudgeConfig()
        self.lm = lm or LMClient(self.config.model, params={"max_tokens": self.config.max_answer_tokens})
        root = resolve(self.schema, self.schema)
        self.properties: dict[str, Any] = dict(root.get("properties", {}))
        self.top_level = tuple(self.properties)
        self.calls = 0  # judge requests made (a repair turn counts; cache hits too)

    @property
    def label(self) -> str:
        return f"judge {self.lm.model}"

    def score_example(self, example: Example, record: dict[str, Any] | None) -> RecordScore:
        return self.score_text(example.text, record)

    def score_text(self, text: str, record: dict[str, Any] | None) -> RecordScore:
        verdicts = self.verdicts(text, record)
        fields = {name: _field_score(verdicts[name], record) for name in self.top_level}
        correct = sum(fs.score for fs in fields.values())
        total = correct / len(self.top_level) if self.top_level else 1.0
        return RecordScore(total, fields, self.top_level)

    def verdicts(self, text: str, record: dict[str, Any] | None) -> dict[str, FieldVerdict]:
        """The judge's verdict on every top-level field (no call when there is no record)."""
        fields = list(self.top_level)
        if not isinstance(record, dict):
            return {f: FieldVerdict(f, "wrong", "no record was extracted") for f in fields}
        messages = [{"role": "system", "content": _SYSTEM}, self._question(text, record)]
        found, problems = self._ask(messages, fields)
        if problems:  # one repair turn, naming what was wrong, for the unusable fields only
            retry_fields = list(problems)
            messages = [*messages, found_answer(found, problems), _repair(problems)]
            more, problems = self._ask(messages, retry_fields)
            found |= more
        for name, why in problems.items():
            found[name] = FieldVerdict(name, "unsure", f"the judge's answer was unusable twice: {why}")
        return {name: found[name] for name in fields}

    def _ask(self, messages: list[dict], fields: list[str]) -> tuple[dict[str, FieldVerdict], dict[str, str]]:
        self.calls += 1
        try:
            response = self.lm.complete(messages, response_schema=answer_schema(fields))
        except LMError as exc:
            return {}, dict.fromkeys(fields, f"the judge model failed: {exc.reason}")
        return read_verdicts(response.text, fields)

    def _question(self, text: str, record: dict[str, Any]) -> dict[str, str]:
        document, per_field = self.document_lines(text)
        shown = record_lines(record, self.top_level, per_field)
        lines = [*self.field_lines(), "", *document, "", "Record:", *shown]
        return {"role": "user", "content": "\n".join(lines)}

    def field_lines(self) -> list[str]:
        """The schema's fields, one line each: name, type, description."""
        lines = ["Fields:"]
        for name, node in self.properties.items():
            kind = node.get("type", "value") if isinstance(node, dict) else "value"
            description = node.get("description", "") if isinstance(node, dict) else ""
            lines.append(f"- {name} ({kind}): {description}".rstrip(": "))
        return lines

    def document_lines(self, text: str) -> tuple[list[str], dict[str, list[int]]]:
        """What the judge reads of `text`: all of it when short, else the numbered passages that
        concern the fields (and per field the numbers of its passages)."""
        if count_tokens(text, self.lm.model) <= self.config.max_document_tokens:
            return ["Document:", text.strip()], {}
        passages, per_field = self.passages(text)
        numbered = [f"[{i + 1}] {p.strip()}" for i, p in enumerate(passages)]
        return ["Passages of the document:", *numbered], per_field

    def passages(self, text: str) -> tuple[list[str], dict[str, list[int]]]:
        """A long document's passages that concern some field, in text order, and per field the
        (1-based) numbers of its own passages; the first window (titles, parties) always comes."""
        strategy = LongDocStrategy(
            kind="select", chunk_tokens=self.config.chunk_tokens, top_k=self.config.top_k
        )
        program = ExtractionProgram.from_schema(self.schema, model=self.lm.model, strategy=strategy)
        windows = split_windows(text, self.config.chunk_tokens, strategy.overlap_tokens, self.lm.model)
        ranker = ChunkRanker(windows)
        chosen = {name: ranker.retrieve(program, [name]) for name in self.top_level}
        kept = sorted({0, *(i for ids in chosen.values() for i in ids)})
        number = {index: n + 1 for n, index in enumerate(kept)}
        return [windows[i] for i in kept], {name: [number[i] for i in ids] for name, ids in chosen.items()}


def record_lines(
    record: dict[str, Any], fields: tuple[str, ...], per_field: dict[str, list[int]]
) -> list[str]:
    """One line per field: its value as JSON, and the passages that concern it when there are any."""
    lines = []
    for name in fields:
        value = json.dumps(record.get(name), ensure_ascii=False)
        where = per_field.get(name)
        lines.append(f"{name}: {value}" + (f"  (see passages {', '.join(map(str, where))})" if where else ""))
    return lines


def found_answer(found: dict[str, FieldVerdict], problems: dict[str, str]) -> dict[str, str]:
    """The judge's first answer as the assistant turn of the repair (the usable part, as JSON)."""
    kept = {v.field: {"verdict": v.verdict, "reason": v.reason} for v in found.values()}
    return {"role": "assistant", "content": json.dumps(kept, ensure_ascii=False)}


def _repair(problems: dict[str, str]) -> dict[str, str]:
    wrong = "; ".join(f"{name}: {why}" for name, why in problems.items())
    return {
        "role": "user",
        "content": f"These fields had no usable verdict ({wrong}). Answer again for these fields "
        'only, with JSON: {"<field>": {"verdict": "correct" | "wrong" | "unsure", "reason": "..."}}',
    }


def _field_score(verdict: FieldVerdict, record: dict[str, Any] | None) -> FieldScore:
    predicted = record.get(verdict.field) if isinstance(record, dict) else None
    if verdict.verdict == "correct":
        return FieldScore(verdict.field, 1.0, predicted, hint=verdict.reason)
    kind = JUDGED_WRONG if verdict.verdict == "wrong" else JUDGED_UNSURE
    sentence = f"{verdict.field}: the judge says {verdict.verdict}: {verdict.reason}"
    return FieldScore(verdict.field, 0.0, predicted, None, kind, sentence, hint=verdict.reason)
