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

.PHONY: demo test lint format install clean-venv bench

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || { command -v $(PYTHON) >/dev/null || PYTHON=python3; $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check "setuptools==80.10.2" wheel
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(PY) -m pip check
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mird demo --out demo-output

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Exit code 5 (no tests collected) is a failure here, as is any other non-zero code.
test: lint
	$(PY) -m pytest -q --timeout=900
