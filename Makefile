# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Everything installs into .venv; the llama.cpp build (~6-9 min on 2 cores) happens once per
# machine: its wheel is kept in LLAMA_WHEELS, named by the build flags.
VENV ?= .venv
PY := $(VENV)/bin/python
# llama.cpp for any x86-64 CPU with AVX2, not -march=native: the native build segfaulted in
# decode on a Xeon with AMX (2026-12-03), and pip's wheel cache would hand a native wheel built on
# one machine to another. The version matches pyproject's `local` extra.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE := -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_WHEELS ?= $(HOME)/.cache/ieflow/wheels/llama-cpp-python-$(LLAMA_VERSION)-avx2
export DO_NOT_TRACK := 1
export LITELLM_LOCAL_MODEL_COST_MAP := True
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := False
export UNSTRUCTURED_DISABLE_NOTICE := 1

.PHONY: install demo test lint system-deps bench-deps

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel
	@ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" $(PY) -m pip wheel --quiet --no-cache-dir --no-deps \
	    llama-cpp-python==$(LLAMA_VERSION) -w $(LLAMA_WHEELS)
	$(PY) -m pip install --quiet --find-links $(LLAMA_WHEELS) -e '.[local,dev]'
	touch $@

# Tesseract for OCR of scanned pages and images, and Chromium for the review page's browser tests
# (Debian packages).
system-deps:
	@if ! command -v tesseract >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq tesseract-ocr tesseract-ocr-eng >/dev/null; \
	  else \
	    echo "note: install tesseract-ocr and tesseract-ocr-eng for OCR (sudo apt-get install ...)"; \
	  fi; \
	fi
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "note: install chromium for the review page's browser tests (sudo apt-get install chromium)"; \
	  fi; \
	fi

demo: install
	$(VENV)/bin/ieflow demo

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The reference libraries benchmarks/peers.py runs (gepa, dspy: the `bench` extra) and the MLflow
# client (the `mlflow` extra), into the same .venv: `pip install --dry-run` showed their pins change
# nothing ieflow has installed (the full `mlflow` package would downgrade pyarrow; the extra is
# mlflow-skinny). `$(PY) -m pip`, not .venv/bin/pip, so a copied venv installs into itself.
bench-deps: install
	$(PY) -m pip install --quiet -e '.[bench,mlflow]'
