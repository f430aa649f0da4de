"""The `ieflow` command. Imports stay inside the commands so `ieflow --help` starts fast."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import typer

from ieflow.documents.source import DEFAULT_MAX_FILE_MB
from ieflow_cli.params import flow_params
from ieflow_cli.progress import show_progress


class _ShutdownCancelFilter(logging.Filter):
    """Drops SQLAlchemy's "Exception during reset" traceback for a CancelledError: Prefect cancels
    its temporary server's pooled SQLite connections when it stops at exit, a harmless race that
    printed a 20-line traceback after every successful `ieflow demo`. Other pool errors still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


# A logger filter does not apply to child loggers: name the pool class Prefect's SQLite engine uses.
logging.getLogger("sqlalchemy.pool.impl.AsyncAdaptedQueuePool").addFilter(_ShutdownCancelFilter())

# Errors in what the user gave (configuration, schema, registry, run folder, parameters, a path that
# does not exist): the message says what is wrong and how to fix it, so the command prints it as one
# `error:` line, no traceback.
# Named as module:class and matched only when the module is loaded, so `ieflow --help` stays fast.
# `ieflow.errors.UserError` is the base of ConfigError, SchemaError, RegistryError, RunConflictError.
USER_ERRORS = (
    "ieflow.errors:UserError",
    "pydantic_core:ValidationError",
    "builtins:FileNotFoundError",
)


def is_user_error(exc: BaseException | None) -> bool:
    """Whether `exc` is the user's to fix; never with IEFLOW_DEBUG=1, which keeps every traceback."""
    if os.environ.get("IEFLOW_DEBUG", "") not in ("", "0"):
        return False
    for spec in USER_ERRORS:
        module, name = spec.split(":")
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(exc, getattr(loaded, name)):
            return True
    return False


def user_error_line(exc: BaseException) -> str:
    """The user error as one `error:` line: a Pydantic validation error lists each bad parameter
    as `name: problem`, separated by semicolons."""
    problems = getattr(exc, "errors", None)
    if callable(problems) and hasattr(exc, "title"):
        listed = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in problems())
        return f"error: invalid {exc.title}: {listed}"
    return "error: " + " ".join(str(exc).split())


