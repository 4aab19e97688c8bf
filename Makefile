# Two commands do everything on a fresh machine (see README):
#   make demo    set up, start the embedded stack and the local Flink cluster, simulate a fleet of
#                10,000 meters, run the aggregate and detect jobs on it, print a summary
#                (make demo KEEP=1 leaves it all running)
#   make test    set up, start what the tests need (fixtures do it), run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
JARS_STAMP := build/jars/.resolved

.PHONY: setup jars up down status cluster-up cluster-down demo test test-unit lint clean

setup: $(VENV_STAMP) $(JARS_STAMP)

$(VENV_STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else f"error: Python {v[0]}.{v[1]} found; PyFlink 2.2 needs 3.10-3.12: install one, then make PYTHON=python3.11 setup")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "error: could not create $(VENV): install python3-venv (apt-get install python3-venv)"; exit 1; }
	@echo "setup: installing Python dependencies into $(VENV) (first time: a few minutes)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

jars: $(JARS_STAMP)

$(JARS_STAMP): pom.xml
	@command -v mvn >/dev/null || { echo "error: Maven not found: install it (apt-get install maven)"; exit 1; }
	@echo "setup: resolving connector and broker jars into build/jars (Maven)"
	@mvn --quiet --batch-mode -Dstyle.color=never package
	@touch $@

up: setup
	@$(PY) -m tools.stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m tools.stack down; else echo "nothing to stop (no $(VENV))"; fi

status: setup
	@$(PY) -m tools.stack status

cluster-up: setup
	@$(PY) -m tools.flink_cluster up

cluster-down:
	@if [ -x $(PY) ]; then $(PY) -m tools.flink_cluster down; fi

demo: setup
	@$(PY) -m tools.demo $(if $(KEEP),--keep)

test: setup
	@$(PY) -m pytest

test-unit: setup
	@$(PY) -m pytest tests/unit

lint: setup
	@$(PY) -m ruff check .

clean: down
	rm -rf .stack build $(VENV)

.PHONY: bench bench-ingest bench-aggregate bench-detect
bench: bench-ingest bench-aggregate bench-detect

bench-ingest: up
	@$(PY) -m tools.bench_ingest

bench-aggregate: up
	@$(PY) -m tools.bench_aggregate

bench-detect: up
	@$(PY) -m tools.bench_detect

.PHONY: simulate
# A day of a 1,000-meter fleet with anomalies into meter.readings, and its registry loaded.
simulate: up
	@$(PY) -m tools.simulate --mode replay --meters 1000 --days 1
	@$(PY) -m tools.registry load .stack/sim/registry.csv
