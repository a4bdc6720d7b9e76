# callsbot — `make` runs lint, typecheck and test. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
ROLE_CONFIG ?= config.toml

.PHONY: all help install redis-server postgresql chromium test lint typecheck run run-aggregator run-scorer \
        login check bench demo clean format

all: lint typecheck test

help:
	@echo "make test        create .venv, install, get redis-server, postgresql and chromium, run the tests"
	@echo "make lint        ruff check + format check + import contract (lint-imports)"
	@echo "make typecheck   mypy --strict on callsbot/"
	@echo "make run         every role in one process (python -m callsbot run)"
	@echo "make run-aggregator / run-scorer   one role each (redis:// store)"
	@echo "make login       create the Telegram session interactively"
	@echo "make check       config, store and heartbeats"
	@echo "make bench       benchmarks (not part of make test)"
	@echo "make clean       remove the virtualenv and caches"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "callsbot needs Python >= 3.11 (found: $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Tests start their own redis-server on a free port; this makes sure the binary exists.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "redis-server missing: installing Debian's package"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
	    echo "redis-server missing: installing Debian's package with sudo"; \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server is missing and cannot be installed here."; \
	    echo "Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) and rerun make test."; \
	    exit 1; \
	  fi; }
	@redis-server --version

# History tests start their own PostgreSQL cluster (initdb + pg_ctl, a free loopback port);
# this makes sure the binaries exist (Debian keeps them in /usr/lib/postgresql/<version>/bin).
PG_INITDB = $(firstword $(shell command -v initdb 2>/dev/null) $(wildcard /usr/lib/postgresql/*/bin/initdb))
postgresql:
	@if [ -z "$(PG_INITDB)" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "initdb missing: installing Debian's postgresql"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
	    echo "initdb missing: installing Debian's postgresql with sudo"; \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else \
	    echo "PostgreSQL's initdb is missing and cannot be installed here."; \
	    echo "Install it (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql) and rerun make test."; \
	    exit 1; \
	  fi; \
	fi
	@ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1 || command -v initdb

# The dashboard's browser test drives Debian's Chromium through Playwright (never a browser
# download of Playwright's own). Without it the test is skipped, unless REQUIRE_BROWSER_TEST=1.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@[ -x $(CHROMIUM) ] || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "chromium missing: installing Debian's package (for the dashboard's browser test)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium is missing and cannot be installed here (not root): the browser test is skipped."; \
	    echo "Install it (Debian/Ubuntu: apt-get install chromium) to run it."; \
	  fi; }

test: $(STAMP) redis-server postgresql chromium
	$(PY) -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check callsbot tests bench scripts
	$(BIN)/ruff format --check callsbot tests bench scripts
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format callsbot tests bench scripts
	$(BIN)/ruff check --fix callsbot tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

run: $(STAMP)
	$(PY) -m callsbot --config $(ROLE_CONFIG) run

run-aggregator: $(STAMP)
	$(PY) -m callsbot --config $(ROLE_CONFIG) run --role aggregator

run-scorer: $(STAMP)
	$(PY) -m callsbot --config $(ROLE_CONFIG) run --role scorer

login: $(STAMP)
	$(PY) -m callsbot --config $(ROLE_CONFIG) login

check: $(STAMP)
	$(PY) -m callsbot --config $(ROLE_CONFIG) check

bench: $(STAMP) redis-server postgresql
	@if [ -f bench/run.py ]; then $(PY) -m bench.run; else echo "no benchmarks yet"; fi

demo: $(STAMP)
	$(PY) -m callsbot demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
