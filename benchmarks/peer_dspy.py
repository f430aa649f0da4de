"""DSPy's MIPROv2 (auto="light") and `dspy.GEPA` on a DSPy program built from an ieflow program.

The DSPy program is one `dspy.Predict` whose signature has the document as input and one output per
top-level schema field (its description from the seed program), with the seed instruction. Each
document is given as the seed program reads it (`ieflow.longdoc.document_view`: the whole text when it
fits, else its BM25-selected windows), so the peers see what ieflow's seed sees. The metric is ieflow's
scorer (dspy.GEPA gets its per-field feedback too). Both models go through ieflow's `LMClient` as a
DSPy engine, so DSPy calls the same student and reflection models with the same LM cache, retries and
per-model limit as ieflow (DSPy's own cache is off: ieflow's answers a resumed run).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage, response_to_events

from ieflow.datasets import Example
from ieflow.lm import LMClient, LMResponse
from ieflow.longdoc import document_budget, document_view
from ieflow.program import INSTRUCTION, ExtractionProgram
from ieflow.scoring import Scorer

_JSON_TYPES: dict[str, type] = {
    "string": str,
    "number": float,
    "integer": int,
    "boolean": bool,
    "array": list,
    "object": dict,
}


@dataclass
class TokenMeter:
    """Tokens of the calls made since the last `reset` (the serving cost of one document)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, response: LMResponse) -> None:
        with self._lock:
            self.prompt_tokens += response.prompt_tokens
            self.completion_tokens += response.completion_tokens
            self.calls += 1

    def reset(self) -> None:
        with self._lock:
            self.prompt_tokens = self.completion_tokens = self.calls = 0


def _chat_messages(request: Any) -> list[dict[str, str]]:
    messages = []
    if request.system is not None:
        system = (
            request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
        )
        messages.append({"role": "system", "content": system})
    messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
    return messages


class IeflowEngine:
    """DSPy's engine protocol (`complete(Request) -> Response`) answered by an ieflow `LMClient`."""

    def __init__(self, client: LMClient, meter: TokenMeter | None = None) -> None:
        self.client = client
        self.meter = meter

    def complete(self, request: Any) -> Response:
        config = request.config
        params = {k: v for k in ("max_tokens", "temperature") if (v := getattr(config, k)) is not None}
        answer = self.client.complete(_chat_messages(request), **params)
        if self.meter is not None:
            self.meter.add(answer)
        return Response(
            id=None,
            model=self.client.model,
            message=Message.assistant([TextPart(answer.text)]),
            finish_reason="length" if answer.finish_reason == "length" else "stop",
            usage=Usage(
                input_tokens=answer.prompt_tokens,
                output_tokens=answer.completion_tokens,
                total_tokens=answer.prompt_tokens + answer.completion_tokens,
            ),
        )

    def stream(self, request: Any) -> Any:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


class AsyncIeflowEngine:
    """The async side DSPy asks for; the local model answers one call at a time anyway."""

    def __init__(self, sync: IeflowEngine) -> None:
        self.sync = sync

    async def complete(self, request: Any) -> Response:
        return self.sync.complete(request)

    async def stream(self, request: Any) -> Any:
        for event in self.sync.stream(request):
            yield event

    async def aclose(self) -> None:
        pass


def dspy_lm(client: LMClient, meter: TokenMeter | None = None) -> dspy.LM:
    """A `dspy.LM` whose calls go through `client` (DSPy's own cache off: ieflow's is used)."""
    engine = IeflowEngine(client, meter)
    return dspy.LM(
        client.model,
        engine=engine,
        async_engine=AsyncIeflowEngine(engine),
        cache=False,
        temperature=client.params.get("temperature", 0.0),
        max_tokens=client.params.get("max_tokens"),
    )


def _python_type(node: dict[str, Any], required: bool) -> Any:
    kinds = node.get("type", "string")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    known = [k for k in kinds if k in _JSON_TYPES]
    python = _JSON_TYPES[known[0]] if known else str
    return python | None if "null" in kinds or not required else python


def signature(program: ExtractionProgram) -> type[dspy.Signature]:
    """Document in, one output per top-level field, the program's instruction as instructions."""
    descriptions = program.field_descriptions()
    required = set(program.schema.get("required", []))
    fields: dict[str, Any] = {"document": (str, dspy.InputField(desc="The document's text."))}
    for name, node in program.schema["properties"].items():
        if not name.isidentifier() or name == "document":
            raise ValueError(f"schema field {name!r} cannot be a DSPy signature field name")
        desc = descriptions.get(name) or node.get("description", "")
        fields[name] = (_python_type(node, name in required), dspy.OutputField(desc=desc))
    return dspy.make_signature(fields, program.components.get(INSTRUCTION, "Extract the fields."))


def document_text(program: ExtractionProgram, text: str) -> str:
    """What the seed program reads of `text` (the same view for the DSPy peers)."""
    return document_view(program, text, document_budget(program))[0]


def dspy_examples(program: ExtractionProgram, examples: list[Example]) -> list[dspy.Example]:
    """Each example with its gold values as the output fields (DSPy's labels and demos)."""
    names = list(program.schema["properties"])
    return [
        dspy.Example(
            document=document_text(program, ex.text), **{n: ex.gold.get(n) for n in names}
        ).with_inputs("document")
        for ex in examples
    ]


