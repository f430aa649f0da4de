"""A judge model compares two records extracted from the same document, with no gold: which one
is more faithful to the document, for the schema's fields, with a one-line reason (SPO's judge).

The answer is JSON (`{"winner": "A" | "B" | "tie", "reason": ...}`); an unusable answer is asked
once more with the problem named (a cached repair turn), and is a tie when it is unusable again.
The judge reads the document as the field judge does (`JudgeScorer.document_lines`: whole when
short, else the passages that concern the fields).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ieflow.labelfree.judge import JudgeConfig, JudgeScorer
from ieflow.lm import LMClient, LMError
from ieflow.lm.structured import parse_json

WINNERS: tuple[str, ...] = ("A", "B", "tie")
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"winner": {"enum": list(WINNERS)}, "reason": {"type": "string"}},
    "required": ["winner", "reason"],
}
_SYSTEM = (
    "You compare two records extracted from the same document for the same fields. The better "
    "record has more fields with exactly the value the document gives for them (null when the "
    "document gives none). Judge by the document only. Answer with JSON only: "
    '{"winner": "A" | "B" | "tie", "reason": "<one line: which fields differ and why>"}'
)


@dataclass(frozen=True)
class PairVerdict:
    winner: str  # one of WINNERS
    reason: str
    calls: int  # judge requests it took (2 after a repair turn)
    cost_usd: float = 0.0


def read_pair_verdict(text: str) -> tuple[str, str] | str:
    """(winner, reason) from a judge's answer, or why the answer is unusable."""
    try:
        answer = parse_json(text)
    except ValueError as exc:
        return f"not JSON ({exc})"
    if not isinstance(answer, dict):
        return "the answer is not a JSON object"
    winner, reason = answer.get("winner"), answer.get("reason")
    if winner not in WINNERS:
        return f"winner {winner!r} is not one of A, B, tie"
    if not isinstance(reason, str) or not reason.strip():
        return "no reason given"
    return winner, reason.strip().splitlines()[0][:300]


class PairwiseJudge:
    """`compare(text, a, b)`: which of two records of one document is better, and why."""

    def __init__(
        self,
        schema: dict[str, Any] | str | Path,
        judge: JudgeConfig | None = None,
        lm: LMClient | None = None,
    ) -> None:
        self.reader = JudgeScorer(schema, judge, lm)  # the document view and field list it reads
        self.lm = self.reader.lm

    def compare(self, text: str, first: dict[str, Any] | None, second: dict[str, Any] | None) -> PairVerdict:
        document, _ = self.reader.document_lines(text)
        lines = [
            *self.reader.field_lines(),
            "",
            *document,
            "",
            f"Record A: {json.dumps(first, ensure_ascii=False)}",
            f"Record B: {json.dumps(second, ensure_ascii=False)}",
        ]
        messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": "\n".join(lines)}]
        text, answer, cost = self._ask(messages)
        if isinstance(answer, tuple):
            return PairVerdict(*answer, calls=1, cost_usd=cost)
        repair = f"Your answer could not be used ({answer}). Answer again with JSON only."
        retry = [*messages, {"role": "assistant", "content": text}, {"role": "user", "content": repair}]
        _, again, more = self._ask(retry)
        if isinstance(again, tuple):
            return PairVerdict(*again, calls=2, cost_usd=cost + more)
        return PairVerdict("tie", f"the judge's answer was unusable twice: {again}", 2, cost + more)

    def _ask(self, messages: list[dict]) -> tuple[str, tuple[str, str] | str, float]:
        """(the answer's text, its verdict or why it is unusable, what it cost)."""
        try:
            response = self.lm.complete(messages, response_schema=ANSWER_SCHEMA)
        except LMError as exc:
            return "", f"the judge model failed: {exc.reason}", 0.0
        return response.text, read_pair_verdict(response.text), response.cost_usd
