"""Test doubles that the tests and benchmarks share (package `ieflow_testing`), kept out of the
runtime package: a fake OpenAI-compatible LM server with fault injection
(`python -m ieflow_testing.fake_server --port 8000`)."""
