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

import hashlib
import json
import re
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
from ieflow.champion import (
    Decision,
    Policy,
    Scorecard,
    data_fingerprint,
    decide,
    decision_markdown,
    label_snapshot,
    new_labels,
    skipped,
)
from ieflow.optimize.split_scoring import load_split_examples, score_outside_budget
from ieflow.program import ExtractionProgram
from ieflow.registry import Registry, RegistryError, now
from ieflow.report import embedded_png
from ieflow_flows.optimize import OptimizeParams, OptimizerName, optimize

MAX_RUNS_KEPT = 60  # decisions remembered per program in nightly.json


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
        [_summary_row(name, outcome) for name, outcome in outcomes.items()],
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
    logger = get_run_logger()
    registry = Registry(params.registry)
    champion = registry.champion(name)
    if champion is None:
        raise RegistryError(f"program {name!r} has no champion: promote a version first")
    dataset = params.datasets.get(name) or champion.dataset
    state = registry.read_state(name, "nightly")
    if not dataset:
        decision = skipped("no labelled dataset: register the program with --dataset or set `datasets`")
        return _finish(registry, name, params, state, decision, champion.version)

    if not (Path(dataset) / "labels.jsonl").is_file():
        raise ValueError(
            f"{name}: {dataset} has no labels.jsonl (a labelled folder holds schema.json, "
            "labels.jsonl and documents/)"
        )
    snapshot = find_labels(dataset)
    fresh = new_labels(snapshot, state.get("labels_seen", {}))
    logger.info(
        "%s: champion v%d (%s), %d labels, %d new",
        name,
        champion.version,
        champion.hash,
        len(snapshot),
        len(fresh),
    )
    if len(fresh) < params.min_new_labels and not params.force:
        decision = skipped(
            f"{len(fresh)} new labelled documents since the last optimization, "
            f"fewer than min_new_labels={params.min_new_labels}",
            "not_enough_labels",
        )
        return _finish(registry, name, params, state, decision, champion.version, new=len(fresh))

    run_dir = Path(params.work_dir) / name / _run_key(champion.hash, data_fingerprint(snapshot), params)
    run_dir.mkdir(parents=True, exist_ok=True)
    champion_path = run_dir / "champion.json"
    champion.load_program().save(champion_path)  # the seed: champion program with its lesson log
    splits_path = params.splits_paths.get(name)
    opt_state = optimize(
        OptimizeParams(
            dataset=dataset,
            splits_path=splits_path,
            program=str(champion_path),
            optimizer=params.optimizer,
            max_metric_calls=params.max_metric_calls,
            max_wall_minutes=params.max_wall_minutes,
            reflection_model=params.reflection_model,
            max_val=params.max_val,
            max_test=params.max_test,
            output_dir=str(run_dir),
            seed=params.seed,
        ),
        return_state=True,
    )
    summary = opt_state.result()  # raises if the optimization failed: the review fails with it
    challenger = ExtractionProgram.load(summary["program"])
    cards = holdout_scorecards(
        champion.load_program(),
        challenger,
        dataset,
        splits_path,
        params.seed,
        params.max_test,
        str(run_dir / "test_evaluations.jsonl"),
    )
    champ_card, chall_card = Scorecard(**cards["champion"]), Scorecard(**cards["challenger"])
    decision = decide(champ_card, chall_card, params.policy())
    logger.info("%s: %s (%s)", name, decision.code, decision.reason)

    challenger_version = None
    if challenger.hash != champion.hash:
        entry = registry.register(
            name,
            challenger,
            dataset=dataset,
            promote=False,
            note=decision.reason,
            scores={
                "holdout": chall_card.score,
                "per_field": chall_card.per_field,
                "n": chall_card.n,
                "champion_holdout": champ_card.score,
                "val": challenger.metadata.get("val_score"),
            },
            cost={"tokens_per_doc": chall_card.tokens_per_doc, "usd_per_doc": chall_card.usd_per_doc},
            lineage={
                "parent_version": champion.version,
                "parent_hash": champion.hash,
                "optimizer": params.optimizer,
                "new_labels": len(fresh),
                "steps": challenger.metadata.get("lineage", []),
            },
            source_run={
                **_this_run(),
                "optimize_flow_run_id": str(opt_state.state_details.flow_run_id),
                "run_dir": str(run_dir),
            },
        )
        challenger_version = entry.version
        if decision.promote:
            registry.promote(name, entry.version, reason=decision.reason, by="nightly")
    state = {**state, "labels_seen": snapshot}
    links = {"run folder (checkpoint, ledgers, report.md)": f"`{run_dir}`"}
    opt_url = _run_url(str(opt_state.state_details.flow_run_id))
    if opt_url:
        links = {"optimization run (report, lineage, progress)": f"[{opt_url}]({opt_url})", **links}
    plot = embedded_png(run_dir / "pareto.png", "quality vs serving cost of every candidate")
    return _finish(
        registry,
        name,
        params,
        state,
        decision,
        champion.version,
        challenger_version,
        new=len(fresh),
        cards=(champ_card, chall_card),
        links=links,
        plot=plot,
    )


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
) -> dict[str, dict[str, Any]]:
    """Both programs on the same held-out (test) documents. The optimize flow scored both there
    already, into the same ledger, so this normally reads results back without a model call."""
    _, splits = load_split_examples(dataset, splits_path=splits_path, seed=seed, limits={"test": max_test})
    test = splits["test"]
    doc_ids = tuple(sorted(ex.doc_id for ex in test))
    cards = {}
    for role, program in (("champion", champion), ("challenger", challenger)):
        card = Scorecard.from_score(score_outside_budget(program, test, ledger), list(doc_ids))
        cards[role] = {**card.to_dict(), "doc_ids": doc_ids}
    return cards


