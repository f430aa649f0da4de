"""`ieflow program list | show | register | promote | rollback`: the program registry from a shell.

Mount into the main command with `add_registry_commands(program_app)` (keeps `program diff` beside
them; this `show` also accepts a program JSON path, so it replaces the file-only `program show`), or
as its own group with `app.add_typer(program_registry_app, name="registry")`. Imports stay inside
the commands so `ieflow --help` starts fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

DEFAULT_ROOT = "runs/registry"
RegistryOption = typer.Option(
    None, "--registry", help="Registry folder or fsspec URL (default: $IEFLOW_REGISTRY or runs/registry)."
)


def _registry(root: str | None) -> Any:
    from ieflow.registry import Registry

    return Registry(root or os.environ.get("IEFLOW_REGISTRY", DEFAULT_ROOT))


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _score(version: Any) -> str:
    score = version.scores.get("holdout", version.scores.get("test"))
    return f"{score:.3f}" if isinstance(score, int | float) else "-"


def list_programs(registry: str | None = RegistryOption) -> None:
    """List registered programs: champion version, hash, held-out score, number of versions."""
    from ieflow.registry import RegistryError

    reg = _registry(registry)
    names = reg.names()
    if not names:
        typer.echo(f"no programs in {reg.root}: add one with `ieflow program register FILE --name NAME`")
        return
    typer.echo(f"{'name':<24} {'champion':>8} {'hash':<16} {'score':>6} {'versions':>8}  updated")
    for name in names:
        try:
            state = reg.champion_state(name)
            champion = reg.champion(name)
        except RegistryError as exc:
            typer.echo(f"{name:<24} unreadable: {exc}")
            continue
        count = len(reg.versions(name))
        if champion is None:
            typer.echo(f"{name:<24} {'-':>8} {'-':<16} {'-':>6} {count:>8}  no champion")
            continue
        typer.echo(
            f"{name:<24} {'v' + str(champion.version):>8} {champion.hash:<16} {_score(champion):>6} "
            f"{count:>8}  {state.get('updated_at', '-')}"
        )


def show_program(
    name: str = typer.Argument(..., help="A registered program name, or a program JSON file."),
    version: int | None = typer.Option(None, "--version", "-v", help="Version number (default: champion)."),
    registry: str | None = RegistryOption,
    prompt: bool = typer.Option(True, help="Print the system prompt the model sees."),
) -> None:
    """Show a version (scores, cost, lineage, source run), the champion history, and the prompt."""
    from ieflow.program import ExtractionProgram
    from ieflow.registry import RegistryError

    if name.endswith(".json"):  # a program file, as before the registry
        if not Path(name).is_file():
            raise _fail(f"no such program file: {name}")
        prog = ExtractionProgram.load(name)
        typer.echo(f"{prog.name}  hash={prog.hash}  model={prog.model}  demos={len(prog.demos)}")
        typer.echo(prog.system_prompt())
        return
    reg = _registry(registry)
    try:
        entry = reg.get(name, version)
        state = reg.champion_state(name)
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    program = entry.load_program()
    role = "champion" if state.get("champion") == entry.version else "not champion"
    typer.echo(f"{name} v{entry.version} ({role})  hash={entry.hash}  model={program.model}")
    typer.echo(f"created {entry.created_at}  dataset={entry.dataset or '-'}")
    typer.echo(f"source run: {json.dumps(entry.source_run, sort_keys=True)}")
    for label, data in (("scores", entry.scores), ("cost", entry.cost), ("lineage", entry.lineage)):
        if data:
            typer.echo(f"{label}: {json.dumps(_short(data), sort_keys=True)}")
    if entry.note:
        typer.echo(f"note: {entry.note}")
    typer.echo("champion history:")
    for change in state.get("history", [])[-10:]:
        was = f"was v{change['previous']}" if change.get("previous") else "first champion"
        typer.echo(
            f"  {change['at']}  {change['action']:<8} v{change['version']} ({was}) "
            f"by {change['by']}: {change['reason']}"
        )
    if prompt:
        typer.echo("")
        typer.echo(program.system_prompt())


def register_program(
    program: Path = typer.Argument(..., help="Program JSON (e.g. runs/optimize/program.json)."),
    name: str = typer.Option(..., "--name", "-n", help="Registry name: lowercase letters, digits, - _ ."),
    dataset: str | None = typer.Option(None, help="Labelled folder the nightly flow reviews it on."),
    promote: bool | None = typer.Option(
        None, "--promote/--no-promote", help="Make it the champion (default: only if there is none)."
    ),
    note: str = typer.Option("", help="Why this version exists."),
    registry: str | None = RegistryOption,
) -> None:
    """Register a program file as the next version of NAME (idempotent: same hash, same version)."""
    from ieflow.champion import label_snapshot
    from ieflow.program import ExtractionProgram
    from ieflow.registry import RegistryError, now

    try:
        prog = ExtractionProgram.load(program)
    except (OSError, ValueError, KeyError) as exc:
        raise _fail(f"cannot read program {program}: {exc}") from None
    if dataset and not (Path(dataset) / "labels.jsonl").is_file():
        raise _fail(f"--dataset {dataset} has no labels.jsonl")
    meta = prog.metadata
    scores = {k: meta[k] for k in ("test_score", "val_score", "baseline_test_score") if k in meta}
    if "test_score" in meta:
        scores["holdout"] = meta["test_score"]
    lineage = {"optimizer": meta.get("optimizer"), "steps": meta.get("lineage", [])} if meta else {}
    reg = _registry(registry)
    try:
        entry = reg.register(
            name,
            prog,
            scores=scores,
            lineage=lineage,
            dataset=dataset,
            note=note,
            promote=promote,
            cost={"tokens_per_doc": meta["tokens_per_doc"]} if "tokens_per_doc" in meta else None,
            source_run={"kind": "cli", "file": str(program), "at": now()},
        )
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    if dataset and not reg.read_state(name, "nightly"):
        # The labels present now are the ones this program was built from: the nightly flow
        # re-optimizes only when labels beyond these arrive.
        reg.write_state(name, "nightly", {"labels_seen": label_snapshot(dataset), "runs": []})
    champion = reg.champion_state(name).get("champion")
    typer.echo(f"{name} v{entry.version} hash={entry.hash} (champion: v{champion})")


def promote_program(
    name: str = typer.Argument(...),
    version: int = typer.Argument(..., help="The version to make champion."),
    reason: str = typer.Option("", "--reason", "-m", help="Recorded in the champion history."),
    registry: str | None = RegistryOption,
) -> None:
    """Make VERSION the champion of NAME."""
    before, state = _change_champion(
        registry, name, lambda reg: reg.promote(name, version, reason=reason or "promoted by hand")
    )
    if before == version:
        typer.echo(f"{name}: v{version} is already the champion")
    else:
        typer.echo(f"{name}: champion v{before} -> v{state['champion']} ({state['hash']})")


def rollback_program(
    name: str = typer.Argument(...),
    to: int | None = typer.Option(None, "--to", help="Version to go back to (default: previous champion)."),
    reason: str = typer.Option("", "--reason", "-m", help="Recorded in the champion history."),
    registry: str | None = RegistryOption,
) -> None:
    """Put the previous champion (or version --to) back in place."""
    before, state = _change_champion(
        registry, name, lambda reg: reg.rollback(name, to, reason=reason or "rolled back by hand")
    )
    typer.echo(f"{name}: champion v{before} -> v{state['champion']} ({state['hash']})")


def _change_champion(
    registry: str | None, name: str, change: Callable[[Any], dict[str, Any]]
) -> tuple[int | None, dict[str, Any]]:
    """The champion before, and the champion state after `change(registry)`; one `error:` line on failure."""
    from ieflow.registry import RegistryError

    reg = _registry(registry)
    try:
        before = reg.champion_state(name).get("champion")
        return before, change(reg)
    except RegistryError as exc:
        raise _fail(str(exc)) from None


def _short(data: dict[str, Any]) -> dict[str, Any]:
    """Long lists (lineage steps, per-field maps) summarized for one line of output."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, list) and len(value) > 4:
            out[key] = f"[{len(value)} items]"
        elif isinstance(value, float):
            out[key] = round(value, 4)
        else:
            out[key] = value
    return out


COMMANDS = {
    "list": list_programs,
    "show": show_program,
    "register": register_program,
    "promote": promote_program,
    "rollback": rollback_program,
}


def add_registry_commands(app: typer.Typer) -> None:
    """Add the registry commands to an existing Typer group (e.g. ieflow's `program`)."""
    for command_name, function in COMMANDS.items():
        app.command(command_name)(function)


program_registry_app = typer.Typer(help="Named programs, versions and champions.", no_args_is_help=True)
add_registry_commands(program_registry_app)