class _UserErrorTracebackFilter(logging.Filter):
    """Keeps Prefect's "Encountered exception during execution" line for a user error but drops its
    traceback, which points into Prefect's engine and says nothing the message does not."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and is_user_error(record.exc_info[1]):
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("prefect.flow_runs").addFilter(_UserErrorTracebackFilter())
logging.getLogger("prefect.task_runs").addFilter(_UserErrorTracebackFilter())

app = typer.Typer(
    help="ieflow: documents in, validated records out, with automatically optimized extraction prompts.",
    no_args_is_help=True,
    add_completion=False,
)
program_app = typer.Typer(help="Inspect and compare extraction programs.", no_args_is_help=True)
models_app = typer.Typer(help="The embedded local models.", no_args_is_help=True)
app.add_typer(program_app, name="program")
app.add_typer(models_app, name="models")


@app.command()
def demo(
    data: str = typer.Option(
        None, help="A labelled folder (schema.json, labels.jsonl, documents/); default data/receipts."
    ),
    output_dir: str = typer.Option(None, help="Where the run writes its outputs; default runs/demo."),
    max_metric_calls: int = typer.Option(
        None,
        help="Optimization budget in metric calls; default 30 "
        "(a step in flight may finish one minibatch past it).",
    ),
) -> None:
    """The main job on the embedded defaults: ingest, split, optimize and extract the sample documents."""
    from ieflow_cli.demo import run_demo

    with show_progress():
        run_demo(data=data, output_dir=output_dir, max_metric_calls=max_metric_calls)


@app.command()
def extract(
    documents: str = typer.Argument(..., help="documents.parquet from ingest, or a folder of documents."),
    program: str = typer.Option(..., help="program.json from optimize, or a record JSON Schema."),
    output_dir: str = typer.Option(..., help="Folder or fsspec URL for records/ and quarantine/."),
    shard_size: int = typer.Option(None, help="Documents per shard (one Prefect task each)."),
    concurrency: int = typer.Option(None, help="Model calls in flight."),
    model: str = typer.Option(None, help="Override the program's model (litellm name)."),
    api_base: str = typer.Option(None, help="Base URL of an OpenAI-compatible server."),
    api_key_env: str = typer.Option(None, help="Name of the environment variable holding the API key."),
    api_key_secret: str = typer.Option(None, help="Name of a Prefect Secret block holding the API key."),
    review_when_not_found: str = typer.Option(
        None, help="Values found nowhere that send a record to review/: required (default), any, never."
    ),
    review_below_confidence: float = typer.Option(
        None, help="A value's model confidence below this sends its record to review/ (default: unused)."
    ),
    min_grounded_share: float = typer.Option(
        None, help="great-expectations: per field, at least this share of values found (default 0.8)."
    ),
    revise_below: float = typer.Option(
        None,
        help="Critique and revise a record whose least confident value is below this (2 more model "
        "calls; kept only if schema-valid and grounded; cost in the revise_* columns).",
    ),
    progress: bool = typer.Option(
        None, "--progress/--no-progress", help="Progress bars on stderr (default: on a terminal)."
    ),
) -> None:
    """Batch-extract a corpus with a program (the `extract` flow; restartable, exactly-once)."""
    from ieflow_flows.extract import ExtractParams
    from ieflow_flows.extract import extract as extract_flow

    params = flow_params(ExtractParams, locals())
    with show_progress(progress):
        summary = extract_flow(params)
    typer.echo(json.dumps(summary, indent=2, default=str))


@app.command("extract-file")
def extract_file(
    document: Path = typer.Argument(..., help="A PDF, DOCX, HTML, EML, Markdown or text file."),
    schema: Path | None = typer.Option(None, help="JSON Schema of the record (or use --program)."),
    program: Path | None = typer.Option(None, help="A program JSON file."),
    model: str | None = typer.Option(None, help="litellm model name, e.g. openai/gpt-4o-mini."),
    file_timeout: float = typer.Option(600.0, min=0, help="Time limit to read and parse it (0: none)."),
    max_file_mb: float = typer.Option(DEFAULT_MAX_FILE_MB, min=0.001, help="Size cap: bigger files unread."),
    evidence: bool = typer.Option(
        False,
        "--evidence",
        help="Print {record, evidence}: where each value is in the document, how it matched, "
        "and the model's confidence.",
    ),
) -> None:
    """Extract one document and print the record as JSON."""
    from ieflow.extraction import extract
    from ieflow.ingest import IngestOptions, parse_within_limits
    from ieflow.program import ExtractionProgram

    if (schema is None) == (program is None):
        raise typer.BadParameter("give exactly one of --schema or --program")
    prog = ExtractionProgram.load(program) if program else ExtractionProgram.from_schema(schema, model=model)
    if model:
        prog = prog.replace(model=model)
    # The file named here may be a link, but only to a regular file; read under the same size cap
    # and time limit as ingest.
    limits = IngestOptions(file_timeout_s=file_timeout, max_file_mb=max_file_mb, follow_symlinks=True)
    parsed = parse_within_limits(str(document), limits)
    if parsed.status == "error":
        typer.echo(f"error: cannot read {document}: {parsed.error}", err=True)
        raise typer.Exit(2)
    record, trace = extract(prog, parsed.text)
    if record is None:
        typer.echo(f"error: extraction failed: {trace.error}", err=True)
        raise typer.Exit(1)
    output = _with_evidence(record, trace, prog, parsed) if evidence else record
    typer.echo(json.dumps(output, indent=2, ensure_ascii=False))


def _with_evidence(record: dict, trace: Any, program: Any, parsed: Any) -> dict[str, Any]:
    """The record and one evidence row per leaf value, with the model's confidence where known."""
    from ieflow.grounding import DocumentIndex, ground_record

    index = DocumentIndex(parsed.text, parsed.page_offsets)
    found = ground_record(record, index, program.schema, program.formats)
    confidence = getattr(trace, "field_confidence", None) or {}
    note = getattr(trace, "confidence_note", None)
    rows = [{**e.to_row(), "confidence": confidence.get(e.path), "confidence_note": note} for e in found]
    return {"record": record, "evidence": rows}


