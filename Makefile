# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Everything installs into .venv; the llama.cpp build (~6 min on 2 cores) happens once and pip
# caches the wheel.
VENV ?= .venv
PY := $(VENV)/bin/python
export DO_NOT_TRACK := 1
export LITELLM_LOCAL_MODEL_COST_MAP := True
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := False
export UNSTRUCTURED_DISABLE_NOTICE := 1

.PHONY: install demo test lint system-deps

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(PY) -m pip install --quiet -e '.[local,dev]'
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
