# Vigil: `make demo` runs the whole loop; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vigil-installed
VIGIL_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
export VIGIL_TEST_DATABASE_URL

.PHONY: install system-deps demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test,bench,reference]'
	touch $(STAMP)

system-deps:
	./deploy/install-system-deps.sh

install: $(STAMP) system-deps

demo: install
	$(BIN)/vigil demo

lint: install
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
