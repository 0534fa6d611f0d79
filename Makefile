# Everything a fresh machine needs: `make demo` and `make test` create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-slow bench docs docs-cli clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/vecstore demo ./demo-store

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_kv.py
	$(BIN)/python benchmarks/bench_search.py
	$(BIN)/python benchmarks/plot_search.py
	$(BIN)/python benchmarks/bench_log.py
	$(BIN)/python benchmarks/bench_server.py
	$(BIN)/python benchmarks/bench_cli.py

# The CLI reference is generated from --help; tests fail when it is stale.
docs-cli: $(VENV)/.installed
	$(BIN)/python -m vecstore.cli.reference > docs/cli-reference.md

docs: $(BIN)/python docs-cli
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) demo-store site build *.egg-info
