"""The layers: the core package `ieflow` imports neither Prefect nor the layers above it (flows,
tasks, CLI, testing), not even inside a function; API keys named by a Prefect Secret block are
resolved above the core and handed in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ieflow.errors import ConfigError
from ieflow.secrets import ApiKey, env_api_key

CORE = Path(__file__).resolve().parents[1] / "ieflow"
ABOVE_THE_CORE = ("prefect", "prefect_dask", "ieflow_flows", "ieflow_tasks", "ieflow_cli", "ieflow_testing")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # every import, lazy ones too
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_core_imports_nothing_above_it() -> None:
    offending = {
        f"{path.relative_to(CORE.parent)}: {name}"
        for path in CORE.rglob("*.py")
        for name in _imported_modules(path)
        if name.split(".")[0] in ABOVE_THE_CORE
    }
    assert not offending


def test_program_and_trace_know_nothing_of_running_a_program() -> None:
    # One way down: extraction -> longdoc -> program (data and prompt) -> trace; never back up.
    assert not {"ieflow.extraction", "ieflow.longdoc"} & _imported_modules(CORE / "program.py")
    assert not {m for m in _imported_modules(CORE / "longdoc.py") if m == "ieflow.extraction"}
    assert not {m for m in _imported_modules(CORE / "trace.py") if m.startswith("ieflow")}
    assert not {m for m in _imported_modules(CORE / "errors.py") if m.startswith("ieflow")}


def test_a_resolved_key_never_shows_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    key = ApiKey("prefect-secret:model-key", "sk-planted-123")
    assert "sk-planted" not in repr(key) and "model-key" in repr(key)
    monkeypatch.setenv("IEFLOW_TEST_KEY", "sk-env")
    assert env_api_key("IEFLOW_TEST_KEY") == "sk-env"
    assert env_api_key(None) is None and env_api_key("IEFLOW_TEST_NO_SUCH_KEY") is None


def test_a_batch_client_is_told_apart_by_where_its_key_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    from ieflow.batch import BatchSettings
    from ieflow.batch.shard import batch_client
    from ieflow.lm.pool import SHARED_POOL
    from ieflow.program import ExtractionProgram

    monkeypatch.setenv("IEFLOW_TEST_KEY", "sk-env")
    program = ExtractionProgram.from_schema(CORE.parent / "schemas" / "sroie.json", model="openai/x")
    settings = BatchSettings(
        output_dir="unused", api_key_env="IEFLOW_TEST_KEY", api_base="http://127.0.0.1:9"
    )
    SHARED_POOL.clear()
    try:
        from_env = batch_client(program, settings)
        from_block = batch_client(program, settings, ApiKey("prefect-secret:b", "sk-block"))
        assert from_env is not from_block and batch_client(program, settings) is from_env
        assert from_env._api_key == "sk-env" and from_block._api_key == "sk-block"
        assert "sk-" not in repr(from_block)
    finally:
        SHARED_POOL.clear()


def test_preflight_loads_a_key_named_elsewhere_only_after_the_cheaper_checks(tmp_path: Path) -> None:
    from ieflow.preflight import preflight

    loaded: list[str] = []

    def load() -> str:
        loaded.append("key")
        raise ConfigError("cannot load the key")

    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad schema"):
        preflight("openai/gpt-4o-mini", schema_path=tmp_path / "bad.json", load_key=load)
    assert loaded == []  # the schema is checked first
    with pytest.raises(ConfigError, match="cannot load the key"):
        preflight("openai/gpt-4o-mini", load_key=load)
    assert loaded == ["key"]
    preflight("local/qwen2.5-coder-0.5b", load_key=load)  # a local model needs no key
    assert loaded == ["key"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _core_import_graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # lazy imports too
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        # A package's __init__ re-exports its modules: a module importing its own parent package
        # is not a cycle through that package.
        graph[name] = {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    return graph


def test_the_core_has_no_import_cycle() -> None:
    from graphlib import CycleError, TopologicalSorter

    try:
        tuple(TopologicalSorter(_core_import_graph()).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")
