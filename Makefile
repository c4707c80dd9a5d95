# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when it is
# missing and install only when pyproject.toml or constraints.txt changed (a stamp file).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export HF_HUB_OFFLINE := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: demo test lint format install serve serve-stop bench

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || { command -v $(PYTHON) >/dev/null || PYTHON=python3; $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check "setuptools==80.10.2" wheel
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(PY) -m pip check
	@touch $(STAMP)

# Headless Chromium (Debian's package) renders the dashboard in its test. Root can install it
# (CI runs as root); elsewhere the test skips and says why.
SYSTEM_STAMP := $(VENV)/.system-deps
$(SYSTEM_STAMP): | $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: chromium not installed (needs root); the dashboard browser test will skip"; fi; }
	@touch $(SYSTEM_STAMP)

demo: $(STAMP)
	$(VENV)/bin/mird demo --out demo-output

# nginx serves bench.fetch's images (its floor is the fast server, not Python's). Root can
# install it; elsewhere the benchmark serves from a threaded Python server and says so.
BENCH_STAMP := $(VENV)/.bench-deps
$(BENCH_STAMP): | $(STAMP)
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
	  if [ "$$(id -u)" = 0 ]; then { apt-get update -qq && apt-get install -y -qq nginx-light; } >/dev/null \
	    || apt-get install -y -qq nginx >/dev/null \
	    || echo "note: could not install nginx; bench.fetch serves from Python"; \
	  else echo "note: nginx not installed (needs root); bench.fetch serves from Python"; fi; }
	@touch $(BENCH_STAMP)

# Every benchmark with quick settings, one JSON object per line (`$(PY) -m bench --full` for
# the settings behind bench/README.md's tables; `--only NAME` for one).
bench: $(STAMP) $(BENCH_STAMP)
	$(PY) -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Exit code 5 (no tests collected) is a failure here, as is any other non-zero code.
test: lint $(SYSTEM_STAMP)
	$(PY) -m pytest -q --timeout=900

# A local Prefect server (127.0.0.1:4200, state in .prefect/), the work pool, every deployment
# of prefect.yaml and a worker. Then: `PREFECT_API_URL=http://127.0.0.1:4200/api
# .venv/bin/prefect deployment run 'build-million-ird/weekly' --param config='{...}'`.
serve: $(STAMP)
	$(VENV)/bin/mird server start

serve-stop: $(STAMP)
	$(VENV)/bin/mird server stop
