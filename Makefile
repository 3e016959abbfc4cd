# fraudwatch: every command a user or CI runs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_VERSION := 3.12
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Python 3.12, like the Lambda runtime: pyenv's when it has one, else python3.12 on the PATH.
BASE_PYTHON ?= $(shell (pyenv prefix $(PYTHON_VERSION) 2>/dev/null | head -n1 | sed 's|$$|/bin/python3|') || command -v python$(PYTHON_VERSION))

.PHONY: help setup demo train test check lint typecheck clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x "$(BASE_PYTHON)" || { echo "Python $(PYTHON_VERSION) not found: install it (pyenv install $(PYTHON_VERSION)) or pass BASE_PYTHON=/path/to/python3.12"; exit 1; }
	$(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(STAMP) ## create .venv (Python 3.12) with fraudwatch installed for development

demo: setup ## the main job: train if needed, then run the whole stack on the embedded emulator
	$(VENV)/bin/fraudwatch train

train: setup ## generate labelled history, train, evaluate and write the model bundle
	$(VENV)/bin/fraudwatch train

test: setup ## run the test suite
	$(VENV)/bin/pytest -n 2 -q

lint: setup ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup ## mypy
	$(VENV)/bin/mypy layers/fraudwatch/python/fraudwatch training infra functions

check: lint typecheck test ## every check CI runs

clean: ## remove the environment and build outputs
	rm -rf $(VENV) .aws-sam build .pytest_cache .mypy_cache .ruff_cache
