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

# ---- SAM: the CLI in a tool environment of its own (its pins clash with .venv's), builds without Docker
SAM_TOOLS := .tools/sam
SAM := $(SAM_TOOLS)/bin/sam
export SAM_CLI_TELEMETRY := 0

.PHONY: tools validate sam-build

$(SAM):
	@test -x "$(BASE_PYTHON)" || { echo "Python $(PYTHON_VERSION) not found: pass BASE_PYTHON=/path/to/python3.12"; exit 1; }
	$(BASE_PYTHON) -m venv $(SAM_TOOLS)
	$(SAM_TOOLS)/bin/pip install --quiet --upgrade pip
	$(SAM_TOOLS)/bin/pip install --quiet aws-sam-cli==1.170.0

tools: $(SAM) ## install the SAM CLI in .tools/sam (not in .venv)

validate: setup tools ## cfn-lint and sam validate --lint on template.yaml
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint

sam-build: tools ## sam build: the function and its three layers, locally (needs the model bundle)
	@test -f "$${BUNDLE_DIR:-layers/model/bundle}/model.ubj" || { echo "no model bundle: run \`make train\` ($${BUNDLE_DIR:-layers/model/bundle}/ is empty)"; exit 1; }
	$(SAM) build
