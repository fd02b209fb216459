# Infinitic for Python: development tasks. `make help` lists them.
# Only Python 3.11 and make are needed: uv is installed from PyPI when missing.

SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --frozen

.DEFAULT_GOAL := help
.PHONY: help uv install format lint typecheck test test-isolated demo bench chaos fuzz limits simulate build services

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

uv: ## Install uv from PyPI if it is missing
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 \
		|| $(PYTHON) -m pip install --quiet --disable-pip-version-check uv

install: uv ## Create .venv with every package, extra and dev tool (from uv.lock)
	$(UV) sync --frozen --all-packages --all-extras

format: install ## Format the code
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

lint: install ## ruff, format check, lock check, layering check
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(UV) lock --check
	$(RUN) python tools/check_layering.py

typecheck: install ## mypy --strict on every package
	$(RUN) mypy packages/*/src examples/src tools/check_layering.py tools/chaos.py tools/chaos_signals.py tools/bench_path.py tools/fuzz.py tools/limits.py

services: ## Start Redis, PostgreSQL and MariaDB on loopback if one is down
	@bash tools/ensure_services.sh

test: install services ## The whole suite, real services included (as CI runs it)
	$(RUN) pytest $(PYTEST_ARGS)

test-isolated: uv ## Each package imports with only its own dependencies
	$(RUN) python tools/check_isolated.py

demo: install ## Run 100 bank wires on the in-memory transport and storage
	$(RUN) python -m infinitic_examples.bank_wire

bench: install services ## Benchmarks, never part of the test run (BENCH_PATH_ARGS=--quick)
	@for b in tools/bench_*.py; do \
		case $$b in tools/bench_path_*.py) continue;; esac; \
		args=; [ $$b = tools/bench_path.py ] && args="$(BENCH_PATH_ARGS)"; \
		echo "== $$b $$args"; $(RUN) python $$b $$args || exit 1; \
	done

simulate: install ## Deterministic simulation of the engines: 5000 seeded schedules (SIM_SCHEDULES, SIM_SEED)
	SIM_SCHEDULES=$${SIM_SCHEDULES:-5000} $(RUN) pytest -q tests/simulation -k every_schedule

chaos: install services ## Bank wires while workers, broker and storage crash (CHAOS_ARGS=--help)
	$(RUN) python tools/chaos.py $(CHAOS_ARGS)

fuzz: install services ## 10,000 hostile messages on every topic a worker consumes (FUZZ_ARGS=--help)
	$(RUN) python tools/fuzz.py $(FUZZ_ARGS)

limits: install services ## Limits measured: 1-20 MB arguments, large states per backend, deep recursion, 100,000 commands (~20 min)
	$(RUN) python tools/limits.py all

build: uv ## Build every distribution into dist/
	$(UV) build --all-packages -o dist