def _finish(
    registry: Registry,
    name: str,
    params: NightlyParams,
    state: dict[str, Any],
    decision: Decision,
    champion_version: int,
    challenger_version: int | None = None,
    *,
    new: int = 0,
    cards: tuple[Scorecard, Scorecard] | None = None,
    links: dict[str, str] | None = None,
    plot: str | None = None,
) -> dict[str, Any]:
    """Record the decision in nightly.json, publish the markdown artifact, return the outcome."""
    champ_card, chall_card = cards or (None, None)
    outcome = {
        "at": now(),
        **_this_run(),
        "decision": decision.code,
        "promoted": decision.promote,
        "reason": decision.reason,
        "headline": decision.headline(),
        "champion_before": champion_version,
        "champion_after": registry.champion_state(name).get("champion"),
        "challenger": challenger_version,
        "new_labels": new,
        "champion_score": champ_card.score if champ_card else None,
        "challenger_score": chall_card.score if chall_card else None,
    }
    runs = [*state.get("runs", []), outcome][-MAX_RUNS_KEPT:]
    registry.write_state(name, "nightly", {**state, "runs": runs, "last_run": outcome["at"]})
    markdown = decision_markdown(
        name,
        decision,
        champ_card,
        chall_card,
        champion_version=champion_version,
        challenger_version=challenger_version,
        new_label_count=new,
        policy=params.policy(),
        links=links,
        plot=plot,
    )
    verdict = f"promoted v{challenger_version}" if decision.promote else f"kept v{champion_version}"
    description = f"{verdict}: {decision.headline()}"
    create_markdown_artifact(markdown, key=f"nightly-{_slug(name)}", description=description)
    return {**outcome, "report": markdown}


def _run_key(champion_hash: str, data_fp: str, params: NightlyParams) -> str:
    """Folder name of an optimization: same champion, data and settings -> same folder -> its
    checkpoint and ledgers are reused instead of spending the budget again."""
    settings = params.model_dump(
        include={
            "optimizer",
            "max_metric_calls",
            "max_wall_minutes",
            "reflection_model",
            "max_val",
            "max_test",
            "seed",
            "splits_paths",
        }
    )
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{champion_hash[:10]}-{data_fp[:10]}-{digest}"


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


def _summary_row(name: str, outcome: dict[str, Any]) -> dict[str, Any]:
    def fmt(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else "-"

    before, after = outcome.get("champion_before"), outcome.get("champion_after")
    champion = f"v{before} → v{after}" if before and after and before != after else f"v{after or before}"
    return {
        "program": name,
        "decision": str(outcome.get("decision", "")).replace("_", " "),
        "champion": champion if (before or after) else "-",
        "champion score": fmt(outcome.get("champion_score")),
        "challenger score": fmt(outcome.get("challenger_score")),
        "new labels": outcome.get("new_labels", 0),
        "summary": outcome.get("headline") or outcome.get("reason", "")[:80],
    }


if __name__ == "__main__":
    import sys

    print(
        json.dumps(
            nightly(NightlyParams.model_validate_json(sys.argv[1] if len(sys.argv) > 1 else "{}")),
            indent=2,
            default=str,
        )
    )
