"""The `nightly` flow: re-optimize each registered program when new labels arrive, promote only winners.

Reads top to bottom as the night goes, per registered program (one `review` subflow each):
find labelled documents added since the last optimization; if there are enough, run the `optimize`
flow starting from the current champion and its lesson log; score champion and challenger on the
same held-out documents; promote the challenger only if it wins by `margin` without raising serving
cost beyond `max_cost_increase` (`ieflow.champion.decide`); otherwise keep the champion and record
why. A markdown artifact per program shows both side by side; a table sums up the night.

Nothing is redone for unchanged inputs: labels already used are remembered in the registry
(`<name>/nightly.json`), and the optimize run folder is named by champion hash, data fingerprint and
settings, so a repeated or resumed night is served from its checkpoint and evaluation ledgers.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from ieflow import config
from ieflow.champion import Policy, Scorecard, data_fingerprint, decide, label_snapshot, new_labels
from ieflow.labelfree.sources import gold_examples
from ieflow.optimize.split_scoring import load_split_examples, score_outside_budget
from ieflow.program import ExtractionProgram
from ieflow.registry import ProgramVersion, Registry, RegistryError, now
from ieflow.report import embedded_png
from ieflow.review import (
    NO_DATASET,
    Challenger,
    HoldoutCards,
    ReviewResult,
    not_enough_labels,
    register_challenger,
    run_key,
    summary_row,
    with_outcome,
)
from ieflow_flows.optimize import OptimizeParams, OptimizerName, optimize

# The settings an optimization's outcome depends on: they name its run folder (`run_key`).
RUN_SETTINGS = {
    "optimizer",
    "max_metric_calls",
    "max_wall_minutes",
    "reflection_model",
    "max_val",
    "max_test",
    "seed",
    "splits_paths",
}


class NightlyParams(BaseModel):
    """What to review, on which data, and how sure the nightly run must be before it promotes."""

    registry: str = Field("runs/registry", description="Program registry: a folder or fsspec URL.")
    programs: list[str] = Field(
        default_factory=list, description="Registered program names to review (empty: all of them)."
    )
    datasets: dict[str, str] = Field(
        default_factory=dict,
        description='Labelled folder per program name, e.g. {"receipts": "data/receipts"} '
        "(default: the dataset recorded at registration).",
    )
    splits_paths: dict[str, str] = Field(
        default_factory=dict, description="splits.parquet per program name (default: hash split)."
    )
    min_new_labels: int = Field(5, ge=0, description="Re-optimize only after this many new labels.")
    margin: float = Field(
        0.01, ge=0, le=1, description="The challenger must beat the champion by this (mean record score)."
    )
    max_cost_increase: float = Field(
        0.10, ge=0, description="Largest relative growth of serving cost per document allowed (0.1 = +10%)."
    )
    optimizer: OptimizerName = Field("gepa", description="Which optimizer builds the challenger.")
    max_metric_calls: int = Field(100, ge=1, description="Optimizer budget per program (examples evaluated).")
    max_wall_minutes: float | None = Field(None, gt=0, description="Optimizer wall-time budget per program.")
    judge_model: str | None = Field(
        None,
        description="litellm name of a judge model: SPO's pairwise judge, and the scorer of a folder "
        "with no labels (teacher labels are used, weighted by agreement).",
    )
    reflection_model: str = Field(
        config.DEFAULT_REFLECTION_MODEL, description="litellm name of the proposal model."
    )
    max_val: int | None = Field(20, ge=1, description="Use at most this many validation examples.")
    max_test: int | None = Field(None, ge=1, description="Use at most this many held-out examples.")
    work_dir: str = Field("runs/nightly", description="Local folder for optimizer runs and ledgers.")
    seed: int = Field(0, description="Seeds the optimizer and the hash split.")
    force: bool = Field(False, description="Re-optimize even without enough new labels.")

    def policy(self) -> Policy:
        return Policy(margin=self.margin, max_cost_increase=self.max_cost_increase)


@flow(name="nightly", log_prints=True)
def nightly(params: NightlyParams = NightlyParams()) -> dict[str, Any]:
    """Review every registered program; returns {name: outcome} (also a table artifact)."""
    logger = get_run_logger()
    registry = Registry(params.registry)
    names = params.programs or registry.names()
    unknown = sorted(set(params.programs) - set(registry.names()))
    if unknown:
        raise ValueError(f"not in the registry {params.registry}: {', '.join(unknown)}")
    if not names:
        message = f"No programs in {params.registry}: register one with `ieflow program register`."
        create_markdown_artifact(f"# Nightly review\n\n{message}\n", key="nightly-summary")
        logger.warning(message)
        return {}
    progress = create_progress_artifact(0.0, key="nightly-progress", description="programs reviewed")
    outcomes: dict[str, dict[str, Any]] = {}
    reports: list[str] = []
    for done, name in enumerate(names, start=1):
        state = review.with_options(flow_run_name=f"review-{name}")(name, params, return_state=True)
        if state.is_completed():
            outcome = state.result()
            reports.append(outcome.pop("report"))
        else:  # one broken program must not stop the others' review
            outcome = {"decision": "error", "reason": str(state.message or state.name)}
            reports.append(f"# Nightly review: {name}\n\n**Review failed**: {outcome['reason']}\n")
            logger.error("review of %s failed: %s", name, outcome["reason"])
        outcomes[name] = outcome
        update_progress_artifact(progress, 100.0 * done / len(names))
    # The whole night on the parent run's page; each review run also carries its own part.
    verdicts = ", ".join(f"{name}: {out['decision'].replace('_', ' ')}" for name, out in outcomes.items())
    create_markdown_artifact("\n".join(reports), key="nightly-report", description=verdicts[:250])
    create_table_artifact(
        [summary_row(name, outcome) for name, outcome in outcomes.items()],
        key="nightly-summary",
        description=f"Nightly review of {len(names)} program{'s' if len(names) > 1 else ''}",
    )
    failed = [name for name, outcome in outcomes.items() if outcome["decision"] == "error"]
    if failed:
        raise RuntimeError(f"review failed for {', '.join(failed)}; the others were reviewed")
    return outcomes


@flow(name="nightly-review", log_prints=True)
def review(name: str, params: NightlyParams) -> dict[str, Any]:
    """One program: new labels? -> optimize from the champion -> champion vs challenger -> decide."""
    registry = Registry(params.registry)
    champion = registry.champion(name)
    if champion is None:
        raise RegistryError(f"program {name!r} has no champion: promote a version first")
    dataset = params.datasets.get(name) or champion.dataset
    state = registry.read_state(name, "nightly")
    if not dataset:
        return _finish(registry, name, params, state, ReviewResult(NO_DATASET, champion.version))
    snapshot, fresh = _labels_since_last_review(name, dataset, champion, state)
    if len(fresh) < params.min_new_labels and not params.force:
        waiting = ReviewResult(not_enough_labels(len(fresh), params.min_new_labels), champion.version)
        return _finish(registry, name, params, state, replace(waiting, new_labels=len(fresh)))
    challenger = optimize_challenger(name, champion, dataset, snapshot, params)
    cards = holdout_scorecards(
        champion.load_program(),
        challenger.program,
        dataset,
        params.splits_paths.get(name),
        params.seed,
        params.max_test,
        str(challenger.run_dir / "test_evaluations.jsonl"),
    )
    decision = decide(cards.champion, cards.challenger, params.policy())
    get_run_logger().info("%s: %s (%s)", name, decision.code, decision.reason)
    version = register_challenger(
        registry,
        name,
        champion,
        challenger,
        cards,
        decision,
        dataset=dataset,
        optimizer=params.optimizer,
        new_labels=len(fresh),
        run=_this_run(),
    )
    result = ReviewResult(
        decision, champion.version, version, len(fresh), cards, _links(challenger), _pareto(challenger)
    )
    return _finish(registry, name, params, {**state, "labels_seen": snapshot}, result)


def _labels_since_last_review(
    name: str, dataset: str, champion: ProgramVersion, state: dict[str, Any]
) -> tuple[dict[str, str], list[str]]:
    """(the label snapshot, doc ids labelled or relabelled since the last optimization)."""
    if not (Path(dataset) / "labels.jsonl").is_file():
        raise ValueError(
            f"{name}: {dataset} has no labels.jsonl (a labelled folder holds schema.json, "
            "labels.jsonl and documents/)"
        )
    snapshot = find_labels(dataset)
    fresh = new_labels(snapshot, state.get("labels_seen", {}))
    get_run_logger().info(
        "%s: champion v%d (%s), %d labels, %d new",
        name,
        champion.version,
        champion.hash,
        len(snapshot),
        len(fresh),
    )
    return snapshot, fresh


def optimize_challenger(
    name: str, champion: ProgramVersion, dataset: str, snapshot: dict[str, str], params: NightlyParams
) -> Challenger:
    """Run the `optimize` flow from the champion (with its lesson log) in a folder named by what it
    depends on; raises when the optimization failed (the review fails with it)."""
    settings = params.model_dump(include=RUN_SETTINGS)
    if params.judge_model:  # only then: runs without a judge keep the folders they had
        settings["judge_model"] = params.judge_model
    run_dir = Path(params.work_dir) / name / run_key(champion.hash, data_fingerprint(snapshot), settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    champion_path = run_dir / "champion.json"
    champion.load_program().save(champion_path)  # the seed: champion program with its lesson log
    opt_state = optimize(
        OptimizeParams(
            dataset=dataset,
            splits_path=params.splits_paths.get(name),
            program=str(champion_path),
            optimizer=params.optimizer,
            max_metric_calls=params.max_metric_calls,
            max_wall_minutes=params.max_wall_minutes,
            reflection_model=params.reflection_model,
            judge_model=params.judge_model,
            max_val=params.max_val,
            max_test=params.max_test,
            output_dir=str(run_dir),
            seed=params.seed,
        ),
        return_state=True,
    )
    summary = opt_state.result()
    program = ExtractionProgram.load(summary["program"])
    return Challenger(program, run_dir, str(opt_state.state_details.flow_run_id))


@task(name="find-labels", cache_policy=NO_CACHE)
def find_labels(dataset: str) -> dict[str, str]:
    """{doc_id: fingerprint} of every labelled document (cheap: gold records and file hashes)."""
    return label_snapshot(dataset)


@task(name="holdout-scorecards", cache_policy=NO_CACHE, retries=1)
def holdout_scorecards(
    champion: ExtractionProgram,
    challenger: ExtractionProgram,
    dataset: str,
    splits_path: str | None,
    seed: int,
    max_test: int | None,
    ledger: str,
) -> HoldoutCards:
    """Both programs on the same held-out (test) documents. The optimize flow scored both there
    already, into the same ledger, so this normally reads results back without a model call."""
    _, splits = load_split_examples(dataset, splits_path=splits_path, seed=seed, limits={"test": max_test})
    test = gold_examples(splits["test"]) or splits["test"]  # gold wherever any exists
    doc_ids = sorted(ex.doc_id for ex in test)
    champion_card, challenger_card = (
        Scorecard.from_score(score_outside_budget(program, test, ledger), doc_ids)
        for program in (champion, challenger)
    )
    return HoldoutCards(champion_card, challenger_card)


def _finish(
    registry: Registry, name: str, params: NightlyParams, state: dict[str, Any], result: ReviewResult
) -> dict[str, Any]:
    """Record the review in nightly.json, publish its markdown artifact, return the outcome."""
    outcome = result.outcome(
        at=now(), run=_this_run(), champion_after=registry.champion_state(name).get("champion")
    )
    registry.write_state(name, "nightly", with_outcome(state, outcome))
    markdown = result.markdown(name, params.policy())
    create_markdown_artifact(markdown, key=f"nightly-{_slug(name)}", description=result.verdict())
    return {**outcome, "report": markdown}


def _links(challenger: Challenger) -> dict[str, str]:
    """Where to look further: the optimization's flow run (when a UI is configured), its folder."""
    links = {"run folder (checkpoint, ledgers, report.md)": f"`{challenger.run_dir}`"}
    opt_url = _run_url(challenger.optimize_flow_run_id)
    if opt_url:
        links = {"optimization run (report, lineage, progress)": f"[{opt_url}]({opt_url})", **links}
    return links


def _pareto(challenger: Challenger) -> str | None:
    return embedded_png(challenger.run_dir / "pareto.png", "quality vs serving cost of every candidate")


def _this_run() -> dict[str, Any]:
    """Which flow run made a change, for the registry and the nightly history."""
    run_id = flow_run.get_id()
    if run_id is None:
        return {"kind": "python"}
    info = {"kind": "prefect", "flow_run_id": str(run_id), "flow_run_name": flow_run.get_name()}
    root = flow_run.get_root_flow_run_id()
    if root and str(root) != str(run_id):
        info["root_flow_run_id"] = str(root)
    url = _run_url(str(root or run_id))
    if url:
        info["url"] = url
    return info


def _run_url(flow_run_id: str) -> str | None:
    """The run's page in the Prefect UI (None when no UI address is configured)."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "program"


if __name__ == "__main__":
    import sys

    print(
        json.dumps(
            nightly(NightlyParams.model_validate_json(sys.argv[1] if len(sys.argv) > 1 else "{}")),
            indent=2,
            default=str,
        )
    )
