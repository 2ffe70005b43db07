# The two commands of the README: `make quickstart` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart install demo test lint bench simulate clean

quickstart: install demo ## set up from a bare Python and run a real quarter on 100 000 generated residents

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: install
	$(BIN)/python -m pipelines.demo

test: install ## the whole test suite (what .ci/run calls), on every core: about 4 minutes on 2 cores
	$(BIN)/python -m pytest -n auto --dist worksteal

lint: install
	$(BIN)/ruff check .

bench: install ## benchmark at 1M, 5M and 15.35M residents (not a test)
	$(BIN)/python -m bench.run

simulate: install ## a year month by month on 50 000 generated residents (issue 4)
	$(BIN)/python -m pipelines.simulate

# Only what the quickstart and the tests make: never var/ or out/ whole, where the default ledger and
# bank files live (an operator's `make clean` in a checkout run with the defaults would delete them).
clean: ## remove the quickstart's demo (var/demo) and the test caches
	rm -rf var/demo .pytest_cache .hypothesis
