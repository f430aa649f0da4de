"""What recording token log-probabilities costs the local llama.cpp model.

    python benchmarks/logprob_overhead.py --reps 3

The same grammar-constrained extraction of a sample receipt, alternately with and without the
`TokenLogprobRecorder` logits processor (no response cache; llama.cpp reuses the prompt's KV cache
between calls, so the generated tokens, where the recorder runs, are most of each call's time).
Prints each call's seconds and the median ratio with/without. On a crowded machine those calls
vary by tens of percent between identical runs, so `--recorder-only` also times the recorder alone,
per generated token, on a logits vector of the model's vocabulary size (no model needed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ieflow  # noqa: E402,F401  (offline env defaults)
from ieflow.lm import local  # noqa: E402
from ieflow.lm.structured import response_format  # noqa: E402
from ieflow.lm.token_logprobs import TokenLogprobRecorder  # noqa: E402
from ieflow.program import ExtractionProgram  # noqa: E402

DATA = ROOT / "data" / "receipts"


def one_call(model: local._LoadedModel, request: dict, record: bool) -> tuple[float, int]:
    from llama_cpp import LogitsProcessorList

    extra = {"logits_processor": LogitsProcessorList([TokenLogprobRecorder()])} if record else {}
    started = time.perf_counter()
    result = model.llama.create_chat_completion(**request, **extra)
    return time.perf_counter() - started, result["usage"]["completion_tokens"]


def time_recorder_alone(n_vocab: int, steps: int) -> float:
    """Seconds the recorder adds per generated token: its call on a fresh logits vector each step."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = [rng.normal(size=n_vocab).astype(np.float32) for _ in range(8)]
    recorder = TokenLogprobRecorder()
    ids = list(range(100))
    started = time.perf_counter()
    for step in range(steps):
        recorder(np.array(ids, dtype=np.intc), rows[step % len(rows)])
        ids.append(step % n_vocab)
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--recorder-only", action="store_true")
    parser.add_argument("--n-vocab", type=int, default=151_936, help="Qwen2.5's vocabulary")
    args = parser.parse_args()
    per_token = time_recorder_alone(args.n_vocab, steps=500)
    print(f"recorder alone: {per_token * 1000:.3f} ms per generated token ({args.n_vocab} logits)")
    if args.recorder_only:
        return
    program = ExtractionProgram.from_schema(DATA / "schema.json", model=f"local/{args.model}")
    text = (DATA / "documents" / "005.txt").read_text()
    schema_format = local.translate_response_format(response_format(program.response_schema(text)))
    request = {
        "messages": program.messages(text),
        "temperature": 0.0,
        "max_tokens": 200,
        "response_format": schema_format,
    }
    model = local.load_model(args.model)
    one_call(model, request, record=False)  # warm-up: the prompt enters the KV cache
    times: dict[bool, list[float]] = {True: [], False: []}
    for rep in range(args.reps):
        for record in (rep % 2 == 0, rep % 2 == 1):  # alternate which goes first
            seconds, tokens = one_call(model, request, record)
            times[record].append(seconds)
            print(f"rep {rep} {'with' if record else 'without'} recorder: {seconds:.2f} s, {tokens} tokens")
    with_s, without_s = statistics.median(times[True]), statistics.median(times[False])
    print(f"median with {with_s:.2f} s, without {without_s:.2f} s, ratio {with_s / without_s:.3f}")


if __name__ == "__main__":
    main()
