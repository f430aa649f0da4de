"""SPO, Self-Supervised Prompt Optimization: improve the instruction with no reference outputs.

Each round draws a few training documents (`sample_size`), runs the incumbent program on them,
and shows the proposal model the incumbent's instruction, its outputs there and the judge's
reasons from the last round; the proposal is checked (`ProposalCheck`) and run on the same
documents. A judge model that sees each document and the schema (no gold) compares the two
outputs pairwise, in both orders so that a preference for the first (or second) record cancels
out; the candidate takes a document when it gets more of that document's two votes, and becomes
the incumbent when it takes more documents than the incumbent does (a tie keeps the incumbent).

Budget: extractions are metric calls (the evaluator's ledger); judge requests are counted in the
state (a repair turn counts too); the budget's `max_metric_calls` bounds their sum, both are
reported (`result.usage`: metric_calls, judge_calls). Each new incumbent gets a validation pass
(`add_candidate`: gold, silver or the run's judge scorer, whichever the run scores with), so the
report can score the final incumbent on gold where gold exists. The result's program is the final
incumbent. State (rounds, comparisons, judge calls) is checkpointed after every judgement, so a
resumed run asks the judge nothing it already recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ieflow import config
from ieflow.datasets import Example
from ieflow.labelfree.judge import JudgeConfig
from ieflow.labelfree.pairwise import PairwiseJudge
from ieflow.lm import LMClient
from ieflow.longdoc import head
from ieflow.optimize.base import Optimizer, OptimizerRun
from ieflow.optimize.candidates import Candidate, CandidatePool
from ieflow.optimize.checks import ProposalCheck
from ieflow.optimize.edits import propose_text, with_instruction
from ieflow.optimize.evaluator import Budget, ExampleResult
from ieflow.optimize.prompts import SYSTEM, field_list
from ieflow.optimize.result import OptimizationResult
from ieflow.optimize.run_log import PairsJudged, Rejected
from ieflow.optimize.state import Comparison, SPORound, SPOState
from ieflow.program import INSTRUCTION, ExtractionProgram


@dataclass
class SPOConfig:
    sample_size: int = 3  # training documents each round compares outputs on
    max_steps: int | None = None
    temperature: float = 0.7
    max_idle_steps: int = 5  # stop after this many rejected proposals in a row
    reasons_shown: int = 6  # judge reasons from the last round in the proposer's prompt
    excerpt_tokens: int = 120  # of each document, in the proposer's prompt
    check: ProposalCheck = field(default_factory=ProposalCheck)


class IncumbentPool(CandidatePool):
    """The pool whose best is SPO's incumbent (chosen by pairwise judgement, not by val score)."""

    def __init__(self, pool: CandidatePool, state: SPOState) -> None:
        super().__init__(pool.candidates, pool.best_step)
        self.state = state

    def best(self) -> Candidate:
        if self.candidates and self.state.incumbent < len(self.candidates):
            return self.candidates[self.state.incumbent]
        return super().best()


