# Two commands for a newcomer: `make bench` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: bench test lint train clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

## Run the default benchmark: a Hydra multirun over the methods, then collation.
bench: $(STAMP)
	$(BIN)/bench -m experiment=default

## Run the whole test suite (the slow end-to-end checks included).
test: $(STAMP)
	$(BIN)/python -m pytest -q

## Lint and format check (CI runs both; `pre-commit install` runs them on every commit).
lint: $(STAMP)
	$(BIN)/ruff check bench methods metrics scripts tests
	$(BIN)/ruff format --check bench methods metrics scripts tests

## Retrain the embedded benchmark's model (the committed checkpoint is used otherwise).
train: $(STAMP)
	$(BIN)/python scripts/train_shapes.py

clean-venv:
	rm -rf $(VENV)
