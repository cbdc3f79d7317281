# One check command for newcomers and CI: `make test`. The main job: `make run`.
# Set-up is idempotent: nothing is reinstalled unless pyproject.toml changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NBVAL_OPTS := --nbval --nbval-sanitize-with notebooks/nbval_sanitize.cfg --nbval-cell-timeout 180 \
              --nbval-current-env -p no:cacheprovider
PROFILE ?= fast

.PHONY: setup test unit integration nbval lint typecheck run lab notebooks clean-runs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# venv + Python packages + the Kafka jars (fetched once into ~/.cache/offsetlab by Maven) + KafkaJS
# (npm ci from the committed lock into ~/.cache/offsetlab/kafkajs/<lock hash>/; skipped with a reason
# without Node, which only make test requires)
setup: $(STAMP)
	@$(BIN)/python -c "from offsetlab.brokers import ensure_kafka_jars; print('kafka jars:', ensure_kafka_jars())"
	@$(BIN)/python -c "from offsetlab.lab.clients import node; ok, why = node.node_available(); print('kafkajs:', node.ensure_kafkajs() if ok else 'not installed: ' + why)"

lint: setup
	$(BIN)/ruff check lib tests

# mypy over the extractable adapter (settings in pyproject.toml [tool.mypy])
typecheck: setup
	$(BIN)/mypy lib/offsetlab/bus

unit: setup
	$(BIN)/pytest tests/unit -q

integration: setup
	$(BIN)/pytest tests/integration -q

nbval: setup
	$(BIN)/pytest $(NBVAL_OPTS) notebooks -q

# Everything: lint, types (mypy over the bus), unit + integration tests, then nbval over every notebook (each starts its
# own broker). Both run $(JOBS) pytest-xdist workers, a whole file per worker (--dist loadfile:
# a notebook's cells stay in order on one kernel; each worker starts its own session broker).
# pytest's exit 5 (nothing collected) counts as a failure here: a test command that runs
# nothing must not pass.
JOBS ?= 2
XDIST := -n $(JOBS) --dist loadfile
test: setup
	$(BIN)/ruff check lib tests
	$(BIN)/mypy lib/offsetlab/bus
	$(BIN)/pytest tests -q --durations=10 $(XDIST)
	$(BIN)/pytest $(NBVAL_OPTS) notebooks -q $(XDIST)

# The main job: every notebook headless through papermill (broker auto) into data/runs/<run-id>/
run: setup
	$(BIN)/offsetlab run --profile $(PROFILE) --broker auto

lab: setup
	$(BIN)/jupyter lab notebooks

# Re-execute every notebook in place on the embedded Kafka: the committed outputs that nbval checks.
notebooks: setup
	@for nb in notebooks/[0-9]*.ipynb; do \
	  echo "== $$nb"; \
	  $(BIN)/papermill --cwd notebooks -k python3 "$$nb" "$$nb" || exit 1; \
	done

clean-runs:
	rm -rf data/runs data/scratch
