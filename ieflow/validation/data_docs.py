"""great-expectations Data Docs (a static HTML site) from stored validation results."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ieflow.validation.validator import RecordValidator


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
        context.suites.add(validator.suite(table))
    loader = ExpectationSuiteValidationResultSchema()
    for run_name, stored in results:
        result = loader.load(stored)
        suite_name = result.suite_name
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
            run_id=RunIdentifier(run_name=run_name),
            batch_identifier=run_name,
        )
        context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=["ieflow"])
    return str(directory / "index.html")
