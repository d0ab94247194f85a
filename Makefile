# Two commands on a fresh Debian bookworm machine (as root): `make demo` and `make test`.
# Both set up what they need first (Debian packages, TimescaleDB, the virtual environment); set-up is idempotent.
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := amr collectors ingest billing dashboards simulators fleet app

.PHONY: setup demo test test-fast check lint bench clean-state

setup:
	bash scripts/setup-system.sh
	bash scripts/setup-python.sh

demo: setup
	$(BIN)/amr demo

# The README's test command: static checks (style, types, the floors), then every test against real services.
test: setup
	$(MAKE) --no-print-directory check
	$(BIN)/pytest

# Quick loop while developing: no slow, fault-injection or browser tests.
test-fast: setup
	$(BIN)/pytest -m "not slow and not fault and not browser"

check:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(PACKAGES)
	$(BIN)/lint-imports

lint: check

bench: setup
	$(BIN)/python -m benchmarks

clean-state:
	-$(BIN)/amr broker down
	-$(BIN)/amr db down
	rm -rf .amr
