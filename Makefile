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
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x "$(BASE_PYTHON)" || { echo "Python $(PYTHON_VERSION) not found: install it (pyenv install $(PYTHON_VERSION)) or pass BASE_PYTHON=/path/to/python3.12"; exit 1; }
	@echo "== setup: $(VENV) with Python $(PYTHON_VERSION) and fraudwatch's dependencies (about 2 minutes the first time)"
	$(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --progress-bar off -e '.[dev]'
	touch $@

setup: $(STAMP) ## create .venv (Python 3.12) with fraudwatch installed for development

demo: setup ## the main job: train if needed, run the whole stack on the embedded emulator, then keep the review console up (Ctrl-C stops)
	$(VENV)/bin/fraudwatch demo

train: setup ## generate labelled history, train, evaluate and write the model bundle
	$(VENV)/bin/fraudwatch train

# The project's own history, backtested (docs/backtest.md); data/ is not committed.
BACKTEST_TRANSACTIONS ?= 1000000
BACKTEST_DAYS ?= 60

.PHONY: backtest
backtest: setup ## generate labelled history into data/ and backtest it, with and without merchant risk (data/backtest/report.md)
	$(VENV)/bin/fraudwatch generate --transactions $(BACKTEST_TRANSACTIONS) --days $(BACKTEST_DAYS) --out data/history.parquet
	$(VENV)/bin/fraudwatch backtest data/history.parquet --out data/backtest

# What CI runs (.ci/run): every check that needs no network beyond PyPI, in the order that fails fastest.
test: setup browser ## lint, format check, types (bench and tests too), the test suite, then the fraudwatch layer built and the scoring tests again on it: what CI runs (about 7 minutes)
	@echo "== ruff: lint and format check"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@echo "== mypy (strict): the package, training, infra, the function, bench and tests"
	$(VENV)/bin/mypy $(TYPED)
	@echo "== pytest: the suite on 2 workers (about 4 minutes); a dot per test, the slowest listed at the end"
	$(VENV)/bin/pytest -n 2 -q --durations=5
	@echo "== the fraudwatch layer as sam build builds it (Lambda's wheels, the scoring path compiled by mypyc, its own checks), then the scoring tests again on it (1 minute)"
	rm -rf build/layer-check
	$(MAKE) --no-print-directory -C layers/fraudwatch build-FraudwatchLayer ARTIFACTS_DIR=$(CURDIR)/build/layer-check
	PYTHONPATH=build/layer-check/python $(PY) -c 'import sys, fraudwatch.domain.scoring as m; \
		sys.exit(None if m.__file__.endswith(".so") else f"not compiled: {m.__file__}")'
	PYTHONPATH=build/layer-check/python $(VENV)/bin/pytest -n 2 -q -p no:cacheprovider $(COMPILED_TESTS)

# The tests whose code runs through the modules layers/fraudwatch/compile.py compiles: run again on the layer
# as built (its packages, pinned in its requirements.txt, come first), where a value that contradicts an
# annotation raises TypeError.
COMPILED_TESTS := $(addprefix tests/unit/test_,$(addsuffix .py,scoring features profile_bounds \
	profile_conflicts profile_json recent_keys sequence_numbers events payload_fast_path id_bounds merchant_cache label \
	lineup parity observability rules_history)) \
	$(addprefix tests/adapters/test_,$(addsuffix .py,handler stores redrive aws_failures warm_profiles \
	aws_call_budget snapstart activity_job)) tests/e2e/test_delivery.py tests/e2e/test_labels.py

# The console's browser test drives Debian's own Chromium and its driver (nothing downloads a browser or a
# driver at test time); CI machines start without them. As root, through apt, once.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
CHROMIUM_PACKAGES := chromium chromium-driver

.PHONY: browser
browser: ## Debian's chromium and chromium-driver for the console's browser test (apt-get, as root, once)
	@test -x $(CHROMIUM) -a -x $(CHROMEDRIVER) || { \
	  echo "== apt: $(CHROMIUM_PACKAGES) for the console's browser test"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y --no-install-recommends $(CHROMIUM_PACKAGES) \
	    || { apt-get update && apt-get install -y --no-install-recommends $(CHROMIUM_PACKAGES); }; }

lint: setup ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

TYPED := layers/fraudwatch/python/fraudwatch layers/fraudwatch/compile.py training infra functions bench tests

typecheck: setup ## mypy
	$(VENV)/bin/mypy $(TYPED)

check: test security ## every check: what CI runs (make test), and the security scanners

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

.PHONY: bench
bench: setup ## the budgets' benchmarks (handler CPU, scoring CPU, AWS calls, cold start, training, backtest replay, rules); figures in docs/benchmarks.md
	$(PY) -m bench.handler_cpu
	$(PY) -m bench.scoring_cpu
	$(PY) -m bench.aws_calls
	$(PY) -m bench.cold_start
	$(PY) -m bench.api
	$(PY) -m bench.training_pipeline
	$(PY) -m bench.backtest
	$(PY) -m bench.rules

# ---- Security scanners (docs/security.md): checkov, bandit and pip-audit in a tool environment of their own
SECURITY_TOOLS := .tools/security
SECURITY_PINS := checkov==3.3.30 bandit==1.9.4 pip-audit==2.10.1
SECURITY_STAMP := $(SECURITY_TOOLS)/.installed
SECURITY_BIN := $(SECURITY_TOOLS)/bin
# pip-audit's default service: PyPI's per-release JSON, which carries each release's known vulnerabilities.
PIP_AUDIT_FEED := https://pypi.org/pypi/pip/24.0/json
# 1: fail when the vulnerability feed cannot be reached (CI with network); 0: say so loudly and go on.
REQUIRE_AUDIT ?= 0

.PHONY: security security-tools security-template security-code security-deps

security-tools: ## install checkov, bandit and pip-audit (pinned) in .tools/security
	@test "$$(cat $(SECURITY_STAMP) 2>/dev/null)" = "$(SECURITY_PINS)" || { \
	  test -x "$(BASE_PYTHON)" || { echo "Python $(PYTHON_VERSION) not found: pass BASE_PYTHON=/path/to/python3.12"; exit 1; }; \
	  $(BASE_PYTHON) -m venv $(SECURITY_TOOLS) && \
	  $(SECURITY_BIN)/pip install --quiet --upgrade pip && \
	  $(SECURITY_BIN)/pip install --quiet $(SECURITY_PINS) && \
	  echo "$(SECURITY_PINS)" > $(SECURITY_STAMP); }

security: security-template security-code security-deps ## checkov on template.yaml, bandit on the code, pip-audit on the dependencies

security-template: security-tools
	@echo "== checkov: template.yaml (offline: --skip-download)"
	$(SECURITY_BIN)/checkov -f template.yaml --framework cloudformation --skip-download --compact --quiet

security-code: security-tools
	@echo "== bandit: the fraudwatch package, the function, infra and training (config: pyproject.toml)"
	$(SECURITY_BIN)/bandit -c pyproject.toml -r layers/fraudwatch/python functions infra training -q

# What .venv holds (development, training, the emulator; fraudwatch itself, editable, left out) and the
# pinned requirements of the two Python layers (what ships to Lambda). --strict: a package that cannot be
# audited fails the step instead of being skipped in silence.
security-deps: security-tools setup
	@echo "== pip-audit: .venv and the layers' pinned requirements"
	@if $(SECURITY_BIN)/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)' \
	    $(PIP_AUDIT_FEED) 2>/dev/null; then \
	  $(SECURITY_BIN)/pip-audit --strict --progress-spinner off --no-deps --disable-pip \
	    -r <($(PY) -m pip freeze --all --exclude-editable) \
	    -r layers/ml-runtime/requirements.txt -r layers/fraudwatch/requirements.txt; \
	else \
	  echo "pip-audit: NOT RUN: its vulnerability feed ($(PIP_AUDIT_FEED)) does not answer from this machine,"; \
	  echo "           so no dependency was audited. Run \`make security-deps\` where pypi.org is reachable"; \
	  echo "           (REQUIRE_AUDIT=1 makes this a failure)."; \
	  test "$(REQUIRE_AUDIT)" != 1; \
	fi