@app.command()
def optimize(
    dataset: str = typer.Option(None, help="Labelled folder: schema.json, labels.jsonl, documents/."),
    optimizer: str = typer.Option(
        None,
        help="gepa (default), mipro, simba, bootstrap, opro, ape, textgrad, "
        "evoprompt (GA), evoprompt-de (DE), promptbreeder, promptagent or spo (no labels: with --judge).",
    ),
    max_metric_calls: int = typer.Option(
        None,
        help="Budget: examples evaluated by the optimizer "
        "(a step in flight may finish one minibatch past it).",
    ),
    program: str = typer.Option(None, help="Program JSON to start from."),
    splits_path: str = typer.Option(None, help="splits.parquet from the split flow."),
    student_model: str = typer.Option(None, help="litellm name of the extraction model."),
    reflection_model: str = typer.Option(None, help="litellm name of the proposal model."),
    judge_model: str = typer.Option(
        None,
        "--judge",
        help="litellm name of a judge model: scores with it when the folder has no labels "
        "(teacher labels are used, weighted by agreement); SPO's pairwise judge.",
    ),
    api_base: str = typer.Option(None, help="Base URL of an OpenAI-compatible server."),
    api_key_env: str = typer.Option(None, help="Name of the environment variable holding the API key."),
    api_key_secret: str = typer.Option(None, help="Name of a Prefect Secret block holding the API key."),
    output_dir: str = typer.Option(None, help="Run folder (resumes if it holds a checkpoint)."),
    mlflow_tracking_uri: str = typer.Option(
        None,
        "--mlflow-uri",
        help="Log the run to MLflow at this URI, e.g. sqlite:///mlflow.db "
        "(default: MLFLOW_TRACKING_URI; unset: off).",
    ),
    progress: bool = typer.Option(
        None, "--progress/--no-progress", help="Progress bars on stderr (default: on a terminal)."
    ),
) -> None:
    """Optimize an extraction program (the `optimize` flow; unset options take the flow's defaults)."""
    from ieflow_flows.optimize import OptimizeParams
    from ieflow_flows.optimize import optimize as optimize_flow

    params = flow_params(OptimizeParams, locals())
    with show_progress(progress):
        summary = optimize_flow(params)
    typer.echo(json.dumps(summary, indent=2))


@program_app.command("diff")
def program_diff(a: Path, b: Path) -> None:
    """Show which components, demos, model settings or strategy differ between two programs."""
    from ieflow.program import ExtractionProgram
    from ieflow.program_diff import diff_programs

    typer.echo(diff_programs(ExtractionProgram.load(a), ExtractionProgram.load(b)))


@models_app.command("prepare")
def models_prepare(alias: list[str] = typer.Argument(None)) -> None:
    """Join and verify the packaged GGUF weights (done automatically on first use)."""
    from ieflow.lm.local import PACKAGED_MODELS, gguf_path

    for name in alias or list(PACKAGED_MODELS):
        typer.echo(f"{name}: {gguf_path(name)}")


@models_app.command("list")
def models_list() -> None:
    """List the local model aliases (use them as `local/<alias>`)."""
    from ieflow.lm.local import known_aliases

    for name in known_aliases():
        typer.echo(f"local/{name}")


def _mount_subcommands() -> None:
    from ieflow_cli.ingest import ingest_command
    from ieflow_cli.labelfree import label_command, schema_app
    from ieflow_cli.nightly import nightly_command
    from ieflow_cli.program import add_registry_commands  # the flows load inside each command
    from ieflow_cli.review import review_app
    from ieflow_cli.split import split_command

    app.command("ingest")(ingest_command)
    app.command("split")(split_command)
    app.command("nightly")(nightly_command)
    app.add_typer(review_app, name="review")
    app.command("label")(label_command)
    app.add_typer(schema_app, name="schema")
    add_registry_commands(program_app)  # list, show, register, promote, rollback


_mount_subcommands()


# Signals that stop the command the way Ctrl-C does. SIGTERM's default would end the process on the
# spot, skipping the atexit hook that stops Prefect's temporary server (~230 MB, port left open).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received: list[signal.Signals] = []


class StopSignal(KeyboardInterrupt):
    """A stop signal, raised in the main thread as an interrupt: flows crash cleanly, shards not
    yet started are cancelled, running ones commit, and atexit hooks (the server's stop) run."""


def _raise_stop(signum: int, _frame: object) -> None:
    _received.append(signal.Signals(signum))
    raise StopSignal(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """Make each stop signal raise StopSignal, except one the caller ignores (nohup, `&`)."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _raise_stop)


def main() -> None:
    """The `ieflow` entry point: the Typer app, with a user error as one line and exit status 2,
    and a stop signal as one line and exit status 128 + its number (130 for Ctrl-C, 143 SIGTERM)."""
    from ieflow_cli.guard import guard_temporary_server

    stop_on_signals()
    guard_temporary_server()  # kill -9 of this process also ends Prefect's temporary server
    try:
        app()
    except Exception as exc:
        if not is_user_error(exc):
            raise
        typer.echo(user_error_line(exc), err=True)
        raise SystemExit(2) from None
    except SystemExit:  # Typer ends every run with SystemExit; an interrupt becomes exit status 130
        if not _received:
            raise
        typer.echo(f"ieflow: stopped by {_received[0].name}", err=True)
        raise SystemExit(128 + _received[0].value) from None


if __name__ == "__main__":
    main()
