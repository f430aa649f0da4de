"""The main job on the embedded defaults, as one function the `ieflow demo` command calls."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console


def run_demo(data: Path, out: Path) -> None:
    """Extract the first sample document with the default program and the local model."""
    from ieflow.program import ExtractionProgram

    console = Console()
    labels = [json.loads(line) for line in (data / "labels.jsonl").read_text().splitlines() if line.strip()]
    first = labels[0]
    program = ExtractionProgram.from_schema(data / "schema.json")
    text = (data / first["file"]).read_text(encoding="utf-8", errors="replace")
    console.print(f"[bold]Extracting[/] {first['file']} with {program.model} ...")
    record, trace = program.extract(text)
    if record is None:
        console.print(f"[red]extraction failed:[/] {trace.error}")
        raise SystemExit(1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "record.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(record, indent=2, ensure_ascii=False))
    console.print(f"tokens {trace.prompt_tokens}+{trace.completion_tokens}, {trace.latency_s:.1f} s")
    console.print(f"gold: {first['record']}")
