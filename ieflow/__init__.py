"""ieflow: unstructured documents to validated records, with optimized extraction prompts.

The core library has no Prefect imports; `flows/` and `tasks/` wrap it. Imports here stay lazy so
that `ieflow --help` starts fast.
"""

from ieflow import _offline  # noqa: F401  (sets offline env defaults before anything else)

__version__ = "0.1.0"
