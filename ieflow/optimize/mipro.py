"""MIPROv2-style search: proposed instructions and bootstrapped demo sets, searched jointly with TPE.

1. Bootstrap: run the seed program on a few training examples; those it gets right become demo
   candidates, its mistakes ground the instruction proposals.
2. Propose K instructions, one call each (facts about the data computed in code, the seed's
   mistakes, one short example, one tip), every reply through `ProposalCheck`.
3. Build M demo sets (bootstrapped ones first, topped up with gold records of random examples).
4. An optuna TPE study over (instruction index, demo-set index): each trial is scored on a
   training minibatch that leaves out the config's own demos; every N trials, and at the end, the
   config with the best mean minibatch score gets a full validation pass (`add_candidate`).

Resumable: bootstrap ids, proposals and demo sets live in the run's `MIPROState`; the trials live in an
optuna journal (JSON lines) in the run folder. TPE is re-seeded per trial number and each trial's
minibatch is a function of its number, so a resumed study asks what the uninterrupted one would
have, and an interrupted trial (left RUNNING in the journal) is finished, not asked again.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from typing import Any

from ieflow.optimize.base import Optimizer, OptimizerRun
from ieflow.optimize.bootstrap import bootstrap
from ieflow.optimize.checks import ProposalCheck
from ieflow.optimize.edits import propose_text, sample_train, with_demos, with_instruction
from ieflow.optimize.evaluator import mean
from ieflow.optimize.facts import data_summary
from ieflow.optimize.prompts import TIPS, error_summary, grounded_instruction_messages, input_output_pair
from ieflow.optimize.run_log import InstructionProposed, SearchSpaceBuilt, TrialScored
from ieflow.optimize.state import MIPROState
from ieflow.program import INSTRUCTION, ExtractionProgram

STUDY = "mipro"
DEFAULT_TRIALS = 20  # when the budget sets no bound on the number of trials


@dataclass
class MIPROConfig:
    num_instructions: int = 4  # proposed instructions; the seed's own is always candidate 0
    num_demo_sets: int = 4  # demo sets; set 0 is the seed's own demos (usually none)
    max_demos: int = 2  # small students and ~700-token prompts: two short demos at most
    demo_max_tokens: int = 350
    bootstrap_size: int = 6  # training examples the seed program is run on once
    pair_max_tokens: int = 60  # length of the example shown to the proposer
    num_trials: int | None = None  # None: trials until the budget is spent (20 if it has no bound)
    minibatch_size: int = 4
    full_eval_every: int = 5  # trials between full validation passes of the best config so far
    startup_trials: int = 5  # random trials before TPE models the results
    max_free_trials: int = 10  # stop after this many trials in a row answered from the ledger
    temperature: float = 0.9
    max_steps: int | None = None  # stop this session after so many trials, with no wrap-up (time-boxing)
    check: ProposalCheck = field(default_factory=ProposalCheck)


class MIPROv2(Optimizer):
    name = "mipro"
    State = MIPROState

    def __init__(self, config: MIPROConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config or MIPROConfig()

    def slack_calls(self) -> int:
        return self.config.minibatch_size

    # -- the run -------------------------------------------------------------------------------------

    def optimize(self, run: OptimizerRun[MIPROState]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        cfg = self.config
        state = run.state
        self._prepare(run, state)
        n_instr, n_demos = len(state.instructions), len(state.demo_sets or [])
        if n_instr * n_demos == 1:
            run.stop_reason = "no instruction or demo set survived the checks: nothing to search"
            return
        study = self._study(run, state)
        # Equal budgets for every optimizer: by default MIPRO searches until the budget is spent.
        num_trials = cfg.num_trials
        if num_trials is None and not run.tracker.budget.bounded:
            num_trials = DEFAULT_TRIALS
        reason = ""
        while not reason:
            done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            if done and len(done) % cfg.full_eval_every == 0 and len(done) not in state.full_evals:
                self._full_eval(run, state, done)
                state.full_evals.append(len(done))
                run.checkpoint()
            if run.best().val_score >= 1.0 - 1e-9:
                run.stop_reason = "perfect validation score"
                return
            unfinished = num_trials is None or len(done) < num_trials
            if cfg.max_steps is not None and run.step >= cfg.max_steps and unfinished:
                run.stop_reason = f"reached {cfg.max_steps} trials"
                return
            pending = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
            if num_trials is not None and len(done) >= num_trials:
                reason = f"finished {len(done)} trials"
            elif run.stalled():
                reason = f"no improvement in {run.tracker.budget.patience} trials"
            elif not pending and run.tracker.exhausted(cfg.minibatch_size + len(run.valset)):
                # Keep room for the final validation pass; an interrupted trial was already allowed.
                reason = f"budget: stopped after {len(done)} trials, keeping room for a last validation pass"
            elif state.free_trials >= cfg.max_free_trials:
                # A small space and training set: TPE re-asks configs on minibatches already scored.
                reason = f"search space exhausted: {cfg.max_free_trials} trials in a row cost no metric call"
            else:
                spent = run.tracker.metric_calls
                self._trial(run, state, study, pending[0] if pending else None, (n_instr, n_demos))
                free = run.tracker.metric_calls == spent
                state.free_trials = state.free_trials + 1 if free else 0
                run.checkpoint()
        self._full_eval(run, state, [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])
        run.stop_reason = reason

    # -- preparation: bootstrap, instructions, demo sets (each piece checkpointed) --------------------

    def _prepare(self, run: OptimizerRun[MIPROState], state: MIPROState) -> None:
        cfg = self.config
        if state.bootstrap is None:
            # Bootstrapping costs metric calls: skip it when it would leave no room for a search.
            affordable = not run.tracker.exhausted(cfg.bootstrap_size + cfg.minibatch_size + len(run.valset))
            state.bootstrap = affordable
            run.checkpoint()
        good, results = (
            bootstrap(run, run.seed_program, cfg.bootstrap_size, 1.0) if state.bootstrap else ([], [])
        )
        if not state.instructions:
            state.instructions = [run.seed_program.components.get(INSTRUCTION, "")]
        summary = data_summary(run.seed_program, run.trainset)
        errors = error_summary(run.seed_program, results)
        while (
            len(state.instructions) < 1 + cfg.num_instructions and state.attempts < 2 * cfg.num_instructions
        ):
            attempt = state.attempts
            example = run.rng.choice(run.trainset)
            messages = grounded_instruction_messages(
                run.seed_program,
                summary,
                errors,
                [input_output_pair(example, cfg.pair_max_tokens)],
                TIPS[attempt % len(TIPS)],
            )
            text, reason = propose_text(
                self,
                run,
                messages,
                old=state.instructions[0],
                check=cfg.check,
                seed=self.seed * 100_000 + attempt,
                temperature=cfg.temperature,
                avoid=state.instructions,
            )
            if reason is None:
                state.instructions.append(text)
            run.emit(InstructionProposed(component_name=INSTRUCTION, text=text, rejected=reason))
            state.attempts += 1
            run.checkpoint()
        if state.demo_sets is None:
            state.demo_sets = self._demo_sets(run, good)
            state.full_evals = []
            run.emit(SearchSpaceBuilt(instructions=len(state.instructions), demo_sets=state.demo_sets))
            run.checkpoint()

    def _demo_sets(self, run: OptimizerRun[MIPROState], good: list[str]) -> list[list[str] | None]:
        """Set 0 keeps the seed's demos; odd sets start from bootstrapped examples, even ones are
        gold records of random training examples (DSPy's "labeled" demos)."""
        cfg = self.config
        ids = [ex.doc_id for ex in run.trainset]
        sets: list[list[str] | None] = [None]
        for j in range(1, 3 * cfg.num_demo_sets):
            if len(sets) >= cfg.num_demo_sets:
                break
            chosen = run.rng.sample(good, min(len(good), cfg.max_demos)) if j % 2 and good else []
            rest = [d for d in ids if d not in chosen]
            chosen += run.rng.sample(rest, min(len(rest), cfg.max_demos - len(chosen)))
            if chosen and chosen not in sets:
                sets.append(chosen)
        return sets

    def _program(self, run: OptimizerRun[MIPROState], state: MIPROState, i: int, j: int) -> ExtractionProgram:
        program = with_instruction(run.seed_program, state.instructions[i]) if i else run.seed_program
        demo_ids = (state.demo_sets or [None])[j]
        if demo_ids is None:
            return program
        by_id = {ex.doc_id: ex for ex in run.trainset}
        return with_demos(program, [by_id[d] for d in demo_ids], self.config.demo_max_tokens)

    # -- the study -------------------------------------------------------------------------------------

    def _study(self, run: OptimizerRun[MIPROState], state: MIPROState) -> Any:
        import optuna

        path = run.run_dir / "optuna.jsonl"
        if not state.study:
            # A journal without the flag in the checkpoint is a leftover of another run: start afresh.
            path.unlink(missing_ok=True)
            state.study = True
            run.checkpoint()
        journal = optuna.storages.journal
        backend = getattr(journal, "JournalFileBackend", None) or optuna.storages.JournalFileStorage
        storage = optuna.storages.JournalStorage(backend(str(path)))
        return optuna.create_study(
            study_name=STUDY, storage=storage, direction="maximize", load_if_exists=True
        )

    def _trial(
        self,
        run: OptimizerRun[MIPROState],
        state: MIPROState,
        study: Any,
        pending: Any,
        sizes: tuple[int, int],
    ) -> None:
        import optuna

        cfg = self.config
        if pending is not None and {"instruction", "demos"} <= set(pending.params):
            number, params = pending.number, pending.params
        else:
            if pending is not None:
                study.tell(pending.number, state=optuna.trial.TrialState.FAIL)
            number = len(study.trials)
            # A fresh sampler seeded by the trial number: TPE is stateless apart from its RNG, so
            # this makes trial n the same whether or not the run was interrupted before it.
            study.sampler = optuna.samplers.TPESampler(
                seed=self.seed * 1000 + number, n_startup_trials=cfg.startup_trials
            )
            distributions = {
                "instruction": optuna.distributions.CategoricalDistribution(list(range(sizes[0]))),
                "demos": optuna.distributions.CategoricalDistribution(list(range(sizes[1]))),
            }
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trial = study.ask(fixed_distributions=distributions)
            number, params = trial.number, trial.params
        run.step = number + 1
        program = self._program(run, state, params["instruction"], params["demos"])
        rng = random.Random(f"{self.seed}:trial:{number}")
        batch = sample_train(rng, run.trainset, cfg.minibatch_size, {d.doc_id for d in program.demos})
        score = mean([r.score for r in run.evaluate(program, batch)])
        study.tell(number, score)
        run.emit(
            TrialScored(trial=number, instruction=params["instruction"], demos=params["demos"], score=score)
        )

    def _full_eval(self, run: OptimizerRun[MIPROState], state: MIPROState, done: list[Any]) -> None:
        """A validation pass of the config with the best mean minibatch score (more trials break ties)."""
        by_config: dict[tuple[int, int], list[float]] = {}
        for t in done:
            by_config.setdefault((t.params["instruction"], t.params["demos"]), []).append(t.value)
        if not by_config:
            return
        (i, j), scores = max(
            by_config.items(), key=lambda kv: (mean(kv[1]), len(kv[1]), -kv[0][0], -kv[0][1])
        )
        changed_component = "+".join(name for name, on in (("instruction", i), ("demos", j)) if on) or "seed"
        note = f"instruction {i}, demo set {j}: minibatch mean {mean(scores):.2f} over {len(scores)} trials"
        run.add_candidate(self._program(run, state, i, j), [0], changed_component, note)


__all__ = ["MIPROConfig", "MIPROv2"]
