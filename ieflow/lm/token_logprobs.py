"""Token log-probabilities from an in-process llama.cpp model, without `logits_all`.

llama-cpp-python returns logprobs only when the model keeps the logits of every position
(`logits_all=True`: about 2.5 GB for a 4k context of a 150k vocabulary). A logits processor sees
each step's logits anyway; `TokenLogprobRecorder` keeps the log-softmax of the one step whose token
is not known yet, and reads that token from the model's input ids once it has been evaluated.

The processor runs first in llama.cpp's sampler chain, before the JSON grammar: a logprob is the
model's own, unconstrained one. It is never above the probability under the grammar (the grammar
only removes competitors), so a confidence built from it errs low, never high.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TokenLogprobRecorder:
    """A llama.cpp logits processor recording the log-probability of every generated token."""

    def __init__(self) -> None:
        self.positions: list[int] = []  # where each step's token lands in the model's input ids
        self.logprobs: list[float | None] = []  # per step; None where its token was never evaluated
        self._pending: tuple[np.ndarray, float] | None = None  # last step's logits and logsumexp
        self._scratch: np.ndarray | None = None

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        self._resolve(input_ids)
        self.positions.append(len(input_ids))
        # A copy: the grammar sampler writes -inf into this buffer after us. float32 and one reused
        # scratch array: five times faster than float64 (benchmarks/logprob_overhead.py).
        logits = np.array(scores, dtype=np.float32)
        if self._scratch is None or self._scratch.shape != logits.shape:
            self._scratch = np.empty_like(logits)
        peak = logits.max()
        np.exp(np.subtract(logits, peak, out=self._scratch), out=self._scratch)
        self._pending = (logits, float(peak) + float(np.log(self._scratch.sum(dtype=np.float64))))
        return scores

    def _resolve(self, input_ids: np.ndarray) -> None:
        """The pending step's logprob, if its token has been evaluated since."""
        if self._pending is None:
            return
        logits, lse = self._pending
        position = self.positions[-1]
        known = position < len(input_ids)
        self.logprobs.append(float(logits[int(input_ids[position])]) - lse if known else None)
        self._pending = None

    def openai_logprobs(self, llama: Any, text: str) -> list[dict[str, Any]] | None:
        """The answer's tokens as OpenAI's `logprobs.content` items, or None when the recorded
        tokens do not spell `text` exactly (a cut-off answer whose last token was never evaluated)."""
        self._resolve(llama._input_ids)
        items = []
        for position, logprob in zip(self.positions, self.logprobs, strict=True):
            if logprob is None:  # the end-of-text token, never evaluated
                continue
            raw = llama.detokenize([int(llama._input_ids[position])])
            items.append(
                {
                    "token": raw.decode("utf-8", errors="replace"),
                    "logprob": logprob,
                    "bytes": list(raw),
                    "top_logprobs": [],
                }
            )
        spelled = b"".join(bytes(item["bytes"]) for item in items)
        return items if spelled == text.encode("utf-8") else None