# ---- the embedded stack in the background, and LocalStack (Docker) for the full deployment
LOCALSTACK_COMPOSE := docker compose -f infra/localstack/docker-compose.yml
LOCALSTACK_ENDPOINT ?= http://localhost:4566
LOCALSTACK_ENV := AWS_ENDPOINT_URL=$(LOCALSTACK_ENDPOINT) AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1

.PHONY: stack stack-down localstack-up localstack-down localstack-deploy

stack: setup ## the embedded stack in the background (emulator, deploy, handler behind the runner); prints AWS_ENDPOINT_URL
	$(VENV)/bin/fraudwatch stack up --detach

stack-down: setup ## stop the background embedded stack
	$(VENV)/bin/fraudwatch stack down

localstack-up: ## LocalStack in Docker (pinned 4.14.0; newer images need LOCALSTACK_AUTH_TOKEN, see docs/localstack.md)
	$(LOCALSTACK_COMPOSE) up -d --wait

localstack-down: ## stop LocalStack and drop its data
	$(LOCALSTACK_COMPOSE) down -v

# The artifacts bucket is the one samconfig.toml's `localstack` environment names.
localstack-deploy: setup sam-build ## sam deploy --config-env localstack to LocalStack (its event-source mapping runs the Lambda)
	$(LOCALSTACK_ENV) $(PY) -c 'import tomllib, boto3; \
	  bucket = tomllib.load(open("samconfig.toml", "rb"))["localstack"]["deploy"]["parameters"]["s3_bucket"]; \
	  boto3.client("s3").create_bucket(Bucket=bucket)'
	$(LOCALSTACK_ENV) $(SAM) deploy --config-env localstack

.PHONY: bench-e2e
bench-e2e: setup ## end to end on the embedded stack: records/s and latency, real handler vs naive per-record one
	$(PY) -m bench.e2e
