"""The LM client's own overhead, against the fake server at zero latency.

    python benchmarks/lm_client.py [--calls 300]

Prints the mean latency of a raw `litellm.completion` call and of `LMClient.complete` (uncached and
cached) in the same run, the added latency per call, and the ratio. Targets: under 2 ms added per
uncached call, under 1 ms per cached call. The fake server runs in its own process so its CPU time
does not count against the client.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import litellm

import ieflow  # noqa: F401  (offline env defaults before litellm)
from ieflow.lm import LMClient, ResponseCache
from ieflow_testing.fake_server import FakeLMServer


def timed(fn, n: int) -> list[float]:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - started)
    return samples


def main(calls: int = 300) -> None:
    litellm.suppress_debug_info = True
    with FakeLMServer(process=True) as server:
        model = server.model_name("bench")
        kwargs = {"api_base": server.base_url, "api_key": "fake", "num_retries": 0, "temperature": 0.0}

        def raw(i: int) -> None:
            litellm.completion(model=model, messages=[{"role": "user", "content": f"raw {i}"}], **kwargs)

        client = LMClient(
            model, api_base=server.base_url, api_key="fake", cache=ResponseCache(tempfile.mkdtemp())
        )

        def ours(i: int) -> None:
            client.complete([{"role": "user", "content": f"ours {i}"}])

        def cached(i: int) -> None:
            client.complete([{"role": "user", "content": f"ours {i}"}])  # same messages as `ours`: cache hits

        timed(raw, 20)  # warm-up: imports, connection pool, cost map
        timed(lambda i: client.complete([{"role": "user", "content": f"warm {i}"}]), 20)
        # Interleave raw and client rounds so machine noise hits both alike.
        raw_samples, our_samples = [], []
        for round_start in range(0, calls, 50):
            n = min(50, calls - round_start)
            raw_samples += timed(lambda i, s=round_start: raw(s + i), n)
            our_samples += timed(lambda i, s=round_start: ours(s + i), n)
        cached_samples = timed(cached, calls)
        assert client.usage.cached_calls >= calls

    raw_ms = statistics.median(raw_samples) * 1000
    our_ms = statistics.median(our_samples) * 1000
    cached_ms = statistics.median(cached_samples) * 1000
    print(f"calls per variant: {calls} (medians)")
    print(f"raw litellm.completion : {raw_ms:7.3f} ms")
    print(
        f"LMClient, uncached     : {our_ms:7.3f} ms   added {our_ms - raw_ms:+.3f} ms   "
        f"ratio {our_ms / raw_ms:.3f}"
    )
    print(f"LMClient, cached       : {cached_ms:7.3f} ms   ratio to raw {cached_ms / raw_ms:.4f}")
    print(
        f"targets: added < 2 ms ({'met' if our_ms - raw_ms < 2 else 'MISSED'}), "
        f"cached < 1 ms ({'met' if cached_ms < 1 else 'MISSED'})"
    )


if __name__ == "__main__":
    main(int(sys.argv[sys.argv.index("--calls") + 1]) if "--calls" in sys.argv else 300)
