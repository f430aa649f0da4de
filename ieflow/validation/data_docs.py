"""great-expectations Data Docs (a static HTML site) from stored validation results.

GE writes some text into its pages as raw HTML: column names (section headers, the side bar) and
everything in a result's tables (failing values, doc_ids, the index columns' names), while it
escapes an expectation's other arguments itself. Column names come from the schema and values and
doc_ids from the corpus and the model, so those are HTML-escaped here, in a copy made for the
pages; the stored results keep the text as it was.
"""

from __future__ import annotations

import copy
import html
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ieflow.validation.validator import RecordValidator, build_suite

_COLUMN_ARGS = ("column", "column_A", "column_B", "column_list")


def build_data_docs(
    validator: RecordValidator, results: Iterable[tuple[str, dict[str, Any]]], directory: str | Path
) -> str:
    """Write great-expectations Data Docs (index, one page per (run name, table), the suites) for
    stored results `[(run_name, result_json)]` into a local folder; returns the index path."""
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    directory = Path(directory).resolve()  # GE's site store refuses a relative base_directory
    directory.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="ephemeral")
    context.add_data_docs_site(
        site_name="ieflow",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(directory)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    for table in validator.tables:
        specs = [replace(s, kwargs=_escaped_columns(s.kwargs)) for s in validator.run_specs(table)]
        context.suites.add(build_suite(validator.suite_name(table), specs))
    loader = ExpectationSuiteValidationResultSchema()
    for run_name, stored in results:
        result = loader.load(_escaped_result(stored))
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
            run_id=RunIdentifier(run_name=run_name),
            batch_identifier=run_name,
        )
        context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=["ieflow"])
    return str(directory / "index.html")


def _escaped(value: Any) -> Any:
    """Every string in `value` (dict keys too) HTML-escaped."""
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def _escaped_columns(kwargs: dict[str, Any]) -> dict[str, Any]:
    # The other arguments (a value set, a regex) GE escapes itself: escaping them here too would
    # show `&lt;` on the page.
    return {k: _escaped(v) if k in _COLUMN_ARGS else v for k, v in kwargs.items()}


def _escaped_result(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored suite result with what GE shows unescaped escaped: everything but each
    expectation's type and non-column arguments."""
    shown = _escaped({k: v for k, v in stored.items() if k != "results"})
    shown["results"] = []
    for item in stored.get("results", []):
        config = copy.deepcopy(item.get("expectation_config") or {})
        config["kwargs"] = _escaped_columns(config.get("kwargs") or {})
        rest = _escaped({k: v for k, v in item.items() if k != "expectation_config"})
        shown["results"].append({**rest, "expectation_config": config})
    return shown
