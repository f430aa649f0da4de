"""Field-by-field scoring of a predicted record against its gold record, with feedback sentences.

Scores are in [0, 1]. Scalars score 1 (right), `format_credit` (right value, wrong notation) or 0.
Lists of scalars are compared as sets and score their F1. Arrays of objects are first matched one
to one (optimal assignment on item similarity), then score the F1 of the matched item scores; their
leaf paths (`lines[].name`) score the F1 of that leaf over the matched items. Objects score the mean
of their properties. The record score is the mean of the top-level field scores.
Nulls: both null is right; a value where gold is null is "extra" (a false positive); null where
gold has a value is "missing". A prediction that is not an object (None after a parse failure)
misses every field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rapidfuzz import process
from scipy.optimize import linear_sum_assignment

from ieflow.schema import field_paths, load_schema, resolve
from ieflow.scoring import compare, feedback


@dataclass(slots=True)
class FieldScore:
    path: str
    score: float
    predicted: Any = None
    expected: Any = None
    error_kind: str | None = None
    feedback: str | None = None
    precision: float | None = None  # sets and arrays of objects
    recall: float | None = None
    f1: float | None = None
    tp: float = 0.0  # soft counts for micro/macro F1: a format error is half found
    fp: float = 0.0
    fn: float = 0.0
    hint: str | None = None

    @property
    def correct(self) -> bool:
        return self.error_kind is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "score": self.score,
            "predicted": _jsonable(self.predicted),
            "expected": _jsonable(self.expected),
            "error_kind": self.error_kind,
            "feedback": self.feedback,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


@dataclass(slots=True)
class RecordScore:
    score: float
    fields: dict[str, FieldScore]
    top_level: tuple[str, ...]
    unknown_keys: list[str] = field(default_factory=list)

    @property
    def feedback(self) -> list[str]:
        """Feedback sentences of the wrong top-level fields, in schema order."""
        return [fs.feedback for p in self.top_level if (fs := self.fields[p]).feedback]

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "feedback": self.feedback,
            "unknown_keys": list(self.unknown_keys),
            "fields": {path: fs.to_dict() for path, fs in self.fields.items()},
        }


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def _f1(tp: float, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    if n_pred == 0 and n_gold == 0:
        return 1.0, 1.0, 1.0
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, min(1.0, f1)


def _prf_counts(tp: float, n_pred: int, n_gold: int) -> dict[str, float]:
    precision, recall, f1 = _f1(tp, n_pred, n_gold)
    fp, fn = n_pred - tp, n_gold - tp
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def _count_kind(n_pred: int, n_gold: int, otherwise: str) -> str:
    """The error kind of a wrong list: nothing predicted, nothing expected, or a wrong number of items."""
    if n_pred == 0:
        return compare.MISSING
    if n_gold == 0:
        return compare.EXTRA
    return compare.WRONG_COUNT if n_pred != n_gold else otherwise


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class Scorer:
    """Scores predicted records against gold records for one schema.

    `schema` is a dict (or a path / Pydantic model, loaded with `load_schema`). `format_credit` is the
    score of a right value written in the wrong notation.
    """

    def __init__(self, schema: dict[str, Any] | str | Path | type, *, format_credit: float = 0.5) -> None:
        if not 0.0 <= format_credit <= 1.0:
            raise ValueError(f"format_credit must be in [0, 1], got {format_credit}")
        self.schema = load_schema(schema)
        root = resolve(self.schema, self.schema)
        self.specs = {
            name: compare.build_spec(self.schema, sub, name, format_credit)
            for name, sub in root["properties"].items()
        }
        self.paths = field_paths(self.schema)
        self.top_level = tuple(self.specs)

    # -- public ---------------------------------------------------------------------------------

    def score(self, predicted: dict[str, Any] | None, gold: dict[str, Any]) -> RecordScore:
        if not isinstance(gold, dict):
            raise TypeError(f"gold must be a dict, got {type(gold).__name__}")
        if not isinstance(predicted, dict):
            return self._no_output(predicted, gold)
        fields: dict[str, FieldScore] = {}
        for name, spec in self.specs.items():
            fields[name] = self._value(spec, predicted.get(name), gold.get(name), fields)
        unknown = [k for k in predicted if k not in self.specs]
        self._cross_field_hints(fields, predicted, gold, unknown)
        total = sum(fields[name].score for name in self.top_level)
        return RecordScore(
            total / len(self.top_level) if self.top_level else 1.0,
            {p: fields[p] for p in self.paths if p in fields},
            self.top_level,
            unknown,
        )

    # -- dispatch -------------------------------------------------------------------------------

    def _value(self, spec: compare.FieldSpec, pred: Any, gold: Any, out: dict[str, FieldScore]) -> FieldScore:
        if spec.kind == "scalar":
            fs = self._scalar(spec, pred, gold)
        elif spec.kind == "scalar_array":
            fs = self._set(spec, pred, gold)
        elif spec.kind == "object":
            fs = self._object(spec, pred, gold, out)
        else:
            fs = self._object_array(spec, pred, gold, out)
        out[spec.path] = fs
        return fs

    def _wrong(
        self,
        spec: compare.FieldSpec,
        score: float,
        pred: Any,
        gold: Any,
        kind: str,
        hint: str | None,
        **counts: float,
    ) -> FieldScore:
        sentence = feedback.sentence(spec.path, pred, gold, kind, hint)
        return FieldScore(spec.path, score, pred, gold, kind, sentence, hint=hint, **counts)

    # -- scalars --------------------------------------------------------------------------------

    def _scalar(self, spec: compare.FieldSpec, pred: Any, gold: Any) -> FieldScore:
        if type(pred) is type(gold) and pred == gold and not isinstance(pred, dict | list):
            # Identical values are right whatever they look like (even a gold value of 'N/A' or '.').
            return FieldScore(spec.path, 1.0, pred, gold, tp=0.0 if _is_blank(gold) else 1.0)
        gold_null, pred_null = _is_blank(gold), _is_blank(pred) or compare.is_null_word(pred)
        if gold_null:
            if _is_blank(pred):
                return FieldScore(spec.path, 1.0, pred, gold)
            if pred_null:  # 'N/A' for an absent field: right answer, wrong notation
                hint = f"write JSON null, not {pred!r}, when the field is absent"
                return self._wrong(
                    spec, spec.format_credit, pred, None, compare.FORMAT, hint, fp=1 - spec.format_credit
                )
            return self._wrong(spec, 0.0, pred, None, compare.EXTRA, None, fp=1.0)
        if pred_null:
            hint = None if pred is None else f"wrote {pred!r} but the value is given in the document"
            return self._wrong(spec, 0.0, pred, gold, compare.MISSING, hint, fn=1.0)
        outcome = compare.compare_scalar(pred, gold, spec)
        miss = 1.0 - outcome.score
        if outcome.kind is None:
            return FieldScore(spec.path, outcome.score, pred, gold, tp=outcome.score)
        return self._wrong(
            spec, outcome.score, pred, gold, outcome.kind, outcome.hint, tp=outcome.score, fp=miss, fn=miss
        )

    # -- lists of scalars, as sets ---------------------------------------------------------------

    def _items(self, spec: compare.FieldSpec, value: Any) -> tuple[list[Any], bool]:
        """Non-null items, duplicates (by canonical key) dropped; True if a bare scalar was wrapped."""
        wrapped = not isinstance(value, list | tuple) and not _is_blank(value)
        raw = [value] if wrapped else list(value or [])
        seen, items = set(), []
        for item in raw:
            if _is_blank(item) or compare.is_null_word(item):
                continue
            key = compare.item_key(item, spec)
            if key not in seen:
                seen.add(key)
                items.append(item)
        return items, wrapped

    def _set(self, spec: compare.FieldSpec, pred: Any, gold: Any) -> FieldScore:
        gold_items, _ = self._items(spec, gold)
        pred_items, wrapped = self._items(spec, pred)
        n_pred, n_gold = len(pred_items), len(gold_items)
        pairs: list[tuple[int, int, compare.Outcome]] = []
        gold_by_key = {compare.item_key(g, spec): j for j, g in enumerate(gold_items)}
        left_pred = []
        for i, item in enumerate(pred_items):
            j = gold_by_key.pop(compare.item_key(item, spec), None)
            if j is None:
                left_pred.append(i)
            else:
                pairs.append((i, j, compare.CORRECT))
        left_gold = sorted(gold_by_key.values())
        if left_pred and left_gold:  # the rest: best one-to-one pairing by comparator score
            outcomes = [
                [compare.compare_scalar(pred_items[i], gold_items[j], spec) for j in left_gold]
                for i in left_pred
            ]
            matrix = np.array([[o.score for o in row] for row in outcomes])
            for r, c in zip(*linear_sum_assignment(matrix, maximize=True), strict=True):
                if matrix[r, c] > 0:
                    pairs.append((left_pred[r], left_gold[c], outcomes[r][c]))
        counts = _prf_counts(sum(o.score for _, _, o in pairs), n_pred, n_gold)
        f1 = counts["f1"]
        if f1 >= 1.0 - 1e-9 and not wrapped:
            return FieldScore(spec.path, 1.0, pred, gold, **counts)
        matched_p, matched_g = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
        missed = [gold_items[j] for j in range(n_gold) if j not in matched_g]
        extra = [pred_items[i] for i in range(n_pred) if i not in matched_p]
        partial = [o for _, _, o in pairs if o.kind is not None]
        hint = feedback.set_hint(missed, extra, [(o.kind or "", o.hint) for o in partial], wrapped)
        kind = _count_kind(
            n_pred, n_gold, compare.FORMAT if not missed and not extra else compare.WRONG_VALUE
        )
        score = spec.format_credit * f1 if wrapped and f1 >= 1.0 - 1e-9 else f1
        return self._wrong(spec, score, pred, gold, kind, hint, **counts)

    # -- nested objects -------------------------------------------------------------------------

    def _object(
        self, spec: compare.FieldSpec, pred: Any, gold: Any, out: dict[str, FieldScore]
    ) -> FieldScore:
        pred_obj = pred if isinstance(pred, dict) else {}
        gold_obj = gold if isinstance(gold, dict) else {}
        children = [self._value(c, pred_obj.get(n), gold_obj.get(n), out) for n, c in spec.children.items()]
        score = sum(c.score for c in children) / len(children) if children else 1.0
        counts = {k: sum(getattr(c, k) for c in children) for k in ("tp", "fp", "fn")}
        wrong = [c for c in children if not c.correct]
        if not wrong and (isinstance(pred, dict) or pred is None):
            return FieldScore(spec.path, score, pred, gold, **counts)
        if not isinstance(pred, dict | None):
            return self._wrong(spec, 0.0, pred, gold, compare.INVALID, "must be a JSON object", **counts)
        kinds = {c.error_kind for c in wrong}
        kind = kinds.pop() if len(kinds) == 1 else compare.WRONG_VALUE
        text = feedback.object_sentence(spec.path, [c.feedback or "" for c in wrong], len(children))
        return FieldScore(spec.path, score, pred, gold, kind, text, **counts)

    def _object_array(
        self, spec: compare.FieldSpec, pred: Any, gold: Any, out: dict[str, FieldScore]
    ) -> FieldScore:
        gold_items = [g for g in gold if isinstance(g, dict)] if isinstance(gold, list) else []
        pred_list = pred if isinstance(pred, list) else ([] if pred is None else [pred])
        pred_items = [p for p in pred_list if isinstance(p, dict)]
        n_pred, n_gold = len(pred_list), len(gold_items)  # non-object items count as false positives
        pair_fields: dict[tuple[int, int], dict[str, FieldScore]] = {}
        matrix = np.zeros((len(pred_items), n_gold))
        for i, p in enumerate(pred_items):
            for j, g in enumerate(gold_items):
                tmp: dict[str, FieldScore] = {}
                scores = [self._value(c, p.get(n), g.get(n), tmp).score for n, c in spec.children.items()]
                matrix[i, j] = sum(scores) / len(scores) if scores else 1.0
                pair_fields[i, j] = tmp
        pairs = []
        if matrix.size:
            pairs = [
                (int(r), int(c))
                for r, c in zip(*linear_sum_assignment(matrix, maximize=True), strict=True)
                if matrix[r, c] > 0
            ]
        leaf_wrong: dict[str, int] = {}
        for path in [p for p in self.paths if p.startswith(spec.path + "[].")]:
            found = [pair_fields[pair][path] for pair in pairs if path in pair_fields[pair]]
            leaf_counts = _prf_counts(sum(fs.score for fs in found), n_pred, n_gold)
            leaf = FieldScore(
                path,
                leaf_counts["f1"],
                [fs.predicted for fs in found],
                [fs.expected for fs in found],
                **leaf_counts,
            )
            if leaf.score < 1.0 - 1e-9:
                bad = [(j, fs) for (_, j), fs in zip(pairs, found, strict=True) if not fs.correct]
                leaf_wrong[path] = len(bad)
                leaf.error_kind = bad[0][1].error_kind if bad else compare.WRONG_COUNT
                leaf.feedback = feedback.leaf_sentence(
                    path, bad, len(found), n_gold - len(pairs), n_pred - len(pairs)
                )
            out[path] = leaf
        counts = _prf_counts(float(sum(matrix[i, j] for i, j in pairs)), n_pred, n_gold)
        if counts["f1"] >= 1.0 - 1e-9:
            return FieldScore(spec.path, 1.0, pred, gold, **counts)
        matched_g = {j for _, j in pairs}
        missed = [gold_items[j] for j in range(n_gold) if j not in matched_g]
        kind = _count_kind(n_pred, n_gold, compare.WRONG_VALUE)
        text = feedback.array_sentence(
            spec.path, n_pred, n_gold, missed, n_pred - len(pred_items), leaf_wrong, kind
        )
        return FieldScore(spec.path, counts["f1"], pred, gold, kind, text, **counts)

    # -- whole-record passes --------------------------------------------------------------------

    def _cross_field_hints(
        self,
        fields: dict[str, FieldScore],
        predicted: dict[str, Any],
        gold: dict[str, Any],
        unknown: list[str],
    ) -> None:
        """Say when a wrong value is another field's value, or the field was written under another key."""
        for name, spec in self.specs.items():
            fs = fields[name]
            if spec.kind != "scalar" or fs.correct:
                continue
            hint = None
            if fs.error_kind in (
                compare.WRONG_VALUE,
                compare.WRONG_ENTITY,
                compare.NEAR_MISS,
                compare.PARTIAL,
            ):
                for other, other_spec in self.specs.items():
                    if other == name or other_spec.kind != "scalar" or other_spec.match != spec.match:
                        continue
                    if (
                        not _is_blank(gold.get(other))
                        and compare.compare_scalar(fs.predicted, gold[other], other_spec).kind is None
                    ):
                        hint = f"that is the value of '{other}'; this field asks for a different value"
                        fs.error_kind = compare.WRONG_ENTITY
                        break
            elif fs.error_kind == compare.MISSING and unknown and name not in predicted:
                best = process.extractOne(name, unknown)
                if best and best[1] >= 60:
                    hint = f"the output has the unknown key '{best[0]}'; use the exact field name '{name}'"
                else:
                    shown = ", ".join(repr(k) for k in unknown[:4])
                    hint = f"the output has unknown key(s) {shown}; use the exact field names of the schema"
            if hint:
                fs.hint = f"{hint}; {fs.hint}" if fs.hint else hint
                fs.feedback = feedback.sentence(name, fs.predicted, fs.expected, fs.error_kind, fs.hint)

    def _no_output(self, predicted: Any, gold: dict[str, Any]) -> RecordScore:
        reason = (
            "the output could not be parsed as a JSON object"
            if predicted is None
            else f"the output was a JSON {type(predicted).__name__}, not an object"
        )
        fields = {}
        for path in self.paths:
            expected = gold.get(path) if path in self.specs else None
            present = not _is_blank(expected) and expected != []
            n = len(expected) if isinstance(expected, list) else 1
            sentence = feedback.no_output_sentence(path, expected, reason)
            fields[path] = FieldScore(
                path, 0.0, None, expected, compare.MISSING, sentence, fn=float(n) if present else 0.0
            )
        return RecordScore(0.0, fields, self.top_level)
