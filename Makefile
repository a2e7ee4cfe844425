# Two commands for a newcomer: `make bench` and `make test` (and `make test-all` before a push).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: bench test test-slow test-all docs docs-numbers lint train regress mutants clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

## Run the default benchmark: a Hydra multirun over the methods, then collation.
bench: $(STAMP)
	$(BIN)/bench -m experiment=default

## The unit and contract tests (minutes): what to run while you edit. TEST_WORKERS processes
## (test files spread over them; one torch thread each).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile
test: $(STAMP)
	$(PYTEST) -m "not slow"

## The slow end-to-end checks alone: launchers, kill and resume, the wheel, the report in a
## browser, the whole default benchmark, the scripts at their smallest settings.
test-slow: $(STAMP)
	$(PYTEST) -m slow

## Everything (what CI runs, and what to run before a push).
test-all: test test-slow

## The documentation site, built strictly (a broken link or a page outside the nav fails).
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

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

## Rewrite every table, figure and finding the README and docs/ quote from results/ (the blocks
## between <!-- generated: NAME --> and <!-- end: NAME -->) from the committed files;
## tests/test_docs_blocks.py fails when a block differs (`--check` compares only).
docs-numbers: $(STAMP)
	$(BIN)/python scripts/docs_blocks.py

## Retrain the embedded benchmark's model (the committed checkpoint is used otherwise).
train: $(STAMP)
	$(BIN)/python scripts/train_shapes.py

clean-venv:
	rm -rf $(VENV)
