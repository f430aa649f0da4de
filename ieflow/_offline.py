"""Offline-safe defaults, applied before any third-party import.

Each of these stops a library from phoning home or blocking on a network fetch at import time:
without them, importing unstructured pings its server (a 10 s timeout when offline) and prints a
banner, and importing litellm fetches its model cost map over the network. Users can still override
them in their environment.
"""

import os

OFFLINE_DEFAULTS = {
    "DO_NOT_TRACK": "1",  # unstructured: no ping to its server, no banner
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # litellm: no blocking fetch of the cost map
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "False",
    # The temporary Prefect server needs 8-18 s idle and more on a busy 2-core machine; its
    # default 20 s start-up timeout fails flows run without a configured server.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply() -> None:
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


apply()
