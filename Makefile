# Two commands for a newcomer: `make bench` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: bench test lint train regress mutants clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

## Run the default benchmark: a Hydra multirun over the methods, then collation.
bench: $(STAMP)
	$(BIN)/bench -m experiment=default

## Run the whole test suite (the slow end-to-end checks included), on TEST_WORKERS processes
## (test files spread over them; one torch thread each).
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

## Lint and format check (CI runs both; `pre-commit install` runs them on every commit).
lint: $(STAMP)
	$(BIN)/ruff check bench methods metrics scripts tests
	$(BIN)/ruff format --check bench methods metrics scripts tests

## Check the methods and metrics against the committed regression baseline (results/reference/regress/).
regress: $(STAMP)
	rm -rf results/regress/current
	$(BIN)/bench -m method=gradient,gradcam,random dataset.limit=32 'metric=[deletion,insertion,pointing_game]' metric.deletion.step=1792 metric.insertion.step=1792 cache=off hydra.sweep.dir=results/regress/current
	$(BIN)/bench-regress --baseline results/reference/regress/baseline.json --current results/regress/current --report results/regress/report.md --html results/regress/report.html

## Mutation score (issue 28): a fixed list of plausible bugs in methods, metrics and statistics
## (scripts/mutants.py), each applied alone to a copy of the tree and run against the tests that
## should catch it; writes results/reference/mutants.md. Slow (about an hour on 2 cores): not part
## of `make test` or CI. `$(BIN)/python scripts/mutants.py --only ID,...` runs some of them.
mutants: $(STAMP)
	$(BIN)/python scripts/mutants.py --out results/reference/mutants.md

## Retrain the embedded benchmark's model (the committed checkpoint is used otherwise).
train: $(STAMP)
	$(BIN)/python scripts/train_shapes.py

clean-venv:
	rm -rf $(VENV)