def record_of(program: ExtractionProgram, prediction: Any) -> dict[str, Any]:
    return {name: prediction.get(name) for name in program.schema["properties"]}


def gold_of(program: ExtractionProgram, example: dspy.Example) -> dict[str, Any]:
    return {name: example.get(name) for name in program.schema["properties"]}


@dataclass
class ScorerMetric:
    """ieflow's scorer as a DSPy metric; `calls` counts the examples the program ran on (ieflow's
    metric calls: dspy.GEPA asks again, with a predictor's name, for feedback on examples it already
    ran). `with_feedback` answers as dspy.GEPA wants (score and the scorer's feedback sentences)."""

    program: ExtractionProgram
    with_feedback: bool = False
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.scorer = Scorer(self.program.schema)

    def __call__(
        self, gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
    ) -> Any:
        if pred_name is None:  # a run of the program; with a predictor's name, a feedback re-ask
            with self._lock:
                self.calls += 1
        scored = self.scorer.score(record_of(self.program, pred), gold_of(self.program, gold))
        if not self.with_feedback:
            return scored.score
        feedback = " ".join(scored.feedback) or "Every field is correct."
        return dspy.Prediction(score=scored.score, feedback=feedback)


def save_program(module: dspy.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    module.save(str(path))


def load_program(program: ExtractionProgram, path: Path) -> dspy.Module:
    module = dspy.Predict(signature(program))
    module.load(str(path))
    return module


def instructions_of(module: dspy.Module) -> str:
    return json.dumps([p.signature.instructions for _, p in module.named_predictors()])


@dataclass
class DspyRun:
    """What a finished DSPy optimization gives the benchmark."""

    module: dspy.Module
    metric_calls: int  # examples the program ran on, counted by the metric
    library_metric_calls: int | None  # what dspy.GEPA itself counted (None for MIPROv2)
    val_seed: float | None
    val_best: float | None
    candidates: int | None


def dspy_optimizer(kind: str, metric: ScorerMetric, lms: tuple[Any, Any], budget: int, run_dir: Path) -> Any:
    """MIPROv2 light or dspy.GEPA with the student and reflection `lms`."""
    student_lm, reflection_lm = lms
    if kind == "mipro":
        return dspy.MIPROv2(
            metric=metric,
            prompt_model=reflection_lm,
            task_model=student_lm,
            auto="light",
            max_bootstrapped_demos=2,  # as ieflow's MIPROv2: a small student, short prompts
            max_labeled_demos=2,
            num_threads=1,
            seed=0,
        )
    if kind == "gepa":
        return dspy.GEPA(
            metric=metric,
            max_metric_calls=budget,
            reflection_lm=reflection_lm,
            num_threads=1,
            log_dir=str(run_dir / "gepa"),
            track_stats=True,
            seed=0,
        )
    raise ValueError(f"unknown DSPy optimizer {kind!r}: mipro or gepa")


def val_scores(best: Any) -> list[float]:
    """Validation scores the optimizer reports, the seed's first (fractions, as ieflow's)."""
    details = getattr(best, "detailed_results", None)
    if details is not None:  # dspy.GEPA: mean scores per candidate, the seed first
        return list(details.val_aggregate_scores)
    # MIPROv2: DSPy's Evaluate reports percentages; trial 1 is the program as given
    logs = getattr(best, "trial_logs", {}) or {}
    first = logs.get(1, {}).get("full_eval_score")
    return [s / 100 for s in (first, getattr(best, "score", None)) if s is not None]


def optimize_with_dspy(
    kind: str,
    program: ExtractionProgram,
    data: tuple[list[Example], list[Example]],
    max_metric_calls: int,
    run_dir: Path,
    clients: tuple[LMClient, LMClient],
) -> DspyRun:
    """`kind` "mipro" (MIPROv2 auto="light": its own trial count, the calls it spends are counted
    and reported) or "gepa" (dspy.GEPA within `max_metric_calls`, its state in `run_dir`)."""
    student_lm, reflection_lm = (dspy_lm(client) for client in clients)
    trainset, valset = (dspy_examples(program, split) for split in data)
    metric = ScorerMetric(program, with_feedback=kind == "gepa")
    optimizer = dspy_optimizer(kind, metric, (student_lm, reflection_lm), max_metric_calls, run_dir)
    with dspy.context(lm=student_lm):
        best = optimizer.compile(dspy.Predict(signature(program)), trainset=trainset, valset=valset)
    scores = val_scores(best)
    trials = getattr(best, "candidate_programs", None)
    return DspyRun(
        module=best,
        metric_calls=metric.calls,
        library_metric_calls=getattr(getattr(best, "detailed_results", None), "total_metric_calls", None),
        val_seed=scores[0] if scores else None,
        val_best=max(scores) if scores else None,
        candidates=len(trials) if trials is not None else len(scores) or None,
    )


__all__ = [
    "AsyncIeflowEngine",
    "IeflowEngine",
    "ScorerMetric",
    "TokenMeter",
    "document_text",
    "dspy_examples",
    "dspy_lm",
    "signature",
]
