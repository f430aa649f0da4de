"""The `ieflow` command line: the layer beside the Prefect flows (package `ieflow_cli`).

It parses arguments, runs the flow of the same name and prints results; the core (`ieflow`) knows
nothing of it."""