class SPO(Optimizer):
    name = "spo"
    State = SPOState

    def __init__(
        self, config: SPOConfig | None = None, *, judge_model: str | LMClient | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.config = config or SPOConfig()
        self.judge_model = judge_model or _default_judge()
        self._run: OptimizerRun[SPOState] | None = None

    def slack_calls(self) -> int:
        return 2 * self.config.sample_size  # repair turns of the judge in the last round

    def start_run(
        self, program: ExtractionProgram, trainset: list[Example], valset: list[Example], budget: Budget
    ) -> OptimizerRun[Any]:
        run = super().start_run(program, trainset, valset, budget)
        run.pool = IncumbentPool(run.pool, run.state)
        self._run = run
        return run

    def compile(
        self,
        program: ExtractionProgram,
        trainset: list[Example],
        valset: list[Example],
        budget: Budget | None = None,
    ) -> OptimizationResult:
        result = super().compile(program, trainset, valset, budget)
        judge_calls = self._run.state.judge_calls if self._run else 0
        result.usage["judge_calls"] = judge_calls
        result.usage["budget_calls"] = result.usage["metric_calls"] + judge_calls
        result.settings["judge_model"] = _model_name(self.judge_model)
        result.save(self.run_dir)
        return result

    def optimize(self, run: OptimizerRun[SPOState]) -> None:
        cfg, state = self.config, run.state
        judge = PairwiseJudge(run.seed_program.schema, lm=_client(self.judge_model))
        while True:
            pending = state.rounds[-1] if state.rounds and state.rounds[-1].won is None else None
            if pending is None and self._promote_won(run):
                run.checkpoint()
            if pending is None:
                if run.stopping(cfg.max_steps):
                    return
                if state.idle >= cfg.max_idle_steps:
                    run.stop_reason = f"{cfg.max_idle_steps} proposals in a row were rejected"
                    return
                self._check_budget(run, 4 * cfg.sample_size)
                run.step += 1
                pending = self._propose(run)
                run.checkpoint()
                if pending is None:
                    continue
            self._judge_round(run, judge, pending)
            run.checkpoint()

    # -- one round ---------------------------------------------------------------------------------

    def _incumbent(self, run: OptimizerRun[SPOState]) -> ExtractionProgram:
        return run.candidates[run.state.incumbent].program

    def _propose(self, run: OptimizerRun[SPOState]) -> SPORound | None:
        """Draw the round's documents, show the proposer the incumbent's outputs on them and the
        judge's last reasons; the round, or None when the proposal was rejected."""
        cfg, state = self.config, run.state
        ids = [ex.doc_id for ex in run.trainset]
        sample = sorted(run.rng.sample(ids, min(cfg.sample_size, len(ids))))
        incumbent = self._incumbent(run)
        results = run.evaluate(incumbent, _examples(run, sample))
        old = incumbent.components.get(INSTRUCTION, "")
        messages = proposer_messages(
            incumbent, _examples(run, sample), results, self._last_reasons(state), cfg
        )
        avoid = [old, *(r.text for r in state.rounds)]
        seed = self.seed * 100_000 + run.step
        text, reason = propose_text(
            self, run, messages, old=old, check=cfg.check, seed=seed, temperature=cfg.temperature, avoid=avoid
        )
        if reason:
            state.idle += 1
            run.emit(Rejected(component_name=INSTRUCTION, text=text, reason=reason))
            return None
        state.idle = 0
        pending = SPORound(run.step, text, sample)
        state.rounds.append(pending)
        return pending

    def _judge_round(self, run: OptimizerRun[SPOState], judge: PairwiseJudge, pending: SPORound) -> None:
        """Both orders on every document of the round (those not judged yet), then the verdict."""
        state = run.state
        examples = _examples(run, pending.doc_ids)
        incumbent = self._incumbent(run)
        candidate = with_instruction(incumbent, pending.text)
        ours = {r.doc_id: r for r in run.evaluate(incumbent, examples)}
        theirs = {r.doc_id: r for r in run.evaluate(candidate, examples)}
        done = {(c.doc_id, c.candidate_first) for c in pending.comparisons}
        for example in examples:
            for candidate_first in (True, False):
                if (example.doc_id, candidate_first) in done:
                    continue
                self._check_budget(run, 1)
                pair = (theirs[example.doc_id].record, ours[example.doc_id].record)
                first, second = pair if candidate_first else pair[::-1]
                verdict = judge.compare(example.text, first, second)
                vote = _vote(verdict.winner, candidate_first)
                pending.comparisons.append(Comparison(example.doc_id, candidate_first, vote, verdict.reason))
                state.judge_calls += verdict.calls
                run.tracker.optimizer_cost_usd += verdict.cost_usd  # the judge's dollars are the optimizer's
                run.checkpoint()
        taken = documents_taken(pending)
        pending.won = taken["candidate"] > taken["incumbent"]
        judged = PairsJudged(
            text=pending.text,
            documents=len(pending.doc_ids),
            candidate_took=taken["candidate"],
            incumbent_took=taken["incumbent"],
            won=pending.won,
            judge_calls=state.judge_calls,
        )
        run.emit(judged)

    def _promote_won(self, run: OptimizerRun[SPOState]) -> bool:
        """Make the last round's winner the incumbent (after its validation pass); False if none."""
        state = run.state
        last = state.rounds[-1] if state.rounds else None
        if last is None or not last.won:
            return False
        program = with_instruction(self._incumbent(run), last.text)
        if run.pool.find(program) is not None:
            return False  # promoted already
        note = f"won {documents_taken(last)['candidate']} of {len(last.doc_ids)} documents"
        self._check_budget(run, len(run.valset))
        added = run.add_candidate(program, [state.incumbent], INSTRUCTION, note)
        if added is not None:
            state.incumbent = added.index
        return True

    def _check_budget(self, run: OptimizerRun[SPOState], upcoming: int) -> None:
        """Metric calls and judge calls share the budget: check their sum with what comes next."""
        run.tracker.check(run.state.judge_calls + upcoming)

    def _last_reasons(self, state: SPOState) -> list[str]:
        """The judge's reasons in the last finished round (ties too: "both swap day and month" is
        what the proposer most needs to read), each once."""
        done = [r for r in state.rounds if r.won is not None]
        reasons = dict.fromkeys(c.reason for c in done[-1].comparisons) if done else {}
        return list(reasons)[: self.config.reasons_shown]


# -- helpers -------------------------------------------------------------------------------------------


def _vote(winner: str, candidate_first: bool) -> str:
    """Who a pairwise verdict favours: the candidate is record A when it was shown first."""
    if winner == "tie":
        return "tie"
    return "candidate" if (winner == "A") == candidate_first else "incumbent"


def documents_taken(pending: SPORound) -> dict[str, int]:
    """Documents each side took: the side with more of a document's votes (both orders) takes it."""
    taken = {"candidate": 0, "incumbent": 0}
    for doc_id in pending.doc_ids:
        votes = [c.vote for c in pending.comparisons if c.doc_id == doc_id]
        lead = votes.count("candidate") - votes.count("incumbent")
        if lead:
            taken["candidate" if lead > 0 else "incumbent"] += 1
    return taken


def proposer_messages(
    incumbent: ExtractionProgram,
    examples: list[Example],
    results: list[ExampleResult],
    reasons: list[str],
    cfg: SPOConfig,
) -> list[dict[str, str]]:
    """The proposer's prompt: the instruction, the fields, its outputs on the round's documents and
    what the judge said about the last comparison."""
    lines = [
        "An extraction model follows this instruction:",
        incumbent.components.get(INSTRUCTION, "").strip(),
        "",
        "Fields:",
        *field_list(incumbent),
        "",
        "Its outputs on some documents:",
    ]
    for n, (example, result) in enumerate(zip(examples, results, strict=True), 1):
        start = " ".join(head(example.text, cfg.excerpt_tokens).split())
        lines += [
            f"Document {n} (start): {start}",
            f"Output {n}: {json.dumps(result.record, ensure_ascii=False)}",
        ]
    if reasons:
        lines += ["", "A judge compared two outputs per document and said:", *(f"- {r}" for r in reasons)]
    lines += ["", "Write one better instruction that fixes what is wrong in these outputs."]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def _examples(run: OptimizerRun[SPOState], doc_ids: list[str]) -> list[Example]:
    by_id = {ex.doc_id: ex for ex in run.trainset}
    return [by_id[d] for d in doc_ids]


def _default_judge() -> str:
    return config.reflection_model()


def _client(judge: str | LMClient) -> LMClient:
    if isinstance(judge, LMClient):
        return judge
    return LMClient(judge, params={"max_tokens": JudgeConfig().max_answer_tokens})


def _model_name(judge: str | LMClient) -> str:
    return judge.model if isinstance(judge, LMClient) else judge


__all__ = ["SPO", "SPOConfig", "documents_taken", "proposer_messages"]
