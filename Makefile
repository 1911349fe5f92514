# Tracehold: the two commands are `make up` (set up everything, run the
# appliance) and `make test` (set up everything, run the tests).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup up test test-unit bench lint docs

$(BIN)/.installed: pyproject.toml
	@echo "==> creating $(VENV) and installing Tracehold with its pinned dependencies"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar off -e '.[dev]'
	@touch $@

setup: $(BIN)/.installed
	@echo "==> installing component binaries (collector build, Prometheus, VictoriaMetrics)"
	$(BIN)/tracehold setup

up: setup
	$(BIN)/tracehold up

test: setup
	$(BIN)/pytest -ra

test-unit: $(BIN)/.installed
	$(BIN)/pytest -ra tests/unit

bench: setup
	$(BIN)/python bench/run_all.py

lint: $(BIN)/.installed
	$(BIN)/ruff check appliance app tests bench
