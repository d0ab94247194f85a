# Two commands on a fresh Debian bookworm machine (as root): `make demo` and `make test`.
# Both set up what they need first (Debian packages, TimescaleDB, the virtual environment); set-up is idempotent.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean-state

setup:
	bash scripts/setup-system.sh
	bash scripts/setup-python.sh

demo: setup
	$(BIN)/amr demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy amr collectors ingest billing dashboards simulators
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy amr collectors ingest billing dashboards simulators

bench: setup
	$(BIN)/python -m benchmarks

clean-state:
	-$(BIN)/amr broker down
	-$(BIN)/amr db down
	rm -rf .amr
